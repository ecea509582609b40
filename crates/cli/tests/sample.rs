//! The README's demo sample, `samples/kvserver`, patched live the way a user
//! would: `libcare-patch-make --clean fix.diff` in a copy of the sample, the
//! original server started, one client connection opened, then
//! `libcare-ctl patch` and `unpatch` while that connection stays open. The
//! fix must show on the same connection and in the same process; the bug
//! must come back after unpatch. Also runs `scripts/demo.sh` itself.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Patient, ctl_ok, run_ok, tool};
use tempfile::TempDir;

fn sample_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples/kvserver")
}

/// Copies the sample (flat: files only) into a fresh temporary directory.
fn copy_sample() -> TempDir {
    let tmp = tempfile::Builder::new()
        .prefix("lc-sample-kvserver.")
        .tempdir()
        .unwrap();
    for entry in std::fs::read_dir(sample_dir()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
        }
    }
    tmp
}

/// One client connection, one request per line.
struct Client {
    out: TcpStream,
    lines: BufReader<TcpStream>,
}

impl Client {
    fn connect(port: u16) -> Client {
        let out = TcpStream::connect(("127.0.0.1", port)).unwrap();
        out.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let lines = BufReader::new(out.try_clone().unwrap());
        Client { out, lines }
    }

    fn ask(&mut self, request: &str) -> String {
        writeln!(self.out, "{request}").unwrap();
        let mut reply = String::new();
        self.lines
            .read_line(&mut reply)
            .unwrap_or_else(|e| panic!("no answer to {request:?}: {e}"));
        assert!(reply.ends_with('\n'), "connection closed after {request:?}");
        reply.trim_end().to_string()
    }

    /// Stores "hello" and reads it back: what the server returns.
    fn roundtrip(&mut self) -> String {
        assert_eq!(self.ask("SET greeting hello"), "OK");
        self.ask("GET greeting")
    }

    /// The PID and client count the server reports for itself.
    fn stats(&mut self) -> String {
        let stats = self.ask("STATS");
        let mut words = stats.split(' ');
        format!("{} {}", words.next().unwrap(), words.next().unwrap())
    }
}

#[test]
fn kvserver_patched_under_an_open_connection() {
    let tmp = copy_sample();
    let proj = tmp.path();
    run_ok(
        Command::new(tool("libcare-patch-make"))
            .args(["--clean", "fix.diff"])
            .current_dir(proj)
            .env("CFLAGS", "-O2 -g"),
    );
    let patchroot = proj.join("patchroot");
    let mut server = Patient::start_program(
        &proj.join("lpmake/usr/bin/kvserver"),
        &proj.join("lpmake/usr/lib"),
    );
    let banner = server.read_line();
    let port: u16 = banner
        .strip_prefix("listening on 127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected banner {banner:?}"));
    let pid = server.pid_arg();
    let same = format!("pid={pid} clients=1");

    let mut client = Client::connect(port);
    assert_eq!(client.roundtrip(), "VALUE hell", "the sample's bug");
    assert_eq!(client.stats(), same);

    let patch = patchroot.to_string_lossy().into_owned();
    ctl_ok(&mut server, &["-v", "patch", "-p", &pid, &patch]);
    assert_eq!(client.roundtrip(), "VALUE hello", "the live patch");
    assert_eq!(client.stats(), same);

    ctl_ok(&mut server, &["-v", "unpatch", "-p", &pid]);
    assert_eq!(client.roundtrip(), "VALUE hell", "after unpatch");
    assert_eq!(client.stats(), same);
    assert!(server.alive(), "pid {pid} died");
}

/// `bash scripts/demo.sh` as the README runs it, with the tools this test
/// run built. Dropping the guard stops the script by its PID: SIGTERM first
/// so that its EXIT trap stops the server it started, then SIGKILL.
struct Script(Child);

impl Drop for Script {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let pid = self.0.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn demo_script_end_to_end() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bin = tool("libcare-ctl").parent().unwrap().to_path_buf();
    let log = tempfile::NamedTempFile::new().unwrap();
    let child = Command::new("bash")
        .arg(root.join("scripts/demo.sh"))
        .env("LIBCARE_BIN", &bin)
        .stdin(Stdio::null())
        .stdout(log.reopen().unwrap())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let mut script = Script(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = script.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "demo.sh ran for 120 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = std::fs::read_to_string(log.path()).unwrap();
    assert!(status.success(), "demo.sh failed ({status}):\n{out}");
    for want in [
        "server> VALUE hell\n",
        "server> VALUE hello\n",
        "patched; applied",
        "unpatched; removed",
        "after the tools were built",
    ] {
        assert!(out.contains(want), "demo.sh output lacks {want:?}:\n{out}");
    }
}
