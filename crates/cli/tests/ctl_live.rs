//! libcare-ctl on live processes beyond the plain patch/unpatch cycle:
//! refusals that must leave the patient exactly as it was (running, same
//! output, same code bytes, no new mapping), repeated patches, `info`,
//! JSON output, patch storage layouts and the safety timeout.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use support::{Case, Flavour, Patient, build_by_recipe, ctl, refused, snapshot, stderr, stdout};

/// A case program started with extra environment, whose lines the test
/// parses itself. Killed by PID when dropped.
struct Watched {
    child: Child,
    lines: Receiver<String>,
}

impl Watched {
    fn start(built: &support::Built, env: &[(&str, &str)]) -> Watched {
        let mut cmd = Command::new(&built.program);
        cmd.env("LD_PRELOAD", support::patient::fastsleep())
            .env("LD_LIBRARY_PATH", &built.lib_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let lines = support::patient::read_lines(&mut child);
        Watched { child, lines }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(20))
            .expect("a line within 20 s")
    }

    /// Skips lines starting with `skip` until one starting with `want`;
    /// returns the line before it (`prev` if none was skipped) and it.
    fn until(&self, prev: String, skip: &str, want: &str) -> (String, String) {
        let mut last = prev;
        loop {
            let l = self.line();
            if l.starts_with(want) {
                return (last, l);
            }
            assert!(l.starts_with(skip), "unexpected line {l:?}");
            last = l;
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn numbers(line: &str) -> Vec<i64> {
    line.split_whitespace()
        .skip(1)
        .map(|w| w.parse().unwrap())
        .collect()
}

fn seed() -> (Case, support::Built) {
    let case = Case::load("seed");
    let built = build_by_recipe(&case, Flavour::PIE_O0);
    (case, built)
}

/// A copy of `kpatch` whose header is rebuilt around `elf` (or its own ELF)
/// with another BuildID.
fn rewrap(kpatch: &Path, build_id: Option<&str>, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let bytes = std::fs::read(kpatch).unwrap();
    let k = kpatch_file::KpatchFile::parse(&bytes).unwrap();
    let mut elf = k.elf.to_vec();
    edit(&mut elf);
    kpatch_file::build(
        &elf,
        &kpatch_file::MakeOptions {
            build_id: build_id.unwrap_or(&k.header.build_id).into(),
            user_level: k.header.user_level,
            checksum: true,
            ..Default::default()
        },
    )
    .unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn ctl_refuses_a_pid_that_does_not_exist() {
    let (_case, built) = seed();
    let out = ctl(&["patch", "-p", "999999999", built.patch.to_str().unwrap()]);
    refused(&out, "process 999999999 does not exist");
    let out = ctl(&["unpatch", "-p", "999999999"]);
    refused(&out, "does not exist");
}

#[test]
fn ctl_bad_files_leave_the_patient_untouched() {
    let (case, built) = seed();
    let before = case.before.as_str();
    let mut patient = Patient::start(&built);
    patient.wait_for(before, &[]);
    let pid = patient.pid();
    let snap = snapshot(pid);
    let good = std::fs::read(&built.patch).unwrap();
    let dir = built.dir.path();

    let mut wrong_magic = good.clone();
    wrong_magic[..8].copy_from_slice(b"NOTPATCH");
    let truncated = &good[..good.len() / 2];
    let tiny = &good[..100];
    let other_id = rewrap(
        &built.patch,
        Some("0123456789abcdef0123456789abcdef01234567"),
        |_| {},
    );
    // A relocation type the doctor does not know (R_X86_64_GOT32 = 3) in the
    // first RELA section: refused before anything is written.
    let bad_reloc = rewrap(&built.patch, None, |elf| {
        let shoff = u64::from_le_bytes(elf[0x28..0x30].try_into().unwrap()) as usize;
        let shnum = u16::from_le_bytes(elf[0x3c..0x3e].try_into().unwrap()) as usize;
        for i in 0..shnum {
            let sh = shoff + i * 64;
            let ty = u32::from_le_bytes(elf[sh + 4..sh + 8].try_into().unwrap());
            if ty == 4 {
                let off = u64::from_le_bytes(elf[sh + 24..sh + 32].try_into().unwrap()) as usize;
                elf[off + 8..off + 12].copy_from_slice(&3u32.to_le_bytes());
                return;
            }
        }
        panic!("no RELA section in the patch ELF");
    });

    let cases: [(&str, &[u8], &str); 5] = [
        ("magic.kpatch", &wrong_magic, "bad magic"),
        ("truncated.kpatch", truncated, "truncated.kpatch"),
        ("tiny.kpatch", tiny, "not a kpatch file"),
        (
            "other.kpatch",
            &other_id,
            "BuildID 0123456789abcdef0123456789abcdef01234567 matches no object",
        ),
        ("reloc.kpatch", &bad_reloc, "unsupported relocation type"),
    ];
    for (name, bytes, why) in cases {
        let path = write(dir, name, bytes);
        let out = ctl(&["patch", "-p", &pid.to_string(), path.to_str().unwrap()]);
        refused(&out, why);
        patient.expect_steady(before, 2);
        assert_eq!(
            snapshot(pid),
            snap,
            "{name}: the patient's code or mappings changed"
        );
    }
    assert!(patient.alive());
}

#[test]
fn ctl_patch_twice_info_json_and_exact_unpatch() {
    let (case, built) = seed();
    let (before, after) = (case.before.as_str(), case.after.as_str());
    let mut patient = Patient::start(&built);
    patient.wait_for(before, &[]);
    let pid = patient.pid().to_string();
    let patch = built.patch.to_str().unwrap();
    let snap = snapshot(patient.pid());

    let out = ctl(&["patch", "-p", &pid, "-j", patch]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["pid"].as_i64(), Some(i64::from(patient.pid())));
    assert_eq!(v["status"], "patched");
    assert_eq!(v["hunks"], 1);
    assert_eq!(v["objects"][0], built.program.to_str().unwrap());
    assert!(v["error"].is_null());
    assert_eq!(v["patches"][0]["functions"][0], "i_m_being_patched");
    assert_eq!(v["patches"][0]["build_id"], built.targets[0].as_str());
    assert!(v["stopped_us"].as_u64().unwrap() > 0);
    patient.wait_for(after, &[before]);

    // The same patch again: said so, nothing changes.
    let mapped = snapshot(patient.pid());
    let out = ctl(&["patch", "-p", &pid, patch]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("already applied"), "{}", stdout(&out));
    assert_eq!(snapshot(patient.pid()), mapped);
    patient.expect_steady(after, 2);

    let out = ctl(&["info", "-p", &pid, "-j"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let patches = v["patches"].as_array().unwrap();
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0]["functions"][0], "i_m_being_patched");
    assert!(
        v["objects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["build_id"] == built.targets[0].as_str())
    );

    let out = ctl(&["unpatch", "-p", &pid, "-j"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["status"], "unpatched");
    patient.wait_for(before, &[after]);
    patient.expect_steady(before, 2);
    assert_eq!(
        snapshot(patient.pid()).text,
        snap.text,
        "original bytes back"
    );

    // Nothing left to remove; a region that was still referenced when the
    // patch came off (retired) is unmapped by now.
    let out = ctl(&["unpatch", "-p", &pid]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("nothing to unpatch"),
        "{}",
        stdout(&out)
    );
    assert_eq!(snapshot(patient.pid()), snap, "region unmapped");
}

#[test]
fn ctl_patch_from_storage_directories_and_levels() {
    let (case, built) = seed();
    let (before, after) = (case.before.as_str(), case.after.as_str());
    let id = &built.targets[0];
    let good = std::fs::read(&built.patch).unwrap();

    // <dir>/<BuildID>.kpatch
    let flat = built.dir.path().join("flat");
    std::fs::create_dir(&flat).unwrap();
    write(&flat, &format!("{id}.kpatch"), &good);
    // <dir>/<BuildID>/<level>/kpatch.bin, latest -> 2
    let levels = built.dir.path().join("levels");
    for lv in [1u32, 2] {
        let d = levels.join(id).join(lv.to_string());
        std::fs::create_dir_all(&d).unwrap();
        let bytes = kpatch_file::build(
            kpatch_file::KpatchFile::parse(&good).unwrap().elf,
            &kpatch_file::MakeOptions {
                build_id: id.clone(),
                user_level: lv,
                checksum: true,
                ..Default::default()
            },
        )
        .unwrap();
        write(&d, "kpatch.bin", &bytes);
    }
    std::os::unix::fs::symlink("1", levels.join(id).join("latest")).unwrap();

    let mut patient = Patient::start(&built);
    patient.wait_for(before, &[]);
    let pid = patient.pid().to_string();

    let out = ctl(&["patch", "-p", &pid, flat.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    patient.wait_for(after, &[before]);
    let out = ctl(&["unpatch", "-p", &pid, id]);
    assert!(out.status.success(), "{}", stderr(&out));
    patient.wait_for(before, &[after]);

    let out = ctl(&["patch", "-p", &pid, "-j", levels.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["patches"][0]["level"], 1);
    patient.wait_for(after, &[before]);

    // latest -> 2: level 2 replaces level 1 in one go.
    std::fs::remove_file(levels.join(id).join("latest")).unwrap();
    std::os::unix::fs::symlink("2", levels.join(id).join("latest")).unwrap();
    let out = ctl(&["patch", "-p", &pid, "-j", levels.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    patient.expect_steady(after, 2);
    let out = ctl(&["info", "-p", &pid, "-j"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let patches = v["patches"].as_array().unwrap();
    assert_eq!(patches.len(), 1, "{v}");
    assert_eq!(patches[0]["level"], 2);

    // A lower level than the applied one is not applied.
    std::fs::remove_file(levels.join(id).join("latest")).unwrap();
    std::os::unix::fs::symlink("1", levels.join(id).join("latest")).unwrap();
    let out = ctl(&["patch", "-p", &pid, levels.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("level"), "{}", stdout(&out));

    let out = ctl(&["unpatch", "-p", &pid]);
    assert!(out.status.success(), "{}", stderr(&out));
    patient.wait_for(before, &[after]);
    patient.expect_steady(before, 2);
}

#[test]
fn ctl_refuses_a_function_that_never_returns_within_the_timeout() {
    let case = Case::load("ctl_busy");
    let built = build_by_recipe(&case, Flavour::PIE_O2_G);
    let before = case.before.as_str();
    let mut patient = Patient::start(&built);
    patient.wait_for(before, &[]);
    let pid = patient.pid();
    let snap = snapshot(pid);
    let t0 = std::time::Instant::now();
    let out = ctl(&[
        "patch",
        "-p",
        &pid.to_string(),
        "--timeout",
        "0.3",
        built.patch.to_str().unwrap(),
    ]);
    refused(&out, "`spin`");
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));
    patient.expect_steady(before, 3);
    assert_eq!(snapshot(pid), snap, "region unmapped, code unchanged");
    assert!(patient.alive());
}

#[test]
fn ctl_help_and_usage() {
    let out = ctl(&["--help"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("patch"));
    for alias in ["patch-user", "unpatch-user", "info-user"] {
        let out = ctl(&[alias, "--help"]);
        assert!(out.status.success(), "{alias}");
    }
    let out = ctl(&["patch"]);
    assert_eq!(out.status.code(), Some(2));
    let out = ctl(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

/// The patched code reads and writes the original's global, file-static,
/// static local and thread-local variables (values continue across the
/// switch both ways), calls IFUNC glibc functions, uses stdout, stderr,
/// environ and errno, adds a function and a zero-initialised variable, and
/// is reached through a function pointer taken before the patch.
fn glibc_state(flavour: Flavour) {
    let case = Case::load("ctl_glibc");
    let built = build_by_recipe(&case, flavour);
    let w = Watched::start(&built, &[("CTL_MARK", "new")]);
    let pid = w.pid();
    let first = w.line();
    assert!(first.starts_with("old "), "{first}");
    let out = ctl(&["-v", "patch", "-p", &pid, built.patch.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (last_old, first_new) = w.until(first, "old", "new");
    let old = numbers(&last_old);
    let new = numbers(&first_new);
    // global, file-static, static local, thread-local: one step further.
    for i in 0..4 {
        assert_eq!(
            new[i],
            old[i] + 1,
            "state {i} continues: {old:?} -> {new:?}"
        );
    }
    // environ seen, strlen("new") through IFUNC, new variable starts at 0.
    assert_eq!(&new[4..], &[1, 3, 1], "{first_new}");
    let second = w.line();
    let next = numbers(&second);
    assert_eq!(next[0], new[0] + 1);
    assert_eq!(next[6], 2, "the new variable keeps its value");

    let out = ctl(&["unpatch", "-p", &pid]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (last_new, back) = w.until(second, "new", "old");
    let last_new = numbers(&last_new);
    let back = numbers(&back);
    for i in 0..4 {
        assert_eq!(
            back[i],
            last_new[i] + 1,
            "state {i} continues after unpatch"
        );
    }
}

#[test]
fn ctl_glibc_state_pie_o2_g() {
    glibc_state(Flavour::PIE_O2_G);
}

#[test]
fn ctl_glibc_state_pie_o0() {
    glibc_state(Flavour::PIE_O0);
}

#[test]
fn ctl_glibc_state_nopie_o2_g() {
    glibc_state(Flavour::NOPIE_O2_G);
}

#[test]
fn ctl_glibc_state_nopie_o0() {
    glibc_state(Flavour::NOPIE_O0);
}

#[test]
fn ctl_exe_and_library_in_one_go_recipe() {
    let case = Case::load("ctl_both");
    let built = build_by_recipe(&case, Flavour::PIE_O2_G);
    assert_eq!(built.targets.len(), 2, "exe and library both patched");
    support::patch_and_unpatch(&case, &built);
}

#[test]
fn ctl_exe_and_library_in_one_go_patch_make() {
    let case = Case::load("ctl_both");
    let built = support::build_by_patch_make(&case, Flavour::NOPIE_O2_G);
    assert_eq!(built.targets.len(), 2, "exe and library both patched");
    support::patch_and_unpatch(&case, &built);
}

/// Eight threads in the patched function's neighbourhood, 200
/// patch/unpatch cycles: every thread switches, none loses or repeats a
/// call (per-thread sequence numbers stay consecutive), none goes back to
/// old code after it ran new code within one cycle.
#[test]
fn ctl_eight_threads_many_cycles() {
    const CYCLES: usize = 200;
    let case = Case::load("ctl_threads");
    let built = build_by_recipe(&case, Flavour::PIE_O2_G);
    let w = Watched::start(&built, &[]);
    let pid = w.pid();
    let patch = built.patch.to_str().unwrap();
    let mut next_seq = [None::<i64>; 8];
    let mut read_until_all = |word: &str| {
        let mut switched = [false; 8];
        while !switched.iter().all(|&s| s) {
            let l = w.line();
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 3, "{l}");
            let id: usize = f[1].parse().unwrap();
            let seq: i64 = f[2].parse().unwrap();
            if let Some(want) = next_seq[id] {
                assert_eq!(seq, want, "thread {id}: a call was lost or repeated ({l})");
            }
            next_seq[id] = Some(seq + 1);
            if f[0] == word {
                switched[id] = true;
            } else {
                assert!(!switched[id], "thread {id} went back to old code: {l}");
            }
        }
    };
    read_until_all("old");
    for _ in 0..CYCLES {
        let out = ctl(&["patch", "-p", &pid, patch]);
        assert!(out.status.success(), "{}", stderr(&out));
        read_until_all("new");
        let out = ctl(&["unpatch", "-p", &pid]);
        assert!(out.status.success(), "{}", stderr(&out));
        read_until_all("old");
    }
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count();
    assert_eq!(threads, 9, "all threads alive");
}

/// `-p all` inside a private PID namespace (never against the machine's own
/// processes): the ten patients are patched and unpatched, an unrelated
/// process is never attached, JSON says one object per patched process.
#[test]
fn ctl_all_processes_in_a_private_pid_namespace() {
    const N: usize = 10;
    let (case, built) = seed();
    let dir = built.dir.path().join("ns");
    std::fs::create_dir(&dir).unwrap();
    let ctl_bin = support::tool("libcare-ctl");
    let script = format!(
        r#"set -e
cd {dir}
for i in $(seq 1 {N}); do
  LD_PRELOAD={fs} {prog} > out.$i 2>&1 &
done
sleep 100 &
echo $! > unrelated
sleep 0.3
set +e
{ctl} -j patch -p all {patch} > patch.json 2> patch.err; echo $? > patch.rc
sleep 0.2
{ctl} -j info -p all > info.json 2> info.err
{ctl} -j unpatch -p all > unpatch.json 2> unpatch.err; echo $? > unpatch.rc
sleep 0.2
"#,
        dir = dir.display(),
        fs = support::patient::fastsleep().display(),
        prog = built.program.display(),
        ctl = ctl_bin.display(),
        patch = built.patch.display(),
    );
    // --kill-child: if this test dies, the namespace's init and with it
    // every process inside die too.
    let mut child = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "sh",
            "-c",
            &script,
        ])
        .spawn()
        .unwrap();
    struct Reap(Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let status = {
        let start = std::time::Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > Duration::from_secs(60) {
                drop(Reap(child));
                panic!("namespace script hung");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    assert!(status.success(), "namespace script failed: {status}");
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap();
    assert_eq!(read("patch.rc").trim(), "0", "{}", read("patch.err"));
    assert_eq!(read("unpatch.rc").trim(), "0", "{}", read("unpatch.err"));
    let unrelated: i64 = read("unrelated").trim().parse().unwrap();
    for (file, status) in [("patch.json", "patched"), ("unpatch.json", "unpatched")] {
        let reports: Vec<serde_json::Value> = read(file)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            reports.len(),
            N,
            "{file}: one object per patient:\n{}",
            read(file)
        );
        for r in &reports {
            assert_eq!(r["status"], status, "{r}");
            assert_ne!(r["pid"].as_i64(), Some(unrelated));
        }
    }
    let info: Vec<serde_json::Value> = read("info.json")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let with_patches = info
        .iter()
        .filter(|i| !i["patches"].as_array().unwrap().is_empty())
        .count();
    assert_eq!(with_patches, N);
    for i in 1..=N {
        let out = read(&format!("out.{i}"));
        let lines: Vec<&str> = out.lines().collect();
        let first_new = lines
            .iter()
            .position(|l| *l == case.after)
            .expect("patched");
        let back = first_new
            + lines[first_new..]
                .iter()
                .position(|l| *l == case.before)
                .expect("unpatched");
        assert!(lines[..first_new].iter().all(|l| *l == case.before));
        assert!(lines[first_new..back].iter().all(|l| *l == case.after));
        assert!(lines[back..].iter().all(|l| *l == case.before));
    }
}

/// The patched function holds the program nearly all the time (it sleeps
/// inside it): patch and unpatch wait for it to return, with a breakpoint
/// on its return address, and succeed well within the default timeout.
fn sleepy(flavour: Flavour) {
    let case = Case::load("ctl_sleepy");
    let built = build_by_recipe(&case, flavour);
    let t0 = std::time::Instant::now();
    support::patch_and_unpatch(&case, &built);
    assert!(t0.elapsed() < Duration::from_secs(10));
}

#[test]
fn ctl_waits_for_a_busy_function_to_return_pie_o2_g() {
    sleepy(Flavour::PIE_O2_G);
}

#[test]
fn ctl_waits_for_a_busy_function_to_return_nopie_o0() {
    sleepy(Flavour::NOPIE_O0);
}

/// Thread-locals across the switch: the executable's own (TPOFF32) and a
/// library's reached through the executable's GOT slot (GOTTPOFF) keep
/// counting from where the old code left them, both ways.
fn tls_counts(flavour: Flavour) {
    let case = Case::load("ctl_tls");
    let built = build_by_recipe(&case, flavour);
    let w = Watched::start(&built, &[]);
    let pid = w.pid();
    let first = w.line();
    let out = ctl(&["patch", "-p", &pid, built.patch.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (old, new) = w.until(first, "old", "new");
    let (old, new) = (numbers(&old), numbers(&new));
    assert_eq!(new, vec![old[0] + 1, old[1] + 1], "{old:?} -> {new:?}");
    let second = w.line();
    let out = ctl(&["unpatch", "-p", &pid]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (last, back) = w.until(second, "new", "old");
    let (last, back) = (numbers(&last), numbers(&back));
    assert_eq!(back, vec![last[0] + 1, last[1] + 1], "{last:?} -> {back:?}");
}

#[test]
fn ctl_thread_locals_pie_o2_g() {
    tls_counts(Flavour::PIE_O2_G);
}

#[test]
fn ctl_thread_locals_nopie_o0() {
    tls_counts(Flavour::NOPIE_O0);
}

/// SIGTERM and SIGINT while libcare-ctl waits for a safe moment: it finishes
/// (here: gives up at its timeout and rolls back) instead of dying with
/// breakpoints planted, says why on one line, exits non-zero, and the
/// patient runs on untouched.
#[test]
fn ctl_termination_signals_wait_for_a_clean_end() {
    let case = Case::load("ctl_busy");
    let built = build_by_recipe(&case, Flavour::PIE_O2_G);
    let before = case.before.as_str();
    let mut patient = Patient::start(&built);
    patient.wait_for(before, &[]);
    let pid = patient.pid();
    let snap = snapshot(pid);
    for sig in ["-TERM", "-INT"] {
        let mut run = Command::new(support::tool("libcare-ctl"))
            .args(["patch", "-p", &pid.to_string(), "--timeout", "0.5"])
            .arg(&built.patch)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(150));
        let ok = Command::new("kill")
            .args([sig, &run.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let out = {
            let start = std::time::Instant::now();
            while run.try_wait().unwrap().is_none() {
                if start.elapsed() > Duration::from_secs(20) {
                    let _ = run.kill();
                    panic!("libcare-ctl did not end");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            run.wait_with_output().unwrap()
        };
        assert!(!out.status.success());
        assert!(
            out.status.code().is_some(),
            "ended by exit, not by the signal"
        );
        let err = stderr(&out);
        assert!(
            err.contains("`spin`") && err.contains("interrupted"),
            "{err}"
        );
        patient.expect_steady(before, 3);
        assert_eq!(snapshot(pid), snap);
    }
    assert!(patient.alive());
}

/// The patient must not notice: a thread blocked in read() on a pipe loses
/// no byte and sees no EINTR, a 2 ms interval timer keeps ticking, and a
/// patched function that runs inside the timer's signal handler (below a
/// signal frame) switches too, over several patch/unpatch cycles.
#[test]
fn ctl_signals_and_blocked_syscalls_are_undisturbed() {
    let case = Case::load("ctl_signals");
    let built = build_by_recipe(&case, Flavour::PIE_O2_G);
    let w = Watched::start(&built, &[]);
    let pid = w.pid();
    let patch = built.patch.to_str().unwrap();
    // word seq got errors ticks handler-char
    let mut last_ticks = -1i64;
    let mut until = |word: &str, handler: &str| {
        let start_ticks = last_ticks;
        for _ in 0..500 {
            let l = w.line();
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 6, "{l}");
            let n = |i: usize| f[i].parse::<i64>().unwrap();
            let (seq, got, errors, ticks) = (n(1), n(2), n(3), n(4));
            assert_eq!(errors, 0, "a read failed (EINTR?): {l}");
            assert!(got == seq || got == seq - 1, "bytes lost: {l}");
            assert!(ticks >= last_ticks, "ticks went back: {l}");
            last_ticks = ticks;
            if f[0] == word && f[5] == handler && ticks > start_ticks {
                return;
            }
        }
        panic!("never saw {word} {handler}");
    };
    until("old", "o");
    for _ in 0..8 {
        let out = ctl(&["patch", "-p", &pid, patch]);
        assert!(out.status.success(), "{}", stderr(&out));
        until("new", "n");
        let out = ctl(&["unpatch", "-p", &pid]);
        assert!(out.status.success(), "{}", stderr(&out));
        until("old", "o");
    }
}

/// A patient already traced by another tracer (strace) is refused with a
/// clear line, and keeps running unchanged.
#[test]
fn ctl_refuses_a_process_traced_by_someone_else() {
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("strace not installed; skipped");
        return;
    }
    let (case, built) = seed();
    let before = case.before.as_str();
    let mut patient = Patient::start(&built);
    patient.wait_for(before, &[]);
    let pid = patient.pid();
    let snap = snapshot(pid);
    struct Tracer(Child);
    impl Drop for Tracer {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _tracer = Tracer(
        Command::new("strace")
            .args([
                "-qq",
                "-e",
                "trace=none",
                "-o",
                "/dev/null",
                "-p",
                &pid.to_string(),
            ])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Wait until strace is attached.
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .any(|l| l.starts_with("TracerPid:") && l.trim() != "TracerPid:\t0")
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "strace never attached"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = ctl(&[
        "patch",
        "-p",
        &pid.to_string(),
        built.patch.to_str().unwrap(),
    ]);
    refused(&out, "already traced");
    patient.expect_steady(before, 3);
    assert_eq!(snapshot(pid), snap);
}

/// A target without `.symtab` (stripped, as distributions ship binaries) is
/// patched all the same: the doctor needs only its section headers and
/// dynamic symbols.
#[test]
fn ctl_patches_a_stripped_binary() {
    let (case, mut built) = seed();
    let stripped = built.dir.path().join("foo.stripped");
    std::fs::copy(&built.program, &stripped).unwrap();
    let ok = Command::new("strip").arg(&stripped).status().unwrap();
    assert!(ok.success());
    assert_eq!(support::build_id(&stripped), built.targets[0]);
    assert!(!support::tools::has_section(&stripped, ".symtab"));
    built.program = stripped;
    support::patch_and_unpatch(&case, &built);
}

/// `info` filters: `-b BUILDID`, `-s STORAGE` (objects with a patch there),
/// `-r` on the process name.
#[test]
fn ctl_info_filters() {
    let (case, built) = seed();
    let mut patient = Patient::start(&built);
    patient.wait_for(&case.before, &[]);
    let pid = patient.pid().to_string();
    let id = built.targets[0].as_str();
    let json = |args: &[&str]| -> serde_json::Value {
        let out = ctl(args);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str(stdout(&out).trim()).unwrap()
    };
    let all = json(&["-j", "info", "-p", &pid]);
    assert!(all["objects"].as_array().unwrap().len() >= 3, "{all}");
    let one = json(&["-j", "info", "-p", &pid, "-b", id]);
    let objs = one["objects"].as_array().unwrap();
    assert_eq!(objs.len(), 1, "{one}");
    assert_eq!(objs[0]["build_id"], id);
    let store = built.dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    std::fs::copy(&built.patch, store.join(format!("{id}.kpatch"))).unwrap();
    let stored = json(&["-j", "info", "-p", &pid, "-s", store.to_str().unwrap()]);
    let objs = stored["objects"].as_array().unwrap();
    assert_eq!(objs.len(), 1, "{stored}");
    assert_eq!(objs[0]["in_storage"], true);
    let out = ctl(&["-j", "info", "-p", &pid, "-r", "^no-such-name$"]);
    assert!(out.status.success());
    assert!(stdout(&out).trim().is_empty(), "{}", stdout(&out));
    let named = json(&["-j", "info", "-p", &pid, "-r", "^foo$"]);
    assert_eq!(named["pid"].as_i64(), Some(i64::from(patient.pid())));
}

/// Starts `argv` stopped at its very first instruction (in the dynamic
/// linker, before any library is loaded) and prints its pid on stderr; it
/// stays its parent until it ends. Used to test patching before `main`.
const LAUNCH_STOPPED_C: &str = r#"
#include <signal.h>
#include <stdio.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	int st;
	pid_t p = fork();
	(void)argc;
	if (p == 0) {
		ptrace(PTRACE_TRACEME, 0, 0, 0);
		execv(argv[1], argv + 1);
		_exit(127);
	}
	waitpid(p, &st, 0);
	ptrace(PTRACE_DETACH, p, 0, SIGSTOP);
	fprintf(stderr, "%d\n", p);
	fflush(stderr);
	while (waitpid(p, &st, 0) != p || !(WIFEXITED(st) || WIFSIGNALED(st)))
		;
	return 0;
}
"#;

/// A process caught before its dynamic linker has loaded the libraries is
/// run to its entry point and patched there: the first line it ever prints
/// is the patched one.
#[test]
fn ctl_patches_a_starting_process_before_main() {
    let (case, built) = seed();
    let dir = built.dir.path();
    std::fs::write(dir.join("launch.c"), LAUNCH_STOPPED_C).unwrap();
    let ok = Command::new("gcc")
        .args(["-O2", "-o", "launch", "launch.c"])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(ok.success());
    let mut launcher = Command::new(dir.join("launch"))
        .arg(&built.program)
        .env("LD_PRELOAD", support::patient::fastsleep())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(Child, Option<String>);
    impl Drop for Kill {
        fn drop(&mut self) {
            if let Some(pid) = &self.1 {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let out = launcher.stdout.take().unwrap();
    let mut err = BufReader::new(launcher.stderr.take().unwrap());
    let mut guard = Kill(launcher, None);
    let mut pid = String::new();
    err.read_line(&mut pid).unwrap();
    let pid = pid.trim().to_string();
    guard.1 = Some(pid.clone());
    // The SIGSTOP the launcher left it with takes effect asynchronously.
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .contains("State:\tT")
    {
        assert!(start.elapsed() < Duration::from_secs(10), "never stopped");
        std::thread::sleep(Duration::from_millis(5));
    }
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert!(!maps.contains("libc.so"), "no library loaded yet");

    let out_ctl = ctl(&["-v", "patch", "-p", &pid, built.patch.to_str().unwrap()]);
    assert!(out_ctl.status.success(), "{}", stderr(&out_ctl));
    assert!(
        stderr(&out_ctl).contains("entry point"),
        "{}",
        stderr(&out_ctl)
    );
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut lines = BufReader::new(out).lines();
    for _ in 0..3 {
        assert_eq!(lines.next().unwrap().unwrap(), case.after);
    }
}

/// The patient dies while libcare-ctl waits for a safe moment: the command
/// ends promptly with one line saying so, instead of waiting out its
/// timeout or hanging.
#[test]
fn ctl_patient_exiting_mid_patch_is_reported() {
    let case = Case::load("ctl_busy");
    let built = build_by_recipe(&case, Flavour::PIE_O2_G);
    let mut patient = Patient::start(&built);
    patient.wait_for(&case.before, &[]);
    let pid = patient.pid().to_string();
    let mut run = Command::new(support::tool("libcare-ctl"))
        .args(["patch", "-p", &pid, "--timeout", "20"])
        .arg(&built.patch)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success()
    );
    let start = std::time::Instant::now();
    while run.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(10) {
            let _ = run.kill();
            let _ = run.wait();
            panic!("libcare-ctl still waiting after its patient died");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = run.wait_with_output().unwrap();
    refused(&out, &format!("process {pid}"));
    drop(patient);
}

/// Functions that start with `endbr64` (built with -fcf-protection) keep it:
/// the jump goes right after it, and unpatch restores the bytes after it.
#[test]
fn ctl_patches_after_endbr64() {
    const CET: Flavour = Flavour {
        name: "pie-O2-cet",
        cflags: "-O2 -g -fcf-protection=full",
    };
    let case = Case::load("seed");
    let built = build_by_recipe(&case, CET);
    let mut patient = Patient::start(&built);
    patient.wait_for(&case.before, &[]);
    let pid = patient.pid();
    let snap = snapshot(pid);
    let out = ctl(&[
        "-v",
        "patch",
        "-p",
        &pid.to_string(),
        built.patch.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // "i_m_being_patched: jump at A -> B": A must hold endbr64 4 bytes before.
    let err = stderr(&out);
    let at = err
        .split("jump at ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| panic!("no jump address in {err}"));
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut b = [0u8; 5];
    std::os::unix::fs::FileExt::read_exact_at(&mem, &mut b[..4], at - 4).unwrap();
    assert_eq!(&b[..4], &[0xf3, 0x0f, 0x1e, 0xfa], "endbr64 kept");
    std::os::unix::fs::FileExt::read_exact_at(&mem, &mut b[..1], at).unwrap();
    assert_eq!(b[0], 0xe9, "jmp rel32 after it");
    patient.wait_for(&case.after, &[&case.before]);
    let out = ctl(&["unpatch", "-p", &pid.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    patient.wait_for(&case.before, &[&case.after]);
    patient.expect_steady(&case.before, 2);
    assert_eq!(snapshot(pid).text, snap.text, "original bytes back");
}

/// A thread blocked in `epoll_wait` (ten-minute timeout) that exits on
/// EINTR: the kernel never restarts `epoll_wait` after a ptrace stop, so
/// the doctor must rewind the call it interrupted. 20 patch/unpatch
/// cycles; the waiter keeps seeing its events and the patient lives.
#[test]
fn ctl_epoll_wait_sees_no_eintr() {
    const CYCLES: usize = 20;
    let case = Case::load("ctl_epoll");
    let built = build_by_recipe(&case, Flavour::PIE_O2_G);
    let mut w = Watched::start(&built, &[]);
    let pid = w.pid();
    let patch = built.patch.to_str().unwrap();
    let events = |l: &str| numbers(l).last().copied().unwrap_or(-1);
    let (_, mut l) = w.until(String::new(), "", "old");
    for _ in 0..CYCLES {
        let out = ctl(&["patch", "-p", &pid, patch]);
        assert!(out.status.success(), "{}", stderr(&out));
        (_, l) = w.until(l, "old", "new");
        let out = ctl(&["unpatch", "-p", &pid]);
        assert!(out.status.success(), "{}", stderr(&out));
        (_, l) = w.until(l, "new", "old");
    }
    let seen = events(&l);
    for _ in 0..30 {
        l = w.line();
    }
    assert!(events(&l) > seen, "the waiter stopped seeing events: {l}");
    assert!(
        w.child.try_wait().unwrap().is_none(),
        "the patient ended (EINTR from epoll_wait?)"
    );
}

/// A patient that creates a thread per request, all the time: 25
/// patch/unpatch cycles, none refused and none hung. A thread stopped
/// just after clone3's syscall (where glibc gives no unwind info) is only
/// unwalkable for a moment, and an interrupt used up by a clone event
/// stop is sent again.
#[test]
fn ctl_threads_created_while_patching_many_cycles() {
    const CYCLES: usize = 25;
    let case = Case::load("field_spawner");
    let built = build_by_recipe(&case, Flavour::PIE_O2_G);
    let mut patient = Patient::start(&built);
    let (before, after) = (case.before.as_str(), case.after.as_str());
    patient.wait_for(before, &[]);
    let pid = patient.pid().to_string();
    let patch = built.patch.to_str().unwrap();
    for _ in 0..CYCLES {
        let out = ctl(&["patch", "-p", &pid, patch]);
        assert!(out.status.success(), "{}", stderr(&out));
        patient.wait_for(after, &[before]);
        let out = ctl(&["unpatch", "-p", &pid]);
        assert!(out.status.success(), "{}", stderr(&out));
        patient.wait_for(before, &[after]);
    }
    assert!(patient.alive());
}

/// SIGTERM while libcare-ctl waits, with a long `--timeout` (60 s), for a
/// function that never returns: it rolls back and ends long before the
/// timeout, and the patient runs on untouched.
#[test]
fn ctl_termination_does_not_wait_out_a_long_timeout() {
    let case = Case::load("ctl_busy");
    let built = build_by_recipe(&case, Flavour::PIE_O2_G);
    let before = case.before.as_str();
    let mut patient = Patient::start(&built);
    patient.wait_for(before, &[]);
    let pid = patient.pid();
    let snap = snapshot(pid);
    let mut run = Command::new(support::tool("libcare-ctl"))
        .args(["patch", "-p", &pid.to_string(), "--timeout", "60"])
        .arg(&built.patch)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let ok = Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let start = std::time::Instant::now();
    while run.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = run.kill();
            panic!("libcare-ctl waited out its timeout after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = run.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("interrupted by SIGTERM"), "{err}");
    patient.expect_steady(before, 3);
    assert_eq!(snapshot(pid), snap);
    assert!(patient.alive());
}

/// `patch --dry-run` goes as far as the first write and says what it would
/// do: the seed's function would be applied at a region and the moment is
/// safe; for a function that never returns, that it is not safe and why.
/// Neither patient changes (code bytes, mappings, output); the real patch
/// still works afterwards.
#[test]
fn ctl_dry_run_changes_nothing_and_tells_what_would_be_done() {
    let (case, built) = seed();
    let before = case.before.as_str();
    let mut patient = Patient::start(&built);
    patient.wait_for(before, &[]);
    let pid = patient.pid();
    let snap = snapshot(pid);
    let patch = built.patch.to_str().unwrap();
    let out = ctl(&["patch", "--dry-run", "-p", &pid.to_string(), patch]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(said.contains("dry run, safe now"), "{said}");
    assert!(said.contains("would apply at 0x"), "{said}");
    assert!(said.contains("i_m_being_patched"), "{said}");
    patient.expect_steady(before, 3);
    assert_eq!(snapshot(pid), snap, "a dry run wrote nothing");
    let info = stdout(&ctl(&["info", "-p", &pid.to_string()]));
    assert!(
        !info.contains("level") && !info.contains("patch region"),
        "{info}"
    );
    let out = ctl(&["patch", "-p", &pid.to_string(), patch]);
    assert!(out.status.success(), "{}", stderr(&out));
    patient.wait_for(&case.after, &[before]);

    let case = Case::load("ctl_busy");
    let built = build_by_recipe(&case, Flavour::PIE_O2_G);
    let mut busy = Patient::start(&built);
    busy.wait_for(&case.before, &[]);
    let pid = busy.pid();
    let snap = snapshot(pid);
    let out = ctl(&[
        "-j",
        "patch",
        "--dry-run",
        "-p",
        &pid.to_string(),
        built.patch.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let status = report["status"].as_str().unwrap();
    assert!(
        status.contains("not safe now") && status.contains("`spin`"),
        "{status}"
    );
    busy.expect_steady(&case.before, 2);
    assert_eq!(snapshot(pid), snap, "a dry run wrote nothing");
}
