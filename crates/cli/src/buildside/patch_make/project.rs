//! The files of the project tree that the build side looks after itself:
//! the assembly `libcare-cc` keeps, and the sources whose objects the
//! patched stage must rebuild.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Removes every `.kpatch_*.s` the wrapper left below `dir` by an earlier run.
pub fn remove_kpatch_asm(dir: &Path, skip: &[&Path]) -> Result<()> {
    let mut found = Vec::new();
    walk(dir, skip, &mut |p| {
        let n = file_name(p);
        if n.starts_with(".kpatch_") && n.ends_with(".s") {
            found.push(p.to_path_buf());
        }
    })?;
    for p in found {
        std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
    }
    Ok(())
}

/// Makes each source newer than the object the original stage built from
/// it, so that make or ninja rebuilds every one of them in the patched
/// stage, header dependencies tracked or not, without a `make clean` that
/// may also remove what `configure` wrote. Returns how many it touched.
pub fn touch(sources: &[PathBuf]) -> Result<usize> {
    let now = SystemTime::now();
    let mut touched = 0;
    for s in sources {
        // A source that is gone (a generated file the build removed) has
        // nothing to rebuild from.
        let Ok(f) = std::fs::File::options().write(true).open(s) else {
            continue;
        };
        f.set_modified(now)
            .with_context(|| format!("cannot touch {}", s.display()))?;
        touched += 1;
    }
    Ok(touched)
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
