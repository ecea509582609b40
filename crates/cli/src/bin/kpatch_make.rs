//! kpatch_make: prepends the .kpatch header (target BuildID, name, level,
//! checksum) to a patch ELF made by kpatch_strip.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "kpatch_make",
    about = "Wrap a patch ELF (from kpatch_strip) into a .kpatch file for libcare-ctl"
)]
struct Cli {
    /// BuildID of the target object (hex, as `readelf -n` prints it)
    #[arg(short = 'b', long = "buildid", value_name = "BUILDID")]
    build_id: String,
    /// Name of the target object, stored in the header
    #[arg(short = 'n', long = "name", value_name = "NAME", default_value = "")]
    name: String,
    /// Patch level (higher replaces lower)
    #[arg(short = 'l', long = "level", value_name = "LEVEL", default_value_t = 0)]
    level: u32,
    /// Write 0 in the checksum field, as LibCare does
    #[arg(long = "no-checksum")]
    no_checksum: bool,
    /// Patch ELF produced by kpatch_strip --undo-link
    #[arg(value_name = "IN")]
    input: PathBuf,
    /// Output .kpatch file
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    output: PathBuf,
}

fn run(cli: &Cli) -> Result<()> {
    let elf = std::fs::read(&cli.input).with_context(|| cli.input.display().to_string())?;
    elfpatch::check_patch_elf(&elf).with_context(|| cli.input.display().to_string())?;
    let build_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let image = kpatch_file::build(
        &elf,
        &kpatch_file::MakeOptions {
            build_id: cli.build_id.clone(),
            modulename: cli.name.clone(),
            build_time,
            user_level: cli.level,
            checksum: !cli.no_checksum,
        },
    )
    .context("kpatch_make -b")?;
    elfpatch::write_file_atomically(&cli.output, &image)
        .with_context(|| format!("{}: cannot write", cli.output.display()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kpatch_make: {e:#}");
            ExitCode::FAILURE
        }
    }
}
