//! Applying the user's source patches with `patch -p1` and taking them
//! back out, so the tree ends as it started.
//!
//! Each applied patch is first copied into a journal directory in the tree
//! and removed from it once reverted. A run killed in between (Ctrl-C in a
//! long build) leaves the journal behind, and the next run reverts what it
//! lists before doing anything else.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Name of the journal directory inside the project.
pub const JOURNAL: &str = ".libcare-patch-make.applied";

/// The patches applied so far, in order (their journal copies).
pub struct Applied {
    dir: PathBuf,
    patches: Vec<PathBuf>,
}

fn journal(dir: &Path) -> PathBuf {
    dir.join(JOURNAL)
}

/// Reverts what an interrupted earlier run left applied; returns how many
/// patches it reverted.
pub fn recover(dir: &Path) -> Result<usize> {
    let journal = journal(dir);
    if !journal.exists() {
        return Ok(0);
    }
    let mut left: Vec<(u32, PathBuf)> = std::fs::read_dir(&journal)
        .with_context(|| format!("cannot list {}", journal.display()))?
        .filter_map(|e| {
            let path = e.ok()?.path();
            let n = path.file_stem()?.to_str()?.parse().ok()?;
            Some((n, path))
        })
        .collect();
    left.sort();
    let mut reverted = 0;
    for (_, patch) in left.iter().rev() {
        if run_patch(dir, patch, &["-R", "--dry-run"])?.0 {
            let (ok, text) = run_patch(dir, patch, &["-R"])?;
            if !ok {
                eprint!("{text}");
                bail!("cannot revert {}; revert it by hand", patch.display());
            }
            reverted += 1;
        } else if !run_patch(dir, patch, &["--dry-run"])?.0 {
            bail!(
                "{} from an interrupted run is neither applied nor revertible; \
                 fix the tree by hand and remove {}",
                patch.display(),
                journal.display()
            );
        }
        // Applies forward: the earlier run stopped before applying it.
        std::fs::remove_file(patch)
            .with_context(|| format!("cannot remove {}", patch.display()))?;
    }
    std::fs::remove_dir_all(&journal)
        .with_context(|| format!("cannot remove {}", journal.display()))?;
    Ok(reverted)
}

fn run_patch(dir: &Path, patch: &Path, extra: &[&str]) -> Result<(bool, String)> {
    let out = Command::new("patch")
        .current_dir(dir)
        .args(["-p1", "--batch", "--forward", "--no-backup-if-mismatch"])
        .args(extra)
        .arg("-i")
        .arg(patch)
        .stdin(Stdio::null())
        .output()
        .context("cannot run patch")?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

impl Applied {
    /// Applies every patch, each first as a dry run so that a patch that
    /// does not apply leaves no half-patched files. On failure the patches
    /// already applied are reverted before the error is returned.
    pub fn apply(dir: &Path, patches: &[PathBuf]) -> Result<Applied> {
        let mut applied = Applied {
            dir: dir.to_path_buf(),
            patches: Vec::new(),
        };
        for (n, given) in patches.iter().enumerate() {
            let patch = journal(dir).join(format!("{n}.diff"));
            let result = run_patch(dir, given, &["--dry-run"]).and_then(|(ok, text)| {
                if !ok {
                    eprint!("{text}");
                    bail!(
                        "{} does not apply with patch -p1 in {}",
                        given.display(),
                        dir.display()
                    );
                }
                std::fs::create_dir_all(journal(dir))
                    .and_then(|()| std::fs::copy(given, &patch))
                    .with_context(|| format!("cannot record {}", patch.display()))?;
                let (ok, text) = run_patch(dir, &patch, &[])?;
                if !ok {
                    eprint!("{text}");
                    bail!("patch -p1 -i {} failed", given.display());
                }
                Ok(())
            });
            if let Err(e) = result {
                if let Err(undo) = applied.revert() {
                    return Err(e.context(format!("and reverting failed too: {undo:#}")));
                }
                return Err(e);
            }
            applied.patches.push(patch);
        }
        Ok(applied)
    }

    /// Reverts the applied patches, last first, and drops the journal.
    pub fn revert(&mut self) -> Result<()> {
        while let Some(patch) = self.patches.last().cloned() {
            let (ok, text) = run_patch(&self.dir, &patch, &["-R"])?;
            if !ok {
                eprint!("{text}");
                bail!(
                    "cannot revert {} in {}; the tree is left patched (the next run retries)",
                    patch.display(),
                    self.dir.display()
                );
            }
            std::fs::remove_file(&patch)
                .with_context(|| format!("cannot remove {}", patch.display()))?;
            self.patches.pop();
        }
        let journal = journal(&self.dir);
        if journal.exists() {
            std::fs::remove_dir_all(&journal)
                .with_context(|| format!("cannot remove {}", journal.display()))?;
        }
        Ok(())
    }
}
