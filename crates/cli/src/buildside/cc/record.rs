//! The list of sources a stage compiled, kept for `libcare-patch-make`:
//! it counts them to show progress, and before the patched stage it makes
//! exactly these sources newer than their objects, so that make or ninja
//! rebuilds every object (a changed header reaches all its includers)
//! without a `make clean` that could remove a configured tree.

use std::io::Write;
use std::path::Path;

/// The file named by this variable gets one absolute source path a line.
pub const RECORD_VAR: &str = "LIBCARE_CC_RECORD";

/// Appends `sources` (relative to `cwd` unless absolute) to `record`, one
/// `write` for all of them so that parallel compilers do not interleave
/// inside a line.
pub fn append(record: &Path, cwd: &Path, sources: &[&str]) -> std::io::Result<()> {
    if sources.is_empty() {
        return Ok(());
    }
    let mut text = String::new();
    for s in sources {
        let p = cwd.join(s);
        text.push_str(&p.to_string_lossy());
        text.push('\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(record)?;
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_absolute_lines() {
        let dir = std::env::temp_dir().join(format!("lc-record-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rec = dir.join("rec");
        append(&rec, Path::new("/src"), &["a.c", "/abs/b.c"]).unwrap();
        append(&rec, Path::new("/src"), &[]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&rec).unwrap(),
            "/src/a.c\n/abs/b.c\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
