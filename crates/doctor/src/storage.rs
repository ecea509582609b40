//! Patch storage: where `libcare-ctl patch` finds patches.
//!
//! - a single `.kpatch` file (applies to whatever object its BuildID names);
//! - a flat directory of `<BuildID>.kpatch`;
//! - a directory of `<BuildID>/<level>/kpatch.bin` with `<BuildID>/latest`
//!   a symlink to the current level.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::patch::{self, Patch};

#[derive(Debug, Clone)]
pub enum Storage {
    File(PathBuf),
    Flat(PathBuf),
    Levels(PathBuf),
}

impl Storage {
    pub fn open(path: &Path) -> Result<Storage> {
        let meta = std::fs::metadata(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if !meta.is_dir() {
            return Ok(Storage::File(path.to_path_buf()));
        }
        let levels = std::fs::read_dir(path)
            .map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?
            .filter_map(|e| e.ok())
            .any(|e| e.path().is_dir() && e.path().join("latest").exists());
        Ok(if levels {
            Storage::Levels(path.to_path_buf())
        } else {
            Storage::Flat(path.to_path_buf())
        })
    }

    pub fn path(&self) -> &Path {
        match self {
            Storage::File(p) | Storage::Flat(p) | Storage::Levels(p) => p,
        }
    }

    /// Where the patch for `build_id` would be, if the storage holds one.
    pub fn path_for(&self, build_id: &str) -> Option<PathBuf> {
        if build_id.is_empty() || !build_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let p = match self {
            Storage::File(_) => return None,
            Storage::Flat(d) => d.join(format!("{build_id}.kpatch")),
            Storage::Levels(d) => d.join(build_id).join("latest").join("kpatch.bin"),
        };
        p.is_file().then_some(p)
    }

    /// The level `<BuildID>/latest` points at in a levelled storage. As in
    /// LibCare, the directory says the level; a file built without one
    /// (level 0 in its header) gets it from there.
    fn linked_level(&self, build_id: &str) -> Option<u32> {
        let Storage::Levels(d) = self else {
            return None;
        };
        let target = std::fs::read_link(d.join(build_id).join("latest")).ok()?;
        target.file_name()?.to_str()?.parse().ok()
    }

    /// The patches for the objects with these BuildIDs. A single file is
    /// returned whatever it targets (the caller reports a mismatch).
    pub fn patches_for<'a>(
        &self,
        build_ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<Patch>> {
        if let Storage::File(p) = self {
            return Ok(vec![patch::load(p)?]);
        }
        let mut out: Vec<Patch> = Vec::new();
        for id in build_ids {
            if let Some(p) = self.path_for(id) {
                let mut patch = patch::load(&p)?;
                if let Some(level) = self.linked_level(id) {
                    patch.set_level(level);
                }
                if patch.header.build_id != id {
                    return Err(Error::Storage {
                        path: p,
                        why: format!(
                            "holds a patch for BuildID {}, not {id}",
                            patch.header.build_id
                        ),
                    });
                }
                if !out.iter().any(|q| q.header.build_id == id) {
                    out.push(patch);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kpatch(build_id: &str, level: u32) -> Vec<u8> {
        kpatch_file::build(
            b"\x7fELF",
            &kpatch_file::MakeOptions {
                build_id: build_id.into(),
                user_level: level,
                ..Default::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn finds_flat_and_levelled_layouts() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("abcd.kpatch"), kpatch("abcd", 0)).unwrap();
        let s = Storage::open(d.path()).unwrap();
        assert!(matches!(s, Storage::Flat(_)));
        assert!(s.path_for("abcd").is_some());
        assert!(s.path_for("ef01").is_none());
        assert!(s.path_for("../x").is_none());

        let l = tempfile::tempdir().unwrap();
        for lv in [1, 2] {
            let dir = l.path().join("abcd").join(lv.to_string());
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("kpatch.bin"), kpatch("abcd", lv)).unwrap();
        }
        std::os::unix::fs::symlink("2", l.path().join("abcd/latest")).unwrap();
        let s = Storage::open(l.path()).unwrap();
        assert!(matches!(s, Storage::Levels(_)));
        assert!(
            s.path_for("abcd")
                .unwrap()
                .ends_with("abcd/latest/kpatch.bin")
        );
        let f = Storage::open(&d.path().join("abcd.kpatch")).unwrap();
        assert!(matches!(f, Storage::File(_)));
    }
}
