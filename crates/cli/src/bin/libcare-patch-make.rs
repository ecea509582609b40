//! `libcare-patch-make`: LibCare's everyday flow for a project built with
//! make or ninja, with LibCare's interface.
//!
//! Run in the build directory. The project is built with `libcare-cc` in
//! the original stage and installed into `lpmake/`; the source patches are
//! applied (in `-s SRCDIR`); the objects are rebuilt in the patched stage
//! and installed into `.lpmaketmp/patched`; every installed binary that
//! carries `.kpatch.info` becomes `patchroot/<BuildID>.kpatch`. The source
//! patches are reverted whatever happens, Ctrl-C included.

#[path = "../buildside/patch_make/mod.rs"]
mod patch_make;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use clap::Parser;
use patch_make::binaries::{keep_originals, unstripped_by_build_id};
use patch_make::build::{Build, Driver, Stage};
use patch_make::elf_probe::{ElfProbe, is_elf};
use patch_make::postprocess::{Job, Tools, make_patch};
use patch_make::project::{remove_kpatch_asm, touch, walk};
use patch_make::source_patches::{self, Applied};

#[derive(Parser)]
#[command(
    name = "libcare-patch-make",
    about = "Build .kpatch files for a make or ninja project from source patches",
    long_about = "Build .kpatch files for a make or ninja project from source patches.\n\n\
        Run from inside the build directory (a Makefile, an lpmakefile, or a CMake or \
        meson build.ninja). The project is built with CC=libcare-cc in the original \
        stage and installed into $LPMAKE_ORIGINAL_DIR (default ./lpmake) through the \
        install variable (-d, default DESTDIR); the patches are applied with patch -p1 \
        in SRCDIR (-s, default the build directory); every object is rebuilt in the \
        patched stage and installed into $LPMAKE_PATCHED_DIR (default \
        ./.lpmaketmp/patched); each installed binary the patches changed becomes \
        $LPMAKE_PATCHROOT/<BuildID>.kpatch (default ./patchroot). The patches are \
        reverted afterwards, also after a failure or Ctrl-C. The whole build log is in \
        ./.lpmaketmp/build.log.\n\n\
        The build sees IS_LIBCARE_CC=y, CC and CXX naming the wrapper, and KPATCH_STAGE; \
        MAKEFLAGS and MAKELEVEL are not passed on. Configure the project with \
        KPATCH_STAGE=configure CC=libcare-cc (a plain compiler then)."
)]
struct Cli {
    /// Do a clean build: `make clean` (or `ninja clean`) first, and drop the
    /// previous installs and kept assembly
    #[arg(short = 'c', long, conflicts_with = "update")]
    clean: bool,
    /// Only remake the patches from the installs of the last build (no build)
    #[arg(short = 'u', long)]
    update: bool,
    /// Reuse the original stage of the last run (its installs, its kept
    /// assembly and its list of compiled sources): apply the patches and build
    /// only the patched stage, e.g. for a second fix of a large project
    #[arg(long, conflicts_with_all = ["clean", "update"])]
    reuse_original: bool,
    /// Directory where the source patches apply (when the build runs elsewhere)
    #[arg(short = 's', long = "srcdir", value_name = "SRCDIR")]
    srcdir: Option<PathBuf>,
    /// Variable the install target takes the destination from (PREFIX for Redis)
    #[arg(
        short = 'd',
        long = "destdir",
        value_name = "DESTDIRVAR",
        default_value = "DESTDIR"
    )]
    destdir: String,
    /// Patch level stored in every .kpatch (a higher level replaces a lower one)
    #[arg(short = 'i', long = "id", value_name = "LEVEL")]
    level: Option<u32>,
    /// Where the original binaries are installed [default: $LPMAKE_ORIGINAL_DIR or ./lpmake]
    #[arg(long, value_name = "DIR")]
    lpmake: Option<PathBuf>,
    /// Where the .kpatch files are written [default: $LPMAKE_PATCHROOT or ./patchroot]
    #[arg(long, value_name = "DIR")]
    patchroot: Option<PathBuf>,
    /// Parallel build jobs [default: make runs serially, as with LibCare; ninja its own default]
    #[arg(short = 'j', long, value_name = "N")]
    jobs: Option<usize>,
    /// Source patches, applied in order with patch -p1 in SRCDIR
    #[arg(required_unless_present = "update", value_name = "PATCH")]
    patches: Vec<PathBuf>,
}

/// The directories of one run, all absolute.
struct Dirs {
    build: PathBuf,
    src: PathBuf,
    original: PathBuf,
    patched: PathBuf,
    patchroot: PathBuf,
    /// `.lpmaketmp`: log, lists of compiled sources, kept originals.
    work: PathBuf,
}

impl Dirs {
    /// Directories a walk of the build tree must not enter.
    fn ours(&self) -> Vec<&Path> {
        vec![
            self.original.as_path(),
            self.patched.as_path(),
            self.patchroot.as_path(),
            self.work.as_path(),
        ]
    }

    /// Where unstripped originals are kept by BuildID.
    fn kept_originals(&self) -> PathBuf {
        self.work.join("original-binaries")
    }
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn create() -> Result<Scratch> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("libcare-patch-make.{}.{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let interrupted = Arc::new(AtomicBool::new(false));
    // Caught, not fatal: a Ctrl-C in a long build must still let us revert
    // the source patches. The build itself runs in its own process group
    // and is stopped by us.
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&interrupted)) {
            eprintln!("libcare-patch-make: cannot catch signal {sig}: {e}");
            return ExitCode::FAILURE;
        }
    }
    match run(&cli, &interrupted) {
        Ok(made) => {
            println!("libcare-patch-make: {} patch(es) made", made.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("libcare-patch-make: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One line per step on stdout, so a long build shows where it is.
fn progress(step: &str) {
    println!("libcare-patch-make: {step}");
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn tool_next_to_us(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find our own executable")?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!("{} not found next to {}", name, exe.display());
    }
    Ok(path)
}

/// An option, else LibCare's environment variable, else the default.
fn dir_setting(cwd: &Path, option: Option<&Path>, var: &str, default: &str) -> PathBuf {
    match (option, std::env::var_os(var).filter(|v| !v.is_empty())) {
        (Some(p), _) => absolute(cwd, p),
        (None, Some(v)) => absolute(cwd, Path::new(&v)),
        (None, None) => cwd.join(default),
    }
}

fn run(cli: &Cli, interrupted: &Arc<AtomicBool>) -> Result<Vec<PathBuf>> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let src = match &cli.srcdir {
        Some(s) => {
            std::fs::canonicalize(s).with_context(|| format!("source directory {}", s.display()))?
        }
        None => cwd.clone(),
    };
    let dirs = Dirs {
        build: cwd.clone(),
        src,
        original: dir_setting(&cwd, cli.lpmake.as_deref(), "LPMAKE_ORIGINAL_DIR", "lpmake"),
        patched: dir_setting(&cwd, None, "LPMAKE_PATCHED_DIR", ".lpmaketmp/patched"),
        patchroot: dir_setting(
            &cwd,
            cli.patchroot.as_deref(),
            "LPMAKE_PATCHROOT",
            "patchroot",
        ),
        work: cwd.join(".lpmaketmp"),
    };
    let tools = Tools {
        kpatch_strip: tool_next_to_us("kpatch_strip")?,
        kpatch_make: tool_next_to_us("kpatch_make")?,
    };
    let scratch = Scratch::create()?;
    if !cli.update {
        let patches = cli
            .patches
            .iter()
            .map(|p| std::fs::canonicalize(p).with_context(|| format!("patch {}", p.display())))
            .collect::<Result<Vec<_>>>()?;
        build_both(cli, &dirs, &patches, &scratch.0, interrupted)?;
    }
    if interrupted.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    make_patches(&dirs, &tools, &scratch.0, cli.level)
}

fn build_both(
    cli: &Cli,
    dirs: &Dirs,
    patches: &[PathBuf],
    scratch: &Path,
    interrupted: &Arc<AtomicBool>,
) -> Result<()> {
    let cc = tool_next_to_us("libcare-cc")?;
    // libcare-cc picks the C++ compiler when called by a C++ name.
    let cxx = scratch.join("libcare-c++");
    std::os::unix::fs::symlink(&cc, &cxx)
        .with_context(|| format!("cannot create {}", cxx.display()))?;
    std::fs::create_dir_all(&dirs.work)
        .with_context(|| format!("cannot create {}", dirs.work.display()))?;
    let log = dirs.work.join("build.log");
    std::fs::write(&log, "").with_context(|| format!("cannot write {}", log.display()))?;
    let build = Build {
        dir: dirs.build.clone(),
        driver: Driver::detect(&dirs.build)?,
        cc,
        cxx,
        jobs: cli.jobs,
        destdir_var: cli.destdir.clone(),
        log: log.clone(),
        work: dirs.work.clone(),
        interrupted: Arc::clone(interrupted),
        exported: vec![
            ("LPMAKE_ORIGINAL_DIR", dirs.original.clone()),
            ("LPMAKE_PATCHED_DIR", dirs.patched.clone()),
            ("LPMAKE_PATCHROOT", dirs.patchroot.clone()),
        ],
    };
    progress(&format!("full build log in {}", log.display()));

    let recovered = source_patches::recover(&dirs.src)?;
    if recovered > 0 {
        progress(&format!(
            "reverted {recovered} patch(es) left applied by an interrupted run"
        ));
    }
    let ours = dirs.ours();
    if cli.clean {
        progress("cleaning (KPATCH_STAGE=original)");
        build.clean()?;
        // A project's clean may remove our work directory with everything
        // else (LibCare's own test makefiles remove `.lpmaketmp`).
        std::fs::create_dir_all(&dirs.work)
            .with_context(|| format!("cannot create {}", dirs.work.display()))?;
        if !log.exists() {
            std::fs::write(&log, "").with_context(|| format!("cannot write {}", log.display()))?;
        }
        for d in [&dirs.original, &dirs.patched] {
            if d.exists() {
                std::fs::remove_dir_all(d)
                    .with_context(|| format!("cannot remove {}", d.display()))?;
            }
        }
        remove_kpatch_asm(&dirs.build, &ours)?;
    }
    let sources = if cli.reuse_original {
        reused_original(&build, dirs)?
    } else {
        progress("original build (KPATCH_STAGE=original)");
        build.reset_record(Stage::Original)?;
        build.build(Stage::Original)?;
        let sources = build.compiled(Stage::Original);
        if sources.is_empty() {
            bail!(
                "the original build compiled nothing through libcare-cc in {}: the objects were \
                 built before (run with --clean), or the build does not use CC (configure it \
                 with KPATCH_STAGE=configure CC=libcare-cc)",
                dirs.build.display()
            );
        }
        let kept = keep_originals(&dirs.build, &ours, &dirs.kept_originals())?;
        tracing::debug!("kept {kept} unstripped original binaries");
        progress(&format!(
            "installing the original binaries into {} ({}=...)",
            dirs.original.display(),
            cli.destdir
        ));
        build.install(Stage::Original, &dirs.original)?;
        sources
    };

    progress(&format!("applying the patches in {}", dirs.src.display()));
    let mut applied = Applied::apply(&dirs.src, patches)?;
    let result = patched_build(&build, &sources, &dirs.patched);
    progress("reverting the patches");
    let reverted = applied.revert();
    match (result, reverted) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(e), Ok(())) => Err(e),
        (Ok(()), Err(undo)) => Err(undo),
        (Err(e), Err(undo)) => Err(e.context(format!("also: {undo:#}"))),
    }
}

/// The sources the last run's original stage compiled, when its installs are
/// still there; the patched stage recompiles them against their kept
/// assembly.
fn reused_original(build: &Build, dirs: &Dirs) -> Result<Vec<PathBuf>> {
    let sources = build.compiled(Stage::Original);
    if sources.is_empty() || !dirs.original.is_dir() {
        bail!(
            "--reuse-original: no original stage of a previous run in {} ({} lists no source \
             or {} is missing); run once without --reuse-original",
            dirs.build.display(),
            build.record(Stage::Original).display(),
            dirs.original.display()
        );
    }
    progress(&format!(
        "original stage reused from the last run: {} source(s), installs in {}",
        sources.len(),
        dirs.original.display()
    ));
    Ok(sources)
}

fn patched_build(build: &Build, sources: &[PathBuf], patched_dir: &Path) -> Result<()> {
    let touched = touch(sources)?;
    progress(&format!(
        "patched build (KPATCH_STAGE=patched): rebuilding the objects of {touched} source(s)"
    ));
    build.reset_record(Stage::Patched)?;
    build.build(Stage::Patched)?;
    progress(&format!(
        "installing the patched binaries into {}",
        patched_dir.display()
    ));
    build.install(Stage::Patched, patched_dir)
}

/// The file a patch is made from: the installed one when it still has its
/// symbols, else the unstripped file with its BuildID.
fn unstripped(
    installed: &Path,
    found: &mut dyn FnMut(&str) -> Result<Option<PathBuf>>,
) -> Result<PathBuf> {
    let probe = ElfProbe::read(installed)?;
    if probe.has_section(".symtab") {
        return Ok(installed.to_path_buf());
    }
    let id = probe
        .build_id()
        .with_context(|| format!("{} is stripped and has no BuildID", installed.display()))?;
    found(&id)?.with_context(|| {
        format!(
            "{} was stripped by the install and no unstripped file with BuildID {id} is left \
             in the build tree",
            installed.display()
        )
    })
}

fn make_patches(
    dirs: &Dirs,
    tools: &Tools,
    scratch: &Path,
    level: Option<u32>,
) -> Result<Vec<PathBuf>> {
    if !dirs.patched.is_dir() {
        bail!(
            "no patched install in {} to make patches from: run without -u first",
            dirs.patched.display()
        );
    }
    let mut candidates = Vec::new();
    walk(&dirs.patched, &[], &mut |p| {
        candidates.push(p.to_path_buf())
    })?;
    candidates.sort();
    std::fs::create_dir_all(&dirs.patchroot)
        .with_context(|| format!("cannot create {}", dirs.patchroot.display()))?;
    progress("making the patches");
    // Walked once, and only if an install stripped something.
    let mut patched_tree = None;
    let ours = dirs.ours();
    let mut made = Vec::new();
    for patched in candidates {
        let data = std::fs::read(&patched)
            .with_context(|| format!("cannot read {}", patched.display()))?;
        if !is_elf(&data) {
            continue;
        }
        let probe = ElfProbe::parse(data).with_context(|| patched.display().to_string())?;
        // A separate debug file has the section header but not the patch.
        if !probe.has_contents(".kpatch.info") {
            continue;
        }
        let rel = patched
            .strip_prefix(&dirs.patched)
            .unwrap_or(&patched)
            .to_path_buf();
        let installed_original = dirs.original.join(&rel);
        if !installed_original.exists() {
            bail!(
                "{}: installed by the patched build but not by the original one ({} missing)",
                rel.display(),
                installed_original.display()
            );
        }
        let build_id = ElfProbe::read(&installed_original)?
            .build_id()
            .with_context(|| format!("{} has no BuildID note", installed_original.display()))?;
        let patched_elf = unstripped(&patched, &mut |id| {
            if patched_tree.is_none() {
                patched_tree = Some(unstripped_by_build_id(&dirs.build, &ours)?);
            }
            Ok(patched_tree.as_ref().and_then(|t| t.get(id).cloned()))
        })?;
        let original = unstripped(&installed_original, &mut |id| {
            let kept = dirs.kept_originals().join(id);
            Ok(kept.exists().then_some(kept))
        })?;
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let output = dirs.patchroot.join(format!("{build_id}.kpatch"));
        let stripped = scratch.join(format!("{}.{name}.stripped", made.len()));
        make_patch(
            tools,
            &Job {
                original: &original,
                patched: &patched_elf,
                build_id: &build_id,
                name: &name,
                level,
                stripped: &stripped,
                output: &output,
            },
        )?;
        let functions = patched_functions(&rel, &stripped)?;
        println!(
            "libcare-patch-make: patch for {}  BuildID {}  functions: {}  ->  {}",
            rel.display(),
            build_id,
            functions.join(", "),
            output.display()
        );
        made.push(output);
    }
    if made.is_empty() {
        bail!(
            "no installed binary has a .kpatch.info section: the patches changed no function \
             that ends up in an installed binary"
        );
    }
    Ok(made)
}

/// The names of the functions a patch replaces or adds. The doctor
/// overwrites a patched function's first bytes with a 5-byte jump and
/// refuses one shorter than that; say so while the patch is built.
fn patched_functions(installed: &Path, patch_elf: &Path) -> Result<Vec<String>> {
    let data =
        std::fs::read(patch_elf).with_context(|| format!("cannot read {}", patch_elf.display()))?;
    let functions = elfpatch::patched_functions(&data)
        .with_context(|| format!("{}: cannot read .kpatch.info", patch_elf.display()))?;
    for f in functions.iter().filter(|f| (1..5).contains(&f.dlen)) {
        eprintln!(
            "libcare-patch-make: warning: {}: patched function {} is {} byte(s) long, \
             shorter than the 5-byte jump: libcare-ctl will refuse to apply this patch",
            installed.display(),
            f.name,
            f.dlen
        );
    }
    // Named as in the original binary: the `.kpatch` suffix is the new
    // body's name, not the function's.
    Ok(functions
        .into_iter()
        .map(|f| match f.name.strip_suffix(".kpatch") {
            Some(name) => name.to_string(),
            None => f.name,
        })
        .collect())
}
