//! Gatekeeping for the tools' inputs, so that a wrong file is refused with a
//! reason before anything is written.

use object::elf;

use crate::error::{Error, Result};
use crate::image::{self, Image};
use crate::strip::keeps_bytes;

/// Accepts any ELF64 x86-64 little-endian file.
pub fn check_elf(data: &[u8]) -> Result<()> {
    image::check_ident(data)
}

/// Accepts only a finished patch ELF, as `kpatch_make` wraps it: `.kpatch.*`
/// and `.rela.kpatch.*` present, no section bytes but the kept ones, and its
/// link undone (`ET_REL`, as ours and LibCare's `--undo-link` leave it; an
/// older file of ours says so by having no address left at all).
pub fn check_patch_elf(data: &[u8]) -> Result<()> {
    let img = Image::parse(data.to_vec())?;
    img.require_patch_sections()?;
    img.symtab()?;
    for i in 1..img.sections.len() {
        let name = img.name(i);
        if img.sh_type(i) != elf::SHT_NOBITS && !keeps_bytes(name) && img.size(i) != 0 {
            return Err(Error::NotStripped {
                section: name.to_string(),
                size: img.size(i),
            });
        }
    }
    if img.header.e_type.get(image::LE) == elf::ET_REL {
        return Ok(());
    }
    for i in 1..img.sections.len() {
        let name = img.name(i);
        if img.addr(i) != 0 {
            return Err(Error::StillLinked {
                section: name.to_string(),
                addr: img.addr(i),
            });
        }
    }
    Ok(())
}
