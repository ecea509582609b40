//! libcare-ctl: apply, remove and list live patches in running processes.
//! A thin front end over the `doctor` crate: argument parsing, choosing the
//! processes, printing one line (or one JSON object) per process.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use doctor::storage::Storage;

#[derive(Parser)]
#[command(
    name = "libcare-ctl",
    about = "Apply, remove and list live patches in running processes",
    version
)]
struct Cli {
    /// More log detail (-v: steps and stop time, -vv: debug)
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Print one JSON object per process on stdout (human text goes to stderr)
    #[arg(short = 'j', long = "json", global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply a patch (file, directory of <BuildID>.kpatch, or storage) to a process
    #[command(alias = "patch-user")]
    Patch {
        /// Process id, or `all`
        #[arg(short = 'p', long = "pid", value_name = "PID|all")]
        pid: String,
        /// Seconds to wait for a moment when no thread runs a replaced function
        #[arg(long = "timeout", value_name = "SECS", default_value_t = 3.0)]
        timeout: f64,
        /// Do everything up to the first write (match, resolve, relocate, choose a
        /// region, check safety once on a short stop), report, change nothing
        #[arg(long = "dry-run")]
        dry_run: bool,
        /// A .kpatch file, a directory of <BuildID>.kpatch, or <BuildID>/<level>/kpatch.bin storage
        #[arg(value_name = "PATCH")]
        patch: PathBuf,
    },
    /// Remove applied patches (all, or those named by BuildID or object name)
    #[command(alias = "unpatch-user")]
    Unpatch {
        #[arg(short = 'p', long = "pid", value_name = "PID|all")]
        pid: String,
        #[arg(long = "timeout", value_name = "SECS", default_value_t = 3.0)]
        timeout: f64,
        /// BuildIDs or object names to remove (default: every patch)
        #[arg(value_name = "BuildID|name")]
        which: Vec<String>,
    },
    /// List objects and applied patches of processes
    #[command(alias = "info-user")]
    Info {
        #[arg(
            short = 'p',
            long = "pid",
            value_name = "PID|all",
            default_value = "all"
        )]
        pid: String,
        /// Only objects with this BuildID
        #[arg(short = 'b', long = "buildid", value_name = "BUILDID")]
        build_id: Option<String>,
        /// Only objects that have a patch in this storage
        #[arg(short = 's', long = "storage", value_name = "STORAGE")]
        storage: Option<PathBuf>,
        /// Only processes whose name matches (substring; ^ and $ anchor)
        #[arg(short = 'r', long = "regexp", value_name = "REGEXP")]
        regexp: Option<String>,
    },
}

/// Target processes: one pid, or every process but us and init.
fn pids(arg: &str) -> Result<(Vec<i32>, bool)> {
    if arg == "all" {
        let me = std::process::id() as i32;
        let mut v: Vec<i32> = std::fs::read_dir("/proc")
            .context("/proc")?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|&p| p != me && p != 1)
            .collect();
        v.sort_unstable();
        return Ok((v, true));
    }
    match arg.parse::<i32>() {
        Ok(p) if p > 0 => Ok((vec![p], false)),
        _ => bail!("bad pid {arg:?}: expected a number or `all`"),
    }
}

fn timeout(secs: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(secs).map_err(|_| anyhow::anyhow!("bad --timeout {secs}"))
}

/// One line per process: JSON on stdout (and the human line on stderr)
/// with `-j`, else the human line on stdout.
fn emit(json: bool, value: &impl serde::Serialize, human: impl std::fmt::Display) {
    if json {
        println!(
            "{}",
            serde_json::to_string(value).expect("reports serialize")
        );
        eprintln!("{human}");
    } else {
        println!("{human}");
    }
}

fn failed(json: bool, pid: i32, e: &doctor::Error) {
    eprintln!("libcare-ctl: {e}");
    if json {
        let mut r = doctor::ProcessReport::new(pid);
        r.status = "failed".into();
        r.error = Some(e.to_string());
        println!("{}", serde_json::to_string(&r).expect("reports serialize"));
    }
}

fn patch(pid_arg: &str, json: bool, secs: f64, dry_run: bool, path: &Path) -> Result<bool> {
    let storage = Storage::open(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let opts = doctor::Options {
        timeout: timeout(secs)?,
        dry_run,
    };
    let (pids, all) = pids(pid_arg)?;
    let mut ok = true;
    for pid in pids {
        if doctor::termination_pending().is_some() {
            return Ok(false);
        }
        let patches = match patches_for(&storage, pid) {
            Ok(p) if p.is_empty() && all => continue,
            Ok(p) if p.is_empty() => {
                failed(
                    json,
                    pid,
                    &doctor::Error::Storage {
                        path: path.to_path_buf(),
                        why: format!("no patch for any object of process {pid}"),
                    },
                );
                ok = false;
                continue;
            }
            Ok(p) => p,
            Err(doctor::Error::NoSuchProcess { .. }) if all => continue,
            Err(e) => {
                failed(json, pid, &e);
                ok = false;
                continue;
            }
        };
        match doctor::patch_process(pid, &patches, &opts) {
            Ok(r) => emit(json, &r, &r),
            Err(doctor::Error::NoTarget { .. } | doctor::Error::NoSuchProcess { .. }) if all => {}
            Err(e) => {
                failed(json, pid, &e);
                ok = false;
            }
        }
    }
    Ok(ok)
}

/// The patches in `storage` for the objects of `pid` (for a single file:
/// that file, whatever it targets).
fn patches_for(storage: &Storage, pid: i32) -> doctor::Result<Vec<doctor::patch::Patch>> {
    if let Storage::File(_) = storage {
        return storage.patches_for([]);
    }
    let maps = doctor::maps::read(pid)?;
    let objects = doctor::object::loaded_objects(pid, &maps)?;
    storage.patches_for(objects.iter().map(|o| o.build_id.as_str()))
}

fn unpatch(pid_arg: &str, json: bool, secs: f64, which: &[String]) -> Result<bool> {
    let (pids, all) = pids(pid_arg)?;
    let t = timeout(secs)?;
    // With many processes, a region still referenced is retired at once and
    // reclaimed in a second pass, so the waits overlap instead of adding up.
    let budget = if all {
        Duration::ZERO
    } else {
        doctor::unpatch::RELEASE_BUDGET
    };
    let mut ok = true;
    let mut revisit = Vec::new();
    for pid in pids {
        if doctor::termination_pending().is_some() {
            return Ok(false);
        }
        if all && !has_patches(pid) {
            continue;
        }
        match doctor::unpatch_process(pid, which, t, budget) {
            Ok(r) => {
                emit(json, &r, &r);
                revisit.push(pid);
            }
            Err(doctor::Error::NoSuchProcess { .. }) if all => {}
            Err(e) => {
                failed(json, pid, &e);
                ok = false;
            }
        }
    }
    if all {
        for pid in revisit {
            match doctor::unpatch::reclaim(pid, doctor::unpatch::RELEASE_BUDGET) {
                Ok(0) | Err(doctor::Error::NoSuchProcess { .. }) => {}
                Ok(n) => {
                    tracing::info!("pid {pid}: {n} removed patch region(s) still referenced, kept")
                }
                Err(e) => tracing::warn!("pid {pid}: reclaiming patch regions: {e}"),
            }
        }
    }
    Ok(ok)
}

fn has_patches(pid: i32) -> bool {
    doctor::maps::read(pid)
        .and_then(|m| doctor::record::scan(pid, &m))
        .is_ok_and(|r| !r.is_empty())
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

fn name_matches(name: &str, re: &str) -> bool {
    let (anchored_start, re) = re.strip_prefix('^').map_or((false, re), |r| (true, r));
    let (anchored_end, re) = re.strip_suffix('$').map_or((false, re), |r| (true, r));
    match (anchored_start, anchored_end) {
        (true, true) => name == re,
        (true, false) => name.starts_with(re),
        (false, true) => name.ends_with(re),
        (false, false) => name.contains(re),
    }
}

fn info(
    pid_arg: &str,
    json: bool,
    build_id: Option<&str>,
    storage: Option<&PathBuf>,
    regexp: Option<&str>,
) -> Result<bool> {
    let storage = storage
        .map(|s| Storage::open(s).map_err(|e| anyhow::anyhow!("{e}")))
        .transpose()?;
    let (pids, all) = pids(pid_arg)?;
    let mut ok = true;
    for pid in pids {
        if regexp.is_some_and(|re| !name_matches(&comm(pid), re)) {
            continue;
        }
        match doctor::info::info_process(pid, storage.as_ref(), build_id) {
            Ok(i) if all && i.objects.is_empty() && i.patches.is_empty() => {}
            Ok(i) => {
                let mut human = format!("pid {} ({}):", pid, comm(pid));
                for o in &i.objects {
                    human.push_str(&format!("\n  {} {} at {:#x}", o.build_id, o.name, o.start));
                }
                for p in &i.patches {
                    human.push_str(&format!(
                        "\n  patch {} (level {}) for {} at {:#x}: {}",
                        p.build_id,
                        p.level,
                        p.object,
                        p.region,
                        p.functions.join(", ")
                    ));
                }
                emit(json, &i, human);
            }
            Err(_) if all => {}
            Err(e) => {
                failed(json, pid, &e);
                ok = false;
            }
        }
    }
    Ok(ok)
}

/// Stops between processes when a termination signal came meanwhile: the
/// operation on the current process always completes (or rolls back).
fn interrupted() -> bool {
    match doctor::termination_pending() {
        Some(sig) => {
            eprintln!("libcare-ctl: interrupted by {sig}; the current process was finished first");
            true
        }
        None => false,
    }
}

/// How long a termination signal may wait for the current process to be
/// finished or rolled back. The doctor's own waits notice the signal and
/// roll back at once, and every wait of theirs is bounded; this is the
/// last resort should one of them not end: exiting detaches every thread
/// we trace, so the patient runs again.
const TERMINATION_GRACE: Duration = Duration::from_secs(5);

fn termination_watchdog() {
    loop {
        if let Some(sig) = doctor::termination_pending() {
            std::thread::sleep(TERMINATION_GRACE);
            eprintln!(
                "libcare-ctl: {sig}: the current process did not finish within {} s; exiting",
                TERMINATION_GRACE.as_secs()
            );
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = doctor::defer_termination() {
        eprintln!("libcare-ctl: {e}");
        return ExitCode::FAILURE;
    }
    std::thread::spawn(termination_watchdog);
    let level = match cli.verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
    let result = match &cli.command {
        Command::Patch {
            pid,
            timeout,
            dry_run,
            patch: p,
        } => patch(pid, cli.json, *timeout, *dry_run, p),
        Command::Unpatch {
            pid,
            timeout,
            which,
        } => unpatch(pid, cli.json, *timeout, which),
        Command::Info {
            pid,
            build_id,
            storage,
            regexp,
        } => info(
            pid,
            cli.json,
            build_id.as_deref(),
            storage.as_ref(),
            regexp.as_deref(),
        ),
    };
    let stopped = interrupted();
    match result {
        Ok(true) if !stopped => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("libcare-ctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}
