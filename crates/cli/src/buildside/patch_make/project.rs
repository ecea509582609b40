//! The project being patched: its directory, and make run through
//! `libcare-cc` in one of the two stages.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Original,
    Patched,
}

impl Stage {
    fn env_value(self) -> &'static str {
        match self {
            Stage::Original => "original",
            Stage::Patched => "patched",
        }
    }
}

pub struct Project {
    pub dir: PathBuf,
    /// `libcare-cc`, handed to make as `CC`.
    pub cc: PathBuf,
    /// A `libcare-c++` name for the same wrapper, handed to make as `CXX`.
    pub cxx: PathBuf,
    pub jobs: usize,
}

impl Project {
    /// `make [ARGS...]` with the wrapper as compiler, in `stage`.
    pub fn make(&self, stage: Stage, args: &[&str]) -> Result<()> {
        let mut cmd = Command::new("make");
        cmd.current_dir(&self.dir)
            .arg(format!("-j{}", self.jobs))
            .arg(format!("CC={}", self.cc.display()))
            .arg(format!("CXX={}", self.cxx.display()))
            .args(args)
            .env("KPATCH_STAGE", stage.env_value());
        let what = format!(
            "make {} (KPATCH_STAGE={}) in {}",
            args.join(" "),
            stage.env_value(),
            self.dir.display()
        );
        let status = cmd.status().with_context(|| format!("cannot run {what}"))?;
        if !status.success() {
            bail!("{what} failed ({status})");
        }
        Ok(())
    }

    /// `make install DESTDIR=<dest>` (dest made absolute and empty first).
    pub fn install(&self, stage: Stage, dest: &Path) -> Result<()> {
        if dest.exists() {
            std::fs::remove_dir_all(dest)
                .with_context(|| format!("cannot empty {}", dest.display()))?;
        }
        std::fs::create_dir_all(dest)
            .with_context(|| format!("cannot create {}", dest.display()))?;
        self.make(stage, &["install", &format!("DESTDIR={}", dest.display())])
    }

    /// Every `.kpatch_*.original.s` under the project, with its text, so
    /// that a `make clean` before the patched build cannot lose them.
    pub fn original_asm(&self, skip: &[&Path]) -> Result<Vec<(PathBuf, Vec<u8>)>> {
        let mut found = Vec::new();
        collect_original_asm(&self.dir, skip, &mut found)?;
        Ok(found)
    }

    /// Removes every `.kpatch_*.s` the wrapper left by an earlier run.
    pub fn remove_kpatch_asm(&self, skip: &[&Path]) -> Result<()> {
        let mut found = Vec::new();
        walk(&self.dir, skip, &mut |p| {
            if is_kpatch_asm(p) {
                found.push(p.to_path_buf());
            }
        })?;
        for p in found {
            std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        }
        Ok(())
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn is_kpatch_asm(p: &Path) -> bool {
    let n = file_name(p);
    n.starts_with(".kpatch_") && n.ends_with(".s")
}

fn collect_original_asm(
    dir: &Path,
    skip: &[&Path],
    found: &mut Vec<(PathBuf, Vec<u8>)>,
) -> Result<()> {
    let mut paths = Vec::new();
    walk(dir, skip, &mut |p| {
        let n = file_name(p);
        if n.starts_with(".kpatch_") && n.ends_with(".original.s") {
            paths.push(p.to_path_buf());
        }
    })?;
    for p in paths {
        let text = std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
        found.push((p, text));
    }
    Ok(())
}

/// Visits every regular file below `dir`, not following symlinks and not
/// entering `skip`.
pub fn walk(dir: &Path, skip: &[&Path], visit: &mut dyn FnMut(&Path)) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if !skip.iter().any(|s| *s == path) {
                walk(&path, skip, visit)?;
            }
        } else if kind.is_file() {
            visit(&path);
        }
    }
    Ok(())
}
