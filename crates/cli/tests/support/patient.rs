//! A running case program whose output the test watches. Dropping the guard
//! kills the process by its PID and reaps it, on success and on panic.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use super::build::Built;
use super::tools::{run_ok, workspace_root};

/// How long a line may take before the test gives up. Generous: it only
/// bounds a failing test, the cases print every 20 ms.
const LINE_TIMEOUT: Duration = Duration::from_secs(20);

/// `tests/support/fastsleep.c`, compiled once per test process.
pub fn fastsleep() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let src = workspace_root().join("tests/support/fastsleep.c");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let tmp = dir.join(format!("fastsleep.{}.so", std::process::id()));
        run_ok(
            Command::new("gcc")
                .args(["-shared", "-fPIC", "-O2", "-o"])
                .arg(&tmp)
                .arg(&src),
        );
        // One name for every test binary: a rename never disturbs a
        // process that already mapped the previous file.
        let lib = dir.join("fastsleep.so");
        std::fs::rename(&tmp, &lib).unwrap();
        lib
    })
}

/// Takes the child's stdout and hands its lines over a channel, read by a
/// thread so that a test can wait for a line with a timeout.
pub fn read_lines(child: &mut Child) -> Receiver<String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

pub struct Patient {
    child: Child,
    lines: Receiver<String>,
    /// Every line read so far, for failure messages.
    seen: Vec<String>,
    /// What was done to the process (tool logs), for failure messages.
    notes: Vec<String>,
}

impl Patient {
    /// Starts the built program with fast sleeps and its libraries.
    pub fn start(built: &Built) -> Patient {
        Patient::start_program(&built.program, &built.lib_dir)
    }

    pub fn start_program(program: &Path, lib_dir: &Path) -> Patient {
        let mut child = Command::new(program)
            .env("LD_PRELOAD", fastsleep())
            .env("LD_LIBRARY_PATH", lib_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let rx = read_lines(&mut child);
        Patient {
            child,
            lines: rx,
            seen: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn pid_arg(&self) -> String {
        self.pid().to_string()
    }

    fn next_line(&mut self, deadline: Instant) -> String {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => {
                self.seen.push(line.clone());
                line
            }
            Err(RecvTimeoutError::Timeout) => panic!(
                "pid {}: no line for {LINE_TIMEOUT:?}; last lines: {:?}\n{}",
                self.pid(),
                self.tail(),
                self.notes.join("\n")
            ),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait();
                panic!(
                    "pid {} ended ({status:?}); last lines: {:?}\n{}",
                    self.pid(),
                    self.tail(),
                    self.notes.join("\n")
                )
            }
        }
    }

    /// The next line the process prints (a server's address, say).
    pub fn read_line(&mut self) -> String {
        self.next_line(Instant::now() + LINE_TIMEOUT)
    }

    fn tail(&self) -> &[String] {
        &self.seen[self.seen.len().saturating_sub(8)..]
    }

    /// Records what a tool did to the process, shown if the test fails.
    pub fn note(&mut self, text: String) {
        self.notes.push(text);
    }

    /// Reads lines until `want` comes; any line other than the known ones
    /// (`allowed`) fails the test.
    pub fn wait_for(&mut self, want: &str, allowed: &[&str]) {
        let deadline = Instant::now() + LINE_TIMEOUT;
        loop {
            let line = self.next_line(deadline);
            if line == want {
                return;
            }
            assert!(
                allowed.contains(&line.as_str()),
                "pid {}: unexpected line {line:?} while waiting for {want:?}\n{}",
                self.pid(),
                self.notes.join("\n")
            );
        }
    }

    /// Like [`Patient::wait_for`] for output that changes from line to line
    /// (counters): reads until a line satisfies `want`; a line that
    /// satisfies neither `want` nor `allowed` fails the test.
    pub fn wait_until(
        &mut self,
        what: &str,
        want: impl Fn(&str) -> bool,
        allowed: impl Fn(&str) -> bool,
    ) {
        let deadline = Instant::now() + LINE_TIMEOUT;
        loop {
            let line = self.next_line(deadline);
            if want(&line) {
                return;
            }
            assert!(
                allowed(&line),
                "pid {}: unexpected line {line:?} while waiting for {what}\n{}",
                self.pid(),
                self.notes.join("\n")
            );
        }
    }

    /// The next `n` lines must all satisfy `want`.
    pub fn expect_steady_by(&mut self, what: &str, n: usize, want: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + LINE_TIMEOUT;
        for _ in 0..n {
            let line = self.next_line(deadline);
            assert!(
                want(&line),
                "pid {}: line {line:?} is not {what}; last lines: {:?}",
                self.pid(),
                self.tail()
            );
        }
    }

    /// The next `n` lines must all be `want`.
    pub fn expect_steady(&mut self, want: &str, n: usize) {
        let deadline = Instant::now() + LINE_TIMEOUT;
        for _ in 0..n {
            let line = self.next_line(deadline);
            assert_eq!(
                line,
                want,
                "pid {}: output changed; last lines: {:?}",
                self.pid(),
                self.tail()
            );
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Patient {
    fn drop(&mut self) {
        // Child::kill signals exactly this PID; wait reaps it so no zombie
        // outlives the test.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
