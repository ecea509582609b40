//! Where the tools under test are and how to run a command with a useful
//! failure message.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A binary of this package, as cargo built it for the tests.
pub fn tool(name: &str) -> PathBuf {
    let path = match name {
        "libcare-ctl" => env!("CARGO_BIN_EXE_libcare-ctl"),
        "libcare-cc" => env!("CARGO_BIN_EXE_libcare-cc"),
        "libcare-patch-make" => env!("CARGO_BIN_EXE_libcare-patch-make"),
        "kpatch_gensrc" => env!("CARGO_BIN_EXE_kpatch_gensrc"),
        "kpatch_strip" => env!("CARGO_BIN_EXE_kpatch_strip"),
        "kpatch_make" => env!("CARGO_BIN_EXE_kpatch_make"),
        other => panic!("no tool named {other}"),
    };
    PathBuf::from(path)
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/cli lives two levels below the workspace root")
        .to_path_buf()
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    if let Some(dir) = cmd.get_current_dir() {
        s.push_str(&format!("  (in {})", dir.display()));
    }
    s
}

/// Runs a command to completion; panics with its output if it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", describe(cmd)));
    if !out.status.success() {
        panic!(
            "{} failed ({}):\n--- stdout\n{}--- stderr\n{}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// How long one `libcare-ctl` run may take before the test calls it hung.
/// Only bounds a failing test; a working run takes milliseconds.
const CTL_TIMEOUT: Duration = Duration::from_secs(60);

/// `libcare-ctl ARGS...`, whatever its exit status. A run that does not end
/// within [`CTL_TIMEOUT`] is killed (by its PID) and fails the test, so a
/// hang cannot stall the suite.
pub fn ctl(args: &[&str]) -> Output {
    let mut cmd = Command::new(tool("libcare-ctl"));
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", describe(&cmd)));
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + CTL_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} hung for {CTL_TIMEOUT:?}; killed", describe(&cmd));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// The GNU BuildID of an ELF file, lowercase hex, read by binutils'
/// readelf so that the tests do not trust our own ELF code for it.
pub fn build_id(path: &Path) -> String {
    let out = run_ok(Command::new("readelf").arg("-n").arg(path));
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .unwrap_or_else(|| panic!("{} has no BuildID", path.display()))
        .trim()
        .to_string()
}

/// Whether an ELF file has a section of this name (binutils' view).
pub fn has_section(path: &Path, name: &str) -> bool {
    let out = run_ok(Command::new("readelf").args(["-S", "-W"]).arg(path));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .any(|w| w == name)
}
