//! From a patched binary linked with `-q` to `<BuildID>.kpatch`: the seed's
//! post-processing, run with the tools next to our own executable.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

pub struct Tools {
    pub kpatch_strip: PathBuf,
    pub kpatch_make: PathBuf,
}

/// One binary to turn into a patch.
pub struct Job<'a> {
    pub original: &'a Path,
    pub patched: &'a Path,
    pub build_id: &'a str,
    /// Name stored in the header (the object's file name).
    pub name: &'a str,
    pub level: Option<u32>,
    /// Scratch file for the stripped ELF.
    pub stripped: &'a Path,
    pub output: &'a Path,
}

fn run(cmd: &mut Command) -> Result<()> {
    let what = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let status = cmd.status().with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

pub fn make_patch(tools: &Tools, job: &Job) -> Result<()> {
    run(Command::new(&tools.kpatch_strip)
        .arg("--strip")
        .arg(job.patched)
        .arg(job.stripped))?;
    run(Command::new(&tools.kpatch_strip)
        .arg("--rel-fixup")
        .arg(job.original)
        .arg(job.stripped))?;
    run(Command::new("strip")
        .arg("--strip-unneeded")
        .arg(job.stripped))?;
    run(Command::new(&tools.kpatch_strip)
        .arg("--undo-link")
        .arg(job.original)
        .arg(job.stripped))?;
    let mut make = Command::new(&tools.kpatch_make);
    make.args(["-b", job.build_id, "-n", job.name]);
    if let Some(level) = job.level {
        make.args(["-l", &level.to_string()]);
    }
    run(make.arg(job.stripped).arg("-o").arg(job.output))
}
