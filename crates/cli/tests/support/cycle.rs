//! The walk-through every live case goes through: run, patch, look,
//! unpatch, look again.

use super::build::Built;
use super::case::Case;
use super::patient::Patient;
use super::tools::ctl;

/// Runs libcare-ctl, which must succeed; its log goes into the patient's
/// notes so that a later failure shows what was done.
pub fn ctl_ok(patient: &mut Patient, args: &[&str]) {
    let out = ctl(args);
    let log = format!(
        "libcare-ctl {} ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{log}");
    patient.note(log);
}

/// Starts the case's program, patches it with `libcare-ctl patch`, checks
/// that the new line replaces the old one for good, unpatches and checks the
/// old line is back. The process is killed when this returns or panics.
pub fn patch_and_unpatch(case: &Case, built: &Built) {
    let before = case.before.as_str();
    let after = case.after.as_str();
    let mut patient = Patient::start(built);
    patient.wait_for(before, &[]);
    patient.expect_steady(before, 2);

    let pid = patient.pid_arg();
    let patch = built.patch.to_string_lossy().into_owned();
    ctl_ok(&mut patient, &["-v", "patch", "-p", &pid, &patch]);
    patient.wait_for(after, &[before]);
    patient.expect_steady(after, 3);

    ctl_ok(&mut patient, &["-v", "unpatch", "-p", &pid]);
    patient.wait_for(before, &[after]);
    patient.expect_steady(before, 3);
    assert!(patient.alive(), "pid {pid} died after unpatch");
}
