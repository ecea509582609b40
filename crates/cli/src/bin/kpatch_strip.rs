//! kpatch_strip: turns a patch-containing binary linked with `-Wl,-q` into
//! the patch ELF the doctor loads (see docs/patch-object.md, section 3).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{ArgGroup, CommandFactory, Parser, error::ErrorKind};

#[derive(Parser)]
#[command(
    name = "kpatch_strip",
    about = "Strip, fix up and unlink a patch-containing binary into a patch ELF",
    after_help = "Recipe:\n  kpatch_strip --strip foobar foobar.stripped\n  kpatch_strip --rel-fixup foo foobar.stripped\n  strip --strip-unneeded foobar.stripped\n  kpatch_strip --undo-link foo foobar.stripped",
    group(ArgGroup::new("mode").required(true).args(["strip", "rel_fixup", "undo_link", "build_id", "dump"]))
)]
struct Cli {
    /// IN OUT: keep only .kpatch.* section bytes (others become NOBITS), and the
    /// patch code's unwind info as .kpatch.eh_frame
    #[arg(short = 's', long)]
    strip: bool,
    /// ORIG PATCH: fix relocations of PATCH in place, checking it against ORIG
    #[arg(short = 'r', long = "rel-fixup")]
    rel_fixup: bool,
    /// [ORIG] PATCH: make addresses in PATCH section-relative and give the
    /// sections outside the patch ORIG's addresses, in place
    #[arg(short = 'u', long = "undo-link")]
    undo_link: bool,
    /// FILE: print the GNU BuildID of FILE
    #[arg(long = "build-id")]
    build_id: bool,
    /// FILE: print sections, symbols and relocations of a patch ELF
    #[arg(long)]
    dump: bool,
    /// Files, as the mode needs them
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
}

fn usage_error(msg: &str) -> ! {
    Cli::command()
        .error(ErrorKind::WrongNumberOfValues, msg)
        .exit()
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{}", path.display()))
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    elfpatch::write_file_atomically(path, bytes)
        .with_context(|| format!("{}: cannot write", path.display()))
}

fn on(path: &Path) -> impl FnOnce() -> String + '_ {
    move || path.display().to_string()
}

fn run(cli: &Cli) -> Result<()> {
    let f = &cli.files;
    if cli.strip {
        let [input, output] = f.as_slice() else {
            usage_error("--strip needs IN OUT");
        };
        let out = elfpatch::strip(&read(input)?).with_context(on(input))?;
        write(output, &out)
    } else if cli.rel_fixup {
        let [orig, patch] = f.as_slice() else {
            usage_error("--rel-fixup needs ORIG PATCH");
        };
        let orig_bytes = read(orig)?;
        let mut patch_bytes = read(patch)?;
        elfpatch::rel_fixup(&orig_bytes, &mut patch_bytes).map_err(|e| match e {
            elfpatch::FixupError::Original(e) => {
                anyhow::Error::new(e).context(orig.display().to_string())
            }
            elfpatch::FixupError::Patch(e) => {
                anyhow::Error::new(e).context(patch.display().to_string())
            }
        })?;
        write(patch, &patch_bytes)
    } else if cli.undo_link {
        let (orig, patch) = match f.as_slice() {
            [patch] => (None, patch),
            [orig, patch] => (Some(read(orig)?), patch),
            _ => usage_error("--undo-link needs [ORIG] PATCH"),
        };
        let mut bytes = read(patch)?;
        elfpatch::undo_link(&mut bytes, orig.as_deref()).with_context(on(patch))?;
        if orig.is_none() {
            eprintln!(
                "kpatch_strip: warning: --undo-link without ORIG: sections outside the patch get address 0, \
                 which LibCare's libcare-ctl cannot use (ours looks them up by name)"
            );
        }
        write(patch, &bytes)
    } else if cli.build_id {
        let [file] = f.as_slice() else {
            usage_error("--build-id needs FILE");
        };
        let bytes = read(file)?;
        elfpatch::check_elf(&bytes).with_context(on(file))?;
        let id = elfpatch::build_id(&bytes)
            .with_context(|| format!("{}: no GNU BuildID note", file.display()))?;
        println!("{id}");
        Ok(())
    } else {
        let [file] = f.as_slice() else {
            usage_error("--dump needs FILE");
        };
        let text = elfpatch::dump(&read(file)?).with_context(on(file))?;
        print!("{text}");
        Ok(())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kpatch_strip: {e:#}");
            ExitCode::FAILURE
        }
    }
}
