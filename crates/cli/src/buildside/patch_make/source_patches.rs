//! Applying the user's source patches with `patch -p1` and taking them
//! back out, so the tree ends as it started.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The patches applied so far, in order.
pub struct Applied {
    dir: PathBuf,
    patches: Vec<PathBuf>,
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
        for patch in patches {
            let result = run_patch(dir, patch, &["--dry-run"]).and_then(|(ok, text)| {
                if !ok {
                    eprint!("{text}");
                    bail!(
                        "{} does not apply with patch -p1 in {}",
                        patch.display(),
                        dir.display()
                    );
                }
                let (ok, text) = run_patch(dir, patch, &[])?;
                if !ok {
                    eprint!("{text}");
                    bail!("patch -p1 -i {} failed", patch.display());
                }
                Ok(())
            });
            if let Err(e) = result {
                if let Err(undo) = applied.revert() {
                    return Err(e.context(format!("and reverting failed too: {undo:#}")));
                }
                return Err(e);
            }
            applied.patches.push(patch.clone());
        }
        Ok(applied)
    }

    /// Reverts the applied patches, last first.
    pub fn revert(&mut self) -> Result<()> {
        while let Some(patch) = self.patches.pop() {
            let (ok, text) = run_patch(&self.dir, &patch, &["-R"])?;
            if !ok {
                eprint!("{text}");
                bail!(
                    "cannot revert {} in {}; the tree is left patched",
                    patch.display(),
                    self.dir.display()
                );
            }
        }
        Ok(())
    }
}
