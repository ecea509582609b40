//! The project's own build, driven the way its directory asks: make (with
//! `lpmakefile` when there is one) or ninja (CMake's and meson's build
//! directories), through `libcare-cc` in one of the two stages.
//!
//! Every command's output goes to one log file, so that a build that takes
//! minutes shows a short progress line instead of thousands of compiler
//! lines, and a failure can quote the lines that matter. Commands run in
//! their own process group: a Ctrl-C reaches only us, we stop the build
//! ourselves and still revert the source patches.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The variable `libcare-cc` reads to name its list of compiled sources
/// (`cc::record::RECORD_VAR` on its side).
const RECORD_VAR: &str = "LIBCARE_CC_RECORD";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Original,
    Patched,
}

impl Stage {
    pub fn env_value(self) -> &'static str {
        match self {
            Stage::Original => "original",
            Stage::Patched => "patched",
        }
    }
}

/// Which tool runs the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Driver {
    /// make, with `-f FILE` when the directory has an `lpmakefile`.
    Make { makefile: Option<PathBuf> },
    /// ninja; installs get the destination in the environment.
    Ninja,
}

impl Driver {
    /// A directory with a makefile is driven by make (CMake's Unix
    /// Makefiles too); one with only `build.ninja` by ninja.
    pub fn detect(dir: &Path) -> Result<Driver> {
        let lpmakefile = dir.join("lpmakefile");
        if lpmakefile.is_file() {
            return Ok(Driver::Make {
                makefile: Some(lpmakefile),
            });
        }
        if ["GNUmakefile", "makefile", "Makefile"]
            .iter()
            .any(|n| dir.join(n).is_file())
        {
            return Ok(Driver::Make { makefile: None });
        }
        if dir.join("build.ninja").is_file() {
            return Ok(Driver::Ninja);
        }
        bail!(
            "{}: no lpmakefile, Makefile or build.ninja; run libcare-patch-make in the build \
             directory (with -s SRCDIR when the sources are elsewhere)",
            dir.display()
        )
    }

    fn program(&self) -> &'static str {
        match self {
            Driver::Make { .. } => "make",
            Driver::Ninja => "ninja",
        }
    }
}

pub struct Build {
    /// Where make or ninja runs.
    pub dir: PathBuf,
    pub driver: Driver,
    /// `libcare-cc`, exported as `CC`.
    pub cc: PathBuf,
    /// A C++ name for the same wrapper, exported as `CXX`.
    pub cxx: PathBuf,
    /// `-j` for make or ninja; none: make runs serially, as LibCare's
    /// script runs it (a Makefile that is not safe in parallel still
    /// builds), ninja its own default.
    pub jobs: Option<usize>,
    /// The install variable (`DESTDIR`, or `PREFIX` for Redis).
    pub destdir_var: String,
    /// The full log of every command run.
    pub log: PathBuf,
    /// Where the per-stage lists of compiled sources are kept.
    pub work: PathBuf,
    /// Set by SIGINT, SIGTERM or SIGHUP.
    pub interrupted: Arc<AtomicBool>,
    /// Variables exported to the build as LibCare's script exports them
    /// (`LPMAKE_ORIGINAL_DIR`, ...): its users' makefiles read them, e.g.
    /// to link the patched program against the original library.
    pub exported: Vec<(&'static str, PathBuf)>,
}

/// How often the progress line may repeat while a build runs.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

impl Build {
    /// The sources `libcare-cc` compiled in `stage` (one absolute path a line).
    pub fn record(&self, stage: Stage) -> PathBuf {
        self.work.join(format!("{}.sources", stage.env_value()))
    }

    /// Distinct sources compiled in `stage` so far.
    pub fn compiled(&self, stage: Stage) -> Vec<PathBuf> {
        let text = std::fs::read_to_string(self.record(stage)).unwrap_or_default();
        let mut seen = std::collections::BTreeSet::new();
        text.lines()
            .filter(|l| !l.is_empty())
            .map(PathBuf::from)
            .filter(|p| seen.insert(p.clone()))
            .collect()
    }

    fn count(&self, stage: Stage) -> usize {
        std::fs::read_to_string(self.record(stage))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// Starts a fresh list of compiled sources for `stage`.
    pub fn reset_record(&self, stage: Stage) -> Result<()> {
        let path = self.record(stage);
        std::fs::write(&path, "").with_context(|| format!("cannot write {}", path.display()))
    }

    fn command(&self, stage: Stage) -> Command {
        let mut cmd = Command::new(self.driver.program());
        cmd.current_dir(&self.dir);
        if let Some(jobs) = self.jobs {
            cmd.arg(format!("-j{jobs}"));
        }
        if let Driver::Make { makefile } = &self.driver {
            if let Some(f) = makefile {
                cmd.arg("-f").arg(f);
            }
            // On the command line too: it overrides a Makefile's own
            // `CC = gcc`, which the environment would not.
            cmd.arg(format!("CC={}", self.cc.display()))
                .arg(format!("CXX={}", self.cxx.display()));
        }
        // LibCare's interface: the wrapper is announced in the environment,
        // and the user's own make's flags and level do not leak in (a
        // `make -n` around us must not turn our build into a dry run).
        cmd.env("KPATCH_STAGE", stage.env_value())
            .env("IS_LIBCARE_CC", "y")
            .env("CC", &self.cc)
            .env("CXX", &self.cxx)
            .env(RECORD_VAR, self.record(stage))
            .envs(self.exported.iter().map(|(k, v)| (*k, v)))
            .env_remove("MAKEFLAGS")
            .env_remove("MAKELEVEL")
            .env_remove("MFLAGS");
        cmd
    }

    /// The default target: the whole project.
    pub fn build(&self, stage: Stage) -> Result<()> {
        let cmd = self.command(stage);
        self.run(stage, "build", cmd, true)
    }

    pub fn clean(&self) -> Result<()> {
        let mut cmd = self.command(Stage::Original);
        cmd.arg("clean");
        self.run(Stage::Original, "clean", cmd, false)
    }

    /// Installs into `dest` (emptied first) through the install variable:
    /// on make's command line, or in ninja's environment.
    pub fn install(&self, stage: Stage, dest: &Path) -> Result<()> {
        if dest.exists() {
            std::fs::remove_dir_all(dest)
                .with_context(|| format!("cannot empty {}", dest.display()))?;
        }
        std::fs::create_dir_all(dest)
            .with_context(|| format!("cannot create {}", dest.display()))?;
        let mut cmd = self.command(stage);
        cmd.arg("install");
        match self.driver {
            Driver::Make { .. } => {
                cmd.arg(format!("{}={}", self.destdir_var, dest.display()));
            }
            Driver::Ninja => {
                cmd.env(&self.destdir_var, dest);
            }
        }
        self.run(stage, "install", cmd, false)
    }

    fn run(&self, stage: Stage, what: &str, mut cmd: Command, counting: bool) -> Result<()> {
        let title = format!(
            "{} {what} (KPATCH_STAGE={})",
            match stage {
                Stage::Original => "original",
                Stage::Patched => "patched",
            },
            stage.env_value()
        );
        let line = describe(&cmd);
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open the build log {}", self.log.display()))?;
        let start_len = log.metadata().map(|m| m.len()).unwrap_or(0);
        writeln!(log, "==== {title}: {line}")?;
        let out = log.try_clone()?;
        let err = log.try_clone()?;
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("{title}: cannot run {line}"))?;
        let began = Instant::now();
        let status = self.wait(child, stage, &title, counting)?;
        if counting {
            println!(
                "libcare-patch-make: {title}: {} file(s) compiled in {:.0?}",
                self.count(stage),
                began.elapsed()
            );
        }
        if !status.success() {
            let text = std::fs::read(&self.log).unwrap_or_default();
            let from = usize::try_from(start_len).unwrap_or(0).min(text.len());
            let section = String::from_utf8_lossy(&text[from..]);
            bail!("{}", failure(&title, &line, status, &section, &self.log));
        }
        Ok(())
    }

    /// Waits for the child, printing the compiled count as it grows and
    /// stopping the child's process group when we are interrupted.
    fn wait(
        &self,
        mut child: Child,
        stage: Stage,
        title: &str,
        counting: bool,
    ) -> Result<std::process::ExitStatus> {
        let mut last_print = Instant::now();
        let mut last_count = 0;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if self.interrupted.load(Ordering::SeqCst) {
                stop_group(&child);
                let _ = child.wait();
                bail!("{title}: interrupted");
            }
            if counting && last_print.elapsed() >= PROGRESS_EVERY {
                let n = self.count(stage);
                if n != last_count {
                    println!("libcare-patch-make: {title}: {n} file(s) compiled so far");
                    last_count = n;
                }
                last_print = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Stops the build we started: its process group carries our child's PID.
fn stop_group(child: &Child) {
    let Ok(pid) = i32::try_from(child.id()) else {
        return;
    };
    let group = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// How many lines of the log a failure quotes.
const QUOTED_LINES: usize = 12;

/// The message for a failed command: the stage, the first file the
/// compiler complained about, and the last lines of its output.
fn failure(
    title: &str,
    line: &str,
    status: std::process::ExitStatus,
    section: &str,
    log: &Path,
) -> String {
    let lines: Vec<&str> = section.lines().skip(1).collect();
    let file = lines.iter().find_map(|l| error_file(l));
    let target = lines.iter().find_map(|l| failed_target(l));
    let tail = &lines[lines.len().saturating_sub(QUOTED_LINES)..];
    let mut msg = format!("{title} failed: {line} ({status})");
    if let Some(file) = file {
        msg.push_str(&format!("; first error in {file}"));
    }
    if let Some(target) = target {
        msg.push_str(&format!("; while making {target}"));
    }
    msg.push_str(&format!(
        "\nlast lines of the build log (all of it in {}):",
        log.display()
    ));
    for l in tail {
        msg.push_str("\n  | ");
        msg.push_str(l);
    }
    msg
}

/// `src/foo.c:12:3: error: ...` -> `src/foo.c`: the compiler's own
/// `FILE:LINE:` form, so that `collect2: error:` names no file.
fn error_file(line: &str) -> Option<String> {
    let (head, rest) = line.split_once(": ")?;
    let is_error = rest.starts_with("error") || rest.starts_with("fatal error");
    if !is_error {
        return None;
    }
    let mut parts = head.split(':');
    let file = parts.next()?;
    let at_line = parts.next()?;
    let numbered = !at_line.is_empty() && at_line.bytes().all(|b| b.is_ascii_digit());
    (numbered && !file.is_empty() && !file.contains(' ')).then(|| file.to_string())
}

/// The target make or ninja was making when it failed (a link has no
/// source line to name): `make: *** [Makefile:379: redis-server] Error 1`
/// or `FAILED: hello`.
fn failed_target(line: &str) -> Option<String> {
    if let Some(t) = line.strip_prefix("FAILED: ") {
        return Some(t.trim().to_string());
    }
    let (_, rest) = line.split_once("*** [")?;
    let (inside, _) = rest.split_once("] Error")?;
    let target = inside.rsplit(": ").next()?;
    Some(target.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_file_of_a_compiler_error() {
        assert_eq!(
            error_file("src/foo.c:12:3: error: expected ';'").as_deref(),
            Some("src/foo.c")
        );
        assert_eq!(
            error_file("bar.c:1:10: fatal error: x.h: No such file").as_deref(),
            Some("bar.c")
        );
        assert_eq!(error_file("foo.c:3:1: warning: unused"), None);
        assert_eq!(error_file("make: *** [Makefile:3: all] Error 1"), None);
        assert_eq!(
            error_file("collect2: error: ld returned 1 exit status"),
            None
        );
        assert_eq!(
            failed_target("make[1]: *** [Makefile:379: redis-server] Error 1").as_deref(),
            Some("redis-server")
        );
        assert_eq!(failed_target("FAILED: hello").as_deref(), Some("hello"));
    }

    #[test]
    fn picks_the_driver_of_a_directory() {
        let dir = std::env::temp_dir().join(format!("lc-driver-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(Driver::detect(&dir).is_err());
        std::fs::write(dir.join("build.ninja"), "").unwrap();
        assert_eq!(Driver::detect(&dir).unwrap(), Driver::Ninja);
        std::fs::write(dir.join("Makefile"), "").unwrap();
        assert_eq!(
            Driver::detect(&dir).unwrap(),
            Driver::Make { makefile: None }
        );
        std::fs::write(dir.join("lpmakefile"), "").unwrap();
        assert_eq!(
            Driver::detect(&dir).unwrap(),
            Driver::Make {
                makefile: Some(dir.join("lpmakefile"))
            }
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
