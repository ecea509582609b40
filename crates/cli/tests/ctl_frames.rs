//! libcare-ctl and the patch code's own unwind table (`.kpatch.eh_frame`):
//! the safety check walks through patch frames of earlier patches, and a
//! C++ patient's unwinder is told about them, so exceptions thrown through
//! patched functions are caught as before.

mod support;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use support::{Case, Flavour, Patient, build_by_recipe, ctl};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ctl_ok(args: &[&str]) -> String {
    let out = ctl(args);
    let t = text(&out);
    assert!(out.status.success(), "libcare-ctl {}: {t}", args.join(" "));
    t
}

/// The `ctl_inpatch` program with its nap length in a file the test
/// rewrites (microseconds, before the preload divides it). Killed by PID
/// when dropped.
struct Napper {
    child: Child,
    lines: Receiver<String>,
}

impl Napper {
    fn start(built: &support::Built, nap_file: &Path) -> Napper {
        Napper::start_with(&built.program, nap_file, &[])
    }

    fn start_with(program: &Path, nap_file: &Path, preload: &[&Path]) -> Napper {
        let mut libs = vec![support::patient::fastsleep().display().to_string()];
        libs.extend(preload.iter().map(|p| p.display().to_string()));
        let mut child = Command::new(program)
            .env("LD_PRELOAD", libs.join(":"))
            .env("NAP_FILE", nap_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = support::patient::read_lines(&mut child);
        Napper { child, lines }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Reads lines until `want`, failing on anything but `allowed`.
    fn wait_for(&self, want: &str, allowed: &[&str]) {
        loop {
            let l = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .expect("a line within 20 s");
            if l == want {
                return;
            }
            assert!(allowed.contains(&l.as_str()), "unexpected line {l:?}");
        }
    }
}

impl Drop for Napper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A thread inside the level-1 patch code of `work` (asleep in `nap`,
/// which the patch code called): unpatch walks through the patch frame
/// (no fallback to scanning the stack), waits for it to return, and
/// succeeds; with a nap longer than the timeout it refuses, naming `work`.
fn unpatch_inside_patch_code(flavour: Flavour) {
    let case = Case::load("ctl_inpatch");
    let built = build_by_recipe(&case, flavour);
    let nap = built.dir.path().join("nap");
    // 1 s, a 20 ms nap with the preload.
    std::fs::write(&nap, "1000000").unwrap();
    let p = Napper::start(&built, &nap);
    let pid = p.pid();
    p.wait_for("before", &[]);
    ctl_ok(&["patch", "-p", &pid, built.patch.to_str().unwrap()]);
    p.wait_for("after", &["before"]);

    let log = ctl_ok(&["-vv", "unpatch", "-p", &pid]);
    assert!(log.contains("not safe yet"), "the thread was in nap: {log}");
    assert!(log.contains("work (patch level"), "{log}");
    assert!(log.contains("it is on the stack (frame"), "{log}");
    assert!(!log.contains("cannot be walked"), "{log}");
    p.wait_for("before", &["after"]);

    ctl_ok(&["patch", "-p", &pid, built.patch.to_str().unwrap()]);
    p.wait_for("after", &["before"]);
    // 1000 s, 20 s with the preload: from the next line on, the thread
    // sits in nap below the patch code far longer than the timeout.
    std::fs::write(&nap, "1000000000").unwrap();
    p.wait_for("after", &[]);
    std::thread::sleep(Duration::from_millis(50));
    let out = ctl(&["unpatch", "-p", &pid, "--timeout", "0.3"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("`work (patch level"), "{err}");
    assert!(err.contains("it is on the stack (frame"), "{err}");
    // Still patched: info lists it.
    let info = ctl_ok(&["info", "-p", &pid]);
    assert!(
        info.contains("  patch ") && info.contains(": work"),
        "{info}"
    );
}

#[test]
fn ctl_unpatch_walks_through_patch_frames_pie_o2_g() {
    unpatch_inside_patch_code(Flavour::PIE_O2_G);
}

#[test]
fn ctl_unpatch_walks_through_patch_frames_nopie_o0() {
    unpatch_inside_patch_code(Flavour::NOPIE_O0);
}

/// Exceptions thrown below a patched function and caught inside it, and
/// passing through another into the unpatched caller's catch: the patched
/// lines come, the process lives on, and after unpatch the old ones return.
/// `unwinders`: how many unwinders the patient has (libgcc_s, and a static
/// copy in the program), each of which must get the table.
fn exceptions_through_patch_code(flavour: Flavour, unwinders: usize) {
    let case = Case::load("ctl_cxx_throw");
    let built = build_by_recipe(&case, flavour);
    let (before, after) = (case.before.as_str(), case.after.as_str());
    let mut patient = Patient::start(&built);
    patient.wait_for(before, &[]);
    let pid = patient.pid_arg();
    let log = ctl_ok(&["-vv", "patch", "-p", &pid, built.patch.to_str().unwrap()]);
    assert_eq!(
        log.matches("registered with the patient's unwinder")
            .count(),
        unwinders,
        "{log}"
    );
    patient.note(log);
    patient.wait_for(after, &[before]);
    patient.expect_steady(after, 3);
    let log = ctl_ok(&["-vv", "unpatch", "-p", &pid]);
    assert_eq!(log.matches("deregistered").count(), unwinders, "{log}");
    patient.note(log);
    patient.wait_for(before, &[after]);
    patient.expect_steady(before, 3);
    assert!(patient.alive());
}

#[test]
fn ctl_cxx_exceptions_through_patch_code_pie_o0() {
    exceptions_through_patch_code(Flavour::PIE_O0, 1);
}

#[test]
fn ctl_cxx_exceptions_through_patch_code_pie_o2_g() {
    exceptions_through_patch_code(Flavour::PIE_O2_G, 1);
}

#[test]
fn ctl_cxx_exceptions_through_patch_code_nopie_o2_g() {
    exceptions_through_patch_code(Flavour::NOPIE_O2_G, 1);
}

/// Linked with `-static-libgcc`: the program has its own unwinder (found
/// in its symbol table; its landing pads resume through it), and
/// libstdc++.so brings libgcc_s's (its throws go through that): both get
/// the table.
#[test]
fn ctl_cxx_exceptions_through_patch_code_static_libgcc() {
    exceptions_through_patch_code(
        Flavour {
            name: "pie-O2-g-static-libgcc",
            cflags: "-O2 -g -static-libgcc",
        },
        2,
    );
}

/// A C patient has no libgcc_s: nothing is registered, and -v says so.
#[test]
fn ctl_c_patient_needs_no_frame_registration() {
    let case = Case::load("ctl_inpatch");
    let built = build_by_recipe(&case, Flavour::PIE_O2_G);
    let nap = built.dir.path().join("nap");
    std::fs::write(&nap, "100000").unwrap();
    let p = Napper::start(&built, &nap);
    let pid = p.pid();
    p.wait_for("before", &[]);
    let log = ctl_ok(&["-v", "patch", "-p", &pid, built.patch.to_str().unwrap()]);
    assert!(log.contains("no __register_frame"), "{log}");
    p.wait_for("after", &["before"]);
}

/// Levels 1 and 2 of `ctl_inpatch` by `libcare-patch-make -i`, in a
/// storage directory whose `latest` the test moves. Returns the program,
/// the store and the link `latest`.
fn levels(tmp: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let case = Case::load("ctl_inpatch");
    let proj = tmp.join("proj");
    case.copy_to(&proj);
    let mut built = Vec::new();
    for (level, diff) in [("1", "fix.diff"), ("2", "fix2.diff")] {
        let out = tmp.join(format!("level{level}"));
        support::run_ok(
            Command::new(support::tool("libcare-patch-make"))
                .args(["--clean", "-i", level, "--patchroot"])
                .arg(&out)
                .arg(diff)
                .current_dir(&proj)
                .env("CFLAGS", "-O2 -g"),
        );
        built.push(out);
    }
    let program = proj.join("lpmake/usr/bin/inpatch");
    let id = support::build_id(&program);
    let store = tmp.join("store");
    for (i, from) in built.iter().enumerate() {
        let dir = store.join(&id).join((i + 1).to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(from.join(format!("{id}.kpatch")), dir.join("kpatch.bin")).unwrap();
    }
    let latest = store.join(&id).join("latest");
    std::os::unix::fs::symlink("1", &latest).unwrap();
    (program, store, latest)
}

/// Level 2 replaces level 1 while the thread sits inside level 1's code
/// of `work` (below it, in `nap`): the walk goes through the level-1 patch
/// frame, the switch waits for it and succeeds; with a nap longer than the
/// timeout it refuses, naming `work` of level 1, and level 1 stays.
#[test]
fn ctl_level_2_waits_for_threads_in_level_1_code() {
    let tmp = tempfile::tempdir().unwrap();
    let (program, store, latest) = levels(tmp.path());
    let store = store.to_str().unwrap();
    let nap = tmp.path().join("nap");
    std::fs::write(&nap, "1000000").unwrap();
    let p = Napper::start_with(&program, &nap, &[]);
    let pid = p.pid();
    p.wait_for("before", &[]);
    ctl_ok(&["patch", "-p", &pid, store]);
    p.wait_for("after", &["before"]);

    std::fs::remove_file(&latest).unwrap();
    std::os::unix::fs::symlink("2", &latest).unwrap();
    let log = ctl_ok(&["-vv", "patch", "-p", &pid, store]);
    assert!(log.contains("not safe yet"), "the thread was in nap: {log}");
    assert!(log.contains("work (patch level 1)"), "{log}");
    assert!(log.contains("it is on the stack (frame"), "{log}");
    assert!(!log.contains("cannot be walked"), "{log}");
    p.wait_for("after2", &["after"]);

    // Back to level 1 is refused as a downgrade; start over from 0.
    ctl_ok(&["unpatch", "-p", &pid]);
    p.wait_for("before", &["after2"]);
    std::fs::remove_file(&latest).unwrap();
    std::os::unix::fs::symlink("1", &latest).unwrap();
    ctl_ok(&["patch", "-p", &pid, store]);
    p.wait_for("after", &["before"]);
    std::fs::write(&nap, "1000000000").unwrap();
    p.wait_for("after", &[]);
    std::thread::sleep(Duration::from_millis(50));
    std::fs::remove_file(&latest).unwrap();
    std::os::unix::fs::symlink("2", &latest).unwrap();
    let out = ctl(&["patch", "-p", &pid, store, "--timeout", "0.3"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("`work (patch level 1)`"), "{err}");
    let info = ctl_ok(&["info", "-p", &pid]);
    assert!(
        info.contains("(level 1)") && !info.contains("(level 2)"),
        "{info}"
    );
}

/// A `__register_frame` that never returns (as if a stopped thread held
/// libgcc's lock): the bounded call gives up, everything is rolled back
/// (no new mapping, code bytes as before), one line on stderr, and the
/// patient keeps printing its old line.
#[test]
fn ctl_stuck_register_frame_rolls_the_patch_back() {
    let case = Case::load("ctl_inpatch");
    let built = build_by_recipe(&case, Flavour::PIE_O2_G);
    let stuck = built.dir.path().join("stuck_unwinder.so");
    support::run_ok(
        Command::new("gcc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&stuck)
            .arg(case.dir.join("stuck_unwinder.c")),
    );
    let nap = built.dir.path().join("nap");
    std::fs::write(&nap, "100000").unwrap();
    let p = Napper::start_with(&built.program, &nap, &[&stuck]);
    let pid = p.pid();
    p.wait_for("before", &[]);
    let maps = |pid: &str| -> Vec<String> {
        std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .unwrap()
            .lines()
            .filter(|l| l.split_whitespace().nth(1).is_some_and(|p| p.contains('x')))
            .map(str::to_string)
            .collect()
    };
    let exec_before = maps(&pid);
    let out = ctl(&["patch", "-p", &pid, built.patch.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("did not return in time"), "{err}");
    assert_eq!(maps(&pid), exec_before, "a mapping was left behind");
    for _ in 0..3 {
        p.wait_for("before", &[]);
    }
    let info = ctl_ok(&["info", "-p", &pid]);
    assert!(!info.contains("  patch "), "{info}");
}

/// A C++ patch refused at its timeout (its function never returns) after
/// its unwind table was registered: the rollback takes the table back
/// before unmapping the region, so the exceptions the patient keeps
/// throwing and catching still work (a stale registration would make the
/// next throw read freed memory).
#[test]
fn ctl_cxx_refused_patch_takes_its_frames_back() {
    let case = Case::load("ctl_cxx_busy");
    let built = build_by_recipe(&case, Flavour::PIE_O2_G);
    let before = case.before.as_str();
    let mut patient = Patient::start(&built);
    patient.wait_for(before, &[]);
    let pid = patient.pid_arg();
    let out = ctl(&[
        "-vv",
        "patch",
        "-p",
        &pid,
        "--timeout",
        "0.2",
        built.patch.to_str().unwrap(),
    ]);
    let log = text(&out);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("`_Z4spinv`"), "{log}");
    assert!(
        log.contains("registered with the patient's unwinder"),
        "{log}"
    );
    assert!(log.contains("deregistered"), "{log}");
    patient.note(log);
    // Lines printed while libcare-ctl waited are still in the pipe: let the
    // patient throw a dozen more times after the rollback, then read past
    // all of them.
    std::thread::sleep(Duration::from_millis(250));
    assert!(patient.alive(), "the patient died after the rollback");
    patient.expect_steady(before, 30);
    assert!(patient.alive());
}

/// The main thread never makes a system call (it may be stopped anywhere,
/// even inside malloc); the call to `__register_frame` runs in the other
/// thread, which sits in one.
#[test]
fn ctl_register_frame_runs_in_a_thread_stopped_in_a_syscall() {
    let case = Case::load("ctl_cxx_spin");
    let built = build_by_recipe(&case, Flavour::PIE_O2_G);
    let (before, after) = (case.before.as_str(), case.after.as_str());
    let mut patient = Patient::start(&built);
    patient.wait_for(before, &[]);
    let pid = patient.pid_arg();
    let log = ctl_ok(&["-vv", "patch", "-p", &pid, built.patch.to_str().unwrap()]);
    let threads: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split("in thread ").nth(1))
        .collect();
    assert!(!threads.is_empty(), "{log}");
    assert!(threads.iter().all(|t| *t != pid), "{log}");
    patient.note(log);
    patient.wait_for(after, &[before]);
    ctl_ok(&["unpatch", "-p", &pid]);
    patient.wait_for(before, &[after]);
}
