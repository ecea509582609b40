//! `libcare-patch-make`: the seed's everyday flow for a plain make project.
//!
//! Builds the project with `libcare-cc` in the original stage, installs the
//! result into `lpmake/`, applies the source patches, rebuilds everything in
//! the patched stage, and turns every installed binary that carries
//! `.kpatch.info` into `patchroot/<BuildID>.kpatch`. The source patches are
//! reverted whatever happens.

#[path = "../buildside/patch_make/mod.rs"]
mod patch_make;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;
use patch_make::elf_probe::{ElfProbe, is_elf};
use patch_make::postprocess::{Job, Tools, make_patch};
use patch_make::project::{Project, Stage, walk};
use patch_make::source_patches::{self, Applied};

#[derive(Parser)]
#[command(
    name = "libcare-patch-make",
    about = "Build .kpatch files for a make project from source patches",
    long_about = "Build .kpatch files for a make project from source patches.\n\n\
        Run in the project directory (or give -C). The project is built with \
        CC=libcare-cc in the original stage and installed into lpmake/, the \
        patches are applied with patch -p1, the project is rebuilt in the \
        patched stage, and each installed binary the patches changed becomes \
        patchroot/<BuildID>.kpatch. The patches are reverted afterwards."
)]
struct Cli {
    /// Run `make clean` and drop old .kpatch_*.s files before the original build
    #[arg(long)]
    clean: bool,
    /// Patch level stored in every .kpatch (a higher level replaces a lower one)
    #[arg(short = 'i', long = "id", value_name = "LEVEL")]
    level: Option<u32>,
    /// Project directory
    #[arg(short = 'C', long = "srcdir", value_name = "DIR", default_value = ".")]
    srcdir: PathBuf,
    /// Where the original binaries are installed [default: DIR/lpmake]
    #[arg(long, value_name = "DIR")]
    lpmake: Option<PathBuf>,
    /// Where the .kpatch files are written [default: DIR/patchroot]
    #[arg(short = 'd', long = "patchroot", value_name = "DIR")]
    patchroot: Option<PathBuf>,
    /// Parallel make jobs [default: number of CPUs]
    #[arg(short = 'j', long, value_name = "N")]
    jobs: Option<usize>,
    /// Source patches, applied in order with patch -p1 in the project directory
    #[arg(required = true, value_name = "PATCH")]
    patches: Vec<PathBuf>,
}

/// One `.kpatch` written.
struct Made {
    installed: PathBuf,
    build_id: String,
    output: PathBuf,
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
    match run(&cli) {
        Ok(made) => {
            println!("libcare-patch-make: {} patch(es) made", made.len());
            for m in &made {
                println!(
                    "  {}  BuildID {}  ->  {}",
                    m.installed.display(),
                    m.build_id,
                    m.output.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("libcare-patch-make: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One line per step on stdout, so a long build log shows where it is.
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

fn run(cli: &Cli) -> Result<Vec<Made>> {
    let dir = std::fs::canonicalize(&cli.srcdir)
        .with_context(|| format!("project directory {}", cli.srcdir.display()))?;
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let patches = cli
        .patches
        .iter()
        .map(|p| std::fs::canonicalize(p).with_context(|| format!("patch {}", p.display())))
        .collect::<Result<Vec<_>>>()?;
    let lpmake = absolute(&cwd, cli.lpmake.as_deref().unwrap_or(&dir.join("lpmake")));
    let patchroot = absolute(
        &cwd,
        cli.patchroot.as_deref().unwrap_or(&dir.join("patchroot")),
    );
    let tools = Tools {
        kpatch_strip: tool_next_to_us("kpatch_strip")?,
        kpatch_make: tool_next_to_us("kpatch_make")?,
    };
    let cc = tool_next_to_us("libcare-cc")?;
    let scratch = Scratch::create()?;
    // libcare-cc picks the C++ compiler when called by a C++ name.
    let cxx = scratch.0.join("libcare-c++");
    std::os::unix::fs::symlink(&cc, &cxx)
        .with_context(|| format!("cannot create {}", cxx.display()))?;
    let project = Project {
        dir: dir.clone(),
        cc,
        cxx,
        jobs: cli
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
    };
    let journal = dir.join(source_patches::JOURNAL);
    let skip = [lpmake.as_path(), patchroot.as_path(), journal.as_path()];

    let recovered = source_patches::recover(&dir)?;
    if recovered > 0 {
        progress(&format!(
            "reverted {recovered} patch(es) left applied by an interrupted run"
        ));
    }

    if cli.clean {
        project.make(Stage::Original, &["clean"])?;
        project.remove_kpatch_asm(&skip)?;
    }
    progress("original build (KPATCH_STAGE=original)");
    project.make(Stage::Original, &[])?;
    let originals = project.original_asm(&skip)?;
    if originals.is_empty() {
        bail!(
            "the original build compiled nothing through libcare-cc (no .kpatch_*.original.s \
             under {}): the objects were built before; run with --clean",
            dir.display()
        );
    }
    progress(&format!(
        "installing the original binaries into {}",
        lpmake.display()
    ));
    project.install(Stage::Original, &lpmake)?;

    progress("applying the patches");
    let mut applied = Applied::apply(&dir, &patches)?;
    let result = patched_stage(
        &project, &originals, &scratch.0, &lpmake, &patchroot, &tools, cli.level,
    );
    progress("reverting the patches");
    let reverted = applied.revert();
    match (result, reverted) {
        (Ok(made), Ok(())) => Ok(made),
        (Err(e), Ok(())) => Err(e),
        (Ok(_), Err(undo)) => Err(undo),
        (Err(e), Err(undo)) => Err(e.context(format!("also: {undo:#}"))),
    }
}

fn patched_stage(
    project: &Project,
    originals: &[(PathBuf, Vec<u8>)],
    scratch: &Path,
    lpmake: &Path,
    patchroot: &Path,
    tools: &Tools,
    level: Option<u32>,
) -> Result<Vec<Made>> {
    // Rebuild everything: a changed header must reach every object that
    // includes it, and make cannot know that in a plain Makefile. The
    // original assembly must survive the clean for kpatch_gensrc.
    progress("patched build (KPATCH_STAGE=patched, from clean)");
    project.make(Stage::Patched, &["clean"])?;
    for (path, text) in originals {
        if !path.exists() {
            // `make clean` may remove the object directory itself
            // (`rm -rf obj`); the saved assembly lives there.
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(path, text)
                .with_context(|| format!("cannot restore {}", path.display()))?;
        }
    }
    project.make(Stage::Patched, &[])?;
    let installed = scratch.join("patched-install");
    project.install(Stage::Patched, &installed)?;

    let mut candidates = Vec::new();
    walk(&installed, &[], &mut |p| candidates.push(p.to_path_buf()))?;
    candidates.sort();
    std::fs::create_dir_all(patchroot)
        .with_context(|| format!("cannot create {}", patchroot.display()))?;
    let mut made = Vec::new();
    for patched in candidates {
        let data = std::fs::read(&patched)
            .with_context(|| format!("cannot read {}", patched.display()))?;
        if !is_elf(&data) {
            continue;
        }
        let probe = ElfProbe::parse(data).with_context(|| patched.display().to_string())?;
        if !probe.has_section(".kpatch.info") {
            continue;
        }
        if !probe.has_section(".symtab") {
            bail!(
                "{}: make install stripped it; the patch needs its symbols and relocations \
                 (install without -s)",
                patched.display()
            );
        }
        let rel = patched
            .strip_prefix(&installed)
            .unwrap_or(&patched)
            .to_path_buf();
        let original = lpmake.join(&rel);
        if !original.exists() {
            bail!(
                "{}: installed by the patched build but not by the original one ({} missing)",
                rel.display(),
                original.display()
            );
        }
        let build_id = ElfProbe::read(&original)?
            .build_id()
            .with_context(|| format!("{} has no BuildID note", original.display()))?;
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let output = patchroot.join(format!("{build_id}.kpatch"));
        let stripped = scratch.join(format!("{}.{name}.stripped", made.len()));
        make_patch(
            tools,
            &Job {
                original: &original,
                patched: &patched,
                build_id: &build_id,
                name: &name,
                level,
                stripped: &stripped,
                output: &output,
            },
        )?;
        warn_short_functions(&rel, &stripped)?;
        made.push(Made {
            installed: rel,
            build_id,
            output,
        });
    }
    if made.is_empty() {
        bail!(
            "no installed binary has a .kpatch.info section: the patches changed no function \
             that ends up in an installed binary"
        );
    }
    Ok(made)
}

/// The doctor overwrites a patched function's first bytes with a 5-byte
/// jump and refuses one shorter than that; say so while the patch is built.
fn warn_short_functions(installed: &Path, patch_elf: &Path) -> Result<()> {
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
    Ok(())
}
