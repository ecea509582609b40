//! `libcare-cc`: a gcc/g++ drop-in for the two build stages of a patch.
//!
//! Without `KPATCH_STAGE` it is the real compiler. With
//! `KPATCH_STAGE=original` it compiles every C/C++ source through
//! `.kpatch_<name>.original.s`; with `KPATCH_STAGE=patched` through
//! `.kpatch_<name>.patched.s` and `kpatch_gensrc`, and links with `-Wl,-q`.
//! It never parses flags it does not need: they reach the compiler untouched.

#[path = "../buildside/cc/mod.rs"]
mod cc;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context as _, Result, bail};
use cc::command_line::{CommandLine, Language, Mode};
use cc::plan::{Context, Plan, Stage, Step, plan};
use cc::record;
use cc::toolchain::{ACTIVE_MARK, gensrc_path, is_cxx_name, real_compiler, stage_from};

const USAGE: &str = "\
usage: libcare-cc [gcc arguments...]

A gcc drop-in for building live patches. Every argument goes to the real
compiler unchanged; the environment selects what else happens:

  KPATCH_STAGE   unset or \"configure\": plain compile; \"original\": keep
                 .kpatch_<object>.original.s next to each object; \"patched\":
                 compile through kpatch_gensrc against that file and link with
                 -Wl,-q. Code built with -fprofile-arcs, --coverage or -pg is
                 compiled as is in every stage (no patch from it)
  LIBCARE_CC_RECORD  file to which each compiled source's path is appended
  KPATCH_CC      real C compiler (default gcc); KPATCH_CXX when invoked as
                 libcare-c++ (default g++)
  KPATCH_GENSRC  kpatch_gensrc to use (default: next to this executable)
";

fn main() -> ExitCode {
    let mut argv = std::env::args();
    let argv0 = argv.next().unwrap_or_default();
    let args: Vec<String> = argv.collect();
    if args.is_empty() {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    }
    if args.len() == 1 && (args[0] == "-h" || args[0] == "--help") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match run(&argv0, &args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("libcare-cc: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(argv0: &str, args: &[String]) -> Result<ExitCode> {
    if std::env::var_os(ACTIVE_MARK).is_some() {
        bail!("started by libcare-cc itself: KPATCH_CC/KPATCH_CXX must name the real compiler");
    }
    let cxx = is_cxx_name(argv0);
    let var = if cxx { "KPATCH_CXX" } else { "KPATCH_CC" };
    let compiler = real_compiler(cxx, std::env::var(var).ok())?;
    let Some(stage) = stage_from(std::env::var("KPATCH_STAGE").ok())? else {
        return Err(exec(&compiler, args));
    };

    let cl = CommandLine::parse(args);
    if cl.mode != Mode::Other
        && let Some(record) = std::env::var_os(record::RECORD_VAR)
    {
        let sources: Vec<&str> = cl
            .inputs()
            .filter(|i| !matches!(i.language, Language::Other) && i.path != "-")
            .map(|i| i.path.as_str())
            .collect();
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        record::append(Path::new(&record), &cwd, &sources)
            .with_context(|| format!("cannot append to {}", Path::new(&record).display()))?;
    }
    if let Some(flag) = cl.instrumented()
        && stage == Stage::Patched
        && cl.mode != Mode::Other
        && cl.has_compiled_sources()
    {
        eprintln!(
            "libcare-cc: note: {flag}: compiled as is, no patch is made from {}",
            cl.output.as_deref().unwrap_or("this compile")
        );
    }
    if cl.lto() && cl.mode != Mode::Other {
        bail!(
            "-flto cannot be used in a patch build: the object's assembly is not the code \
             that will run (KPATCH_STAGE={})",
            match stage {
                Stage::Original => "original",
                Stage::Patched => "patched",
            }
        );
    }
    let scratch = scratch_dir();
    let exists = |p: &Path| p.exists();
    let ctx = Context {
        stage,
        scratch: &scratch,
        exists: &exists,
    };
    let steps = match plan(&cl, args, &ctx) {
        Plan::Passthrough(all) => return Err(exec(&compiler, &all)),
        Plan::Steps(steps) => steps,
    };
    let needs_scratch = cl.mode == Mode::Link;
    if needs_scratch {
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("cannot create {}", scratch.display()))?;
    }
    let result = run_steps(&compiler, &steps);
    if needs_scratch {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    result
}

fn run_steps(compiler: &[String], steps: &[Step]) -> Result<ExitCode> {
    let gensrc = gensrc_path(
        std::env::var("KPATCH_GENSRC").ok(),
        std::env::current_exe().ok(),
    );
    for step in steps {
        let ok = match step {
            Step::Compiler(argv) => run_compiler(compiler, argv)?,
            Step::Gensrc {
                original,
                patched,
                output,
            } => {
                run_gensrc(&gensrc, original, patched, output)?;
                Ok(())
            }
            Step::Copy { from, to } => {
                std::fs::copy(from, to).with_context(|| {
                    format!("cannot copy {} to {}", from.display(), to.display())
                })?;
                Ok(())
            }
            Step::AsmPatch {
                original,
                patched,
                output,
                direct,
                assemble,
            } => {
                let read = |p: &Path| {
                    std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
                };
                if read(original)? == read(patched)? {
                    run_compiler(compiler, direct)?
                } else {
                    run_gensrc(&gensrc, original, patched, output)?;
                    run_compiler(compiler, assemble)?
                }
            }
        };
        if let Err(code) = ok {
            // The compiler already said why; make sees its exit status.
            return Ok(ExitCode::from(code));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `Ok(Err(code))` when the compiler ran and failed.
fn run_compiler(compiler: &[String], argv: &[String]) -> Result<std::result::Result<(), u8>> {
    let status = Command::new(&compiler[0])
        .args(&compiler[1..])
        .args(argv)
        .env(ACTIVE_MARK, "1")
        .status()
        .with_context(|| format!("cannot run the compiler {:?}", compiler[0]))?;
    if status.success() {
        Ok(Ok(()))
    } else {
        let code = status.code().unwrap_or(1).clamp(1, 255);
        Ok(Err(u8::try_from(code).unwrap_or(1)))
    }
}

fn run_gensrc(gensrc: &Path, original: &Path, patched: &Path, output: &Path) -> Result<()> {
    let status = Command::new(gensrc)
        .arg("--os=rhel6")
        .arg("-i")
        .arg(original)
        .arg("-i")
        .arg(patched)
        .arg("-o")
        .arg(output)
        .arg("--force-gotpcrel")
        .status()
        .with_context(|| format!("cannot run {}", gensrc.display()))?;
    if !status.success() {
        bail!(
            "{} failed comparing {} with {}",
            gensrc.display(),
            original.display(),
            patched.display()
        );
    }
    Ok(())
}

/// Replaces this process by the real compiler; returns only on failure.
fn exec(compiler: &[String], args: &[String]) -> anyhow::Error {
    let err = Command::new(&compiler[0])
        .args(&compiler[1..])
        .args(args)
        .env(ACTIVE_MARK, "1")
        .exec();
    anyhow::anyhow!("cannot run the compiler {:?}: {err}", compiler[0])
}

fn scratch_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("libcare-cc.{}.{nanos}", std::process::id()))
}
