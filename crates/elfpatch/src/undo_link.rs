//! `kpatch_strip --undo-link`: the doctor loads sections wherever it finds
//! room, so nothing in the patch may carry a link-time address. Every
//! `sh_addr` becomes 0, every defined symbol's value becomes relative to its
//! section, and every relocation's `r_offset` relative to the section it
//! applies to. Running it twice changes nothing the second time.

use object::elf;

use crate::error::Result;
use crate::image::{Image, LE, sym_section, sym_type};
use crate::strip::{needs_relayout, relayout};

/// Undoes the link of `patch` in place. It also re-applies the `--strip`
/// layout if `strip --strip-unneeded` brought sections or program headers
/// back. On error `patch` is unchanged.
pub fn undo_link(patch: &mut Vec<u8>) -> Result<()> {
    let mut img = Image::parse(patch.clone())?;
    img.require_patch_sections()?;
    img.symtab()?;
    if needs_relayout(&img) {
        img = Image::parse(relayout(&img)?)?;
    }
    let symtab = img.symtab()?;

    for sec in 0..img.sections.len() {
        if img.sh_type(sec) != elf::SHT_RELA {
            continue;
        }
        let target = img.sections[sec].sh_info.get(LE) as usize;
        if target == 0 || target >= img.sections.len() {
            continue;
        }
        let base = img.addr(target);
        let mut relas = img.relas(sec)?;
        for r in &mut relas {
            r.r_offset.set(LE, r.r_offset.get(LE).wrapping_sub(base));
        }
        img.put_relas(sec, &relas)?;
    }

    let mut syms = img.symbols(symtab)?;
    for s in &mut syms {
        // A TLS symbol's value is already an offset in the TLS block.
        if sym_type(s) == elf::STT_TLS {
            continue;
        }
        if let Some(sec) = sym_section(s).filter(|&i| i < img.sections.len()) {
            s.st_value
                .set(LE, s.st_value.get(LE).wrapping_sub(img.addr(sec)));
        }
    }
    img.put_symbols(symtab, &syms)?;

    for sh in &mut img.sections {
        sh.sh_addr.set(LE, 0);
    }
    img.write_section_headers();
    *patch = img.data;
    Ok(())
}
