//! The linked binaries of a tree, found by BuildID: installs that strip
//! (`install -s`, or dh_strip's `objcopy --only-keep-debug` +
//! `--strip-all --add-gnu-debuglink`) keep the BuildID but lose the
//! symbols and relocations a patch is made from, so the patch is made from
//! the unstripped file the build tree still holds.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::elf_probe::ElfProbe;
use super::project::walk;

const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;

/// Whether the file starts like a 64-bit executable or shared object
/// (objects and archives are not what gets installed and patched).
fn is_linked_elf(path: &Path) -> bool {
    let mut head = [0u8; 18];
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    if f.read_exact(&mut head).is_err() || !head.starts_with(b"\x7fELF") || head[4] != 2 {
        return false;
    }
    let kind = u16::from_le_bytes([head[16], head[17]]);
    kind == ET_EXEC || kind == ET_DYN
}

/// Every unstripped executable or shared object below `dir` (not entering
/// `skip`), by BuildID.
pub fn unstripped_by_build_id(dir: &Path, skip: &[&Path]) -> Result<HashMap<String, PathBuf>> {
    let mut paths = Vec::new();
    walk(dir, skip, &mut |p| {
        if is_linked_elf(p) {
            paths.push(p.to_path_buf());
        }
    })?;
    let mut found = HashMap::new();
    for p in paths {
        let Ok(probe) = ElfProbe::read(&p) else {
            continue;
        };
        if !probe.has_section(".symtab") || !probe.has_contents(".text") {
            continue;
        }
        if let Some(id) = probe.build_id() {
            found.entry(id).or_insert(p);
        }
    }
    Ok(found)
}

/// Copies every unstripped binary of the original build into `store` as
/// `<BuildID>`: the patched build overwrites them in the build tree.
pub fn keep_originals(dir: &Path, skip: &[&Path], store: &Path) -> Result<usize> {
    if store.exists() {
        std::fs::remove_dir_all(store)
            .with_context(|| format!("cannot empty {}", store.display()))?;
    }
    std::fs::create_dir_all(store).with_context(|| format!("cannot create {}", store.display()))?;
    let found = unstripped_by_build_id(dir, skip)?;
    for (id, path) in &found {
        let to = store.join(id);
        std::fs::copy(path, &to)
            .with_context(|| format!("cannot copy {} to {}", path.display(), to.display()))?;
    }
    Ok(found.len())
}
