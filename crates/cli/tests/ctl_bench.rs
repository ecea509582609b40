//! Figures for the apply path, printed, never asserted (run with
//! `cargo test --release -p cli --test ctl_bench -- --ignored --nocapture`):
//! how long the patient is stopped and how long the whole command takes to
//! patch and unpatch the seed's example, and `-p all` over 100 processes of
//! one binary in a private PID namespace.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{Case, Flavour, Patient, build_by_recipe};

fn stats(name: &str, mut v: Vec<f64>, unit: &str) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let med = v[v.len() / 2];
    println!(
        "{name:<34} n={:<3} min {:>9.1} {unit}  median {:>9.1} {unit}  max {:>9.1} {unit}",
        v.len(),
        v[0],
        med,
        v[v.len() - 1]
    );
}

/// Runs libcare-ctl and times it from spawn to exit.
fn timed(args: &[&str]) -> (std::process::Output, f64) {
    let t = Instant::now();
    let out = Command::new(support::tool("libcare-ctl"))
        .args(args)
        .output()
        .unwrap();
    (out, t.elapsed().as_secs_f64() * 1e3)
}

fn stopped_us(out: &std::process::Output) -> f64 {
    let v: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    v["stopped_us"].as_f64().unwrap()
}

/// Patch/unpatch `n` times; prints stop and command times.
fn cycles(title: &str, built: &support::Built, pid: &str, n: usize) {
    let patch = built.patch.to_str().unwrap();
    let (mut ps, mut pw, mut us, mut uw) = (vec![], vec![], vec![], vec![]);
    for _ in 0..n {
        let (out, ms) = timed(&["-j", "patch", "-p", pid, patch]);
        pw.push(ms);
        assert!(out.status.success());
        ps.push(stopped_us(&out));
        std::thread::sleep(Duration::from_millis(30));
        let (out, ms) = timed(&["-j", "unpatch", "-p", pid]);
        uw.push(ms);
        assert!(out.status.success());
        us.push(stopped_us(&out));
        std::thread::sleep(Duration::from_millis(30));
    }
    println!("{title} ({n} cycles):");
    stats("patch: patient stopped", ps, "us");
    stats("patch: whole command", pw, "ms");
    stats("unpatch: patient stopped", us, "us");
    stats("unpatch: whole command", uw, "ms");
}

#[test]
#[ignore = "benchmark: prints figures"]
fn bench_patch_unpatch_eight_threads() {
    let case = Case::load("ctl_threads");
    let built = build_by_recipe(&case, Flavour::PIE_O2_G);
    let patient = Patient::start(&built);
    std::thread::sleep(Duration::from_millis(200));
    let pid = patient.pid().to_string();
    cycles(
        "ctl_threads, PIE -O2 -g, 9 threads, 1 function",
        &built,
        &pid,
        30,
    );
}

#[test]
#[ignore = "benchmark: prints figures"]
fn bench_patch_unpatch_seed() {
    const N: usize = 30;
    let case = Case::load("seed");
    let built = build_by_recipe(&case, Flavour::PIE_O2_G);
    let mut patient = Patient::start(&built);
    patient.wait_for(&case.before, &[]);
    let pid = patient.pid().to_string();
    cycles(
        "seed example, PIE -O2 -g, 1 thread, 1 function",
        &built,
        &pid,
        N,
    );
    assert!(patient.alive());
}

#[test]
#[ignore = "benchmark: prints figures"]
fn bench_all_processes_100() {
    const N: usize = 100;
    let case = Case::load("seed");
    let built = build_by_recipe(&case, Flavour::PIE_O2_G);
    let dir = built.dir.path().join("ns");
    std::fs::create_dir(&dir).unwrap();
    let script = format!(
        r#"cd {dir}
for i in $(seq 1 {N}); do LD_PRELOAD={fs} {prog} > /dev/null 2>&1 & done
sleep 1
t0=$(date +%s%N); {ctl} -j patch -p all {patch} > patch.json 2>/dev/null; t1=$(date +%s%N)
{ctl} -j unpatch -p all > unpatch.json 2>/dev/null; t2=$(date +%s%N)
echo $(( (t1 - t0) / 1000 )) $(( (t2 - t1) / 1000 )) > times
"#,
        dir = dir.display(),
        fs = support::patient::fastsleep().display(),
        prog = built.program.display(),
        ctl = support::tool("libcare-ctl").display(),
        patch = built.patch.display(),
    );
    let status = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "sh",
            "-c",
            &script,
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let times = std::fs::read_to_string(dir.join("times")).unwrap();
    let t: Vec<f64> = times
        .split_whitespace()
        .map(|x| x.parse::<f64>().unwrap() / 1e3)
        .collect();
    let stopped = |f: &str| -> Vec<f64> {
        std::fs::read_to_string(dir.join(f))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["stopped_us"]
                    .as_f64()
                    .unwrap()
            })
            .collect()
    };
    let (p, u) = (stopped("patch.json"), stopped("unpatch.json"));
    println!("-p all over {N} processes of the seed example (PIE -O2 -g):");
    println!(
        "{:<34} {} processes, {:.1} ms total",
        "patch -p all",
        p.len(),
        t[0]
    );
    println!(
        "{:<34} {} processes, {:.1} ms total",
        "unpatch -p all",
        u.len(),
        t[1]
    );
    stats("patch: each patient stopped", p, "us");
    stats("unpatch: each patient stopped", u, "us");
}
