//! `kpatch_strip --undo-link`: the doctor loads sections wherever it finds
//! room, so nothing in the patch may carry a link-time address. Every
//! `sh_addr` becomes 0, every defined symbol's value becomes relative to its
//! section, and every relocation's `r_offset` relative to the section it
//! applies to; `.kpatch.eh_frame`'s PC-relative fields are rewritten to
//! match (see `patch_cfi::settle_values`). Running it twice changes nothing
//! the second time.

use object::elf;

use crate::error::Result;
use crate::image::{Image, LE, Rela, rela_type, sym_section, sym_type};
use crate::patch_cfi;
use crate::strip::{needs_relayout, relayout};
use crate::tls::TlsLayout;

const KPATCH_INFO: &str = ".kpatch.info";

/// The linker wrote link-time addresses where `.kpatch.info`'s relocations
/// apply; the contract wants zeros there, so that the section read before
/// relocation shows nothing that looks like an address.
fn clear_relocated_fields(info: &mut [u8], relas: &[Rela]) {
    for r in relas {
        let width = match rela_type(r) {
            elf::R_X86_64_64 | elf::R_X86_64_PC64 => 8,
            elf::R_X86_64_32 | elf::R_X86_64_32S | elf::R_X86_64_PC32 => 4,
            _ => continue,
        };
        let at = r.r_offset.get(LE) as usize;
        if let Some(field) = info.get_mut(at..at.saturating_add(width)) {
            field.fill(0);
        }
    }
}

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
        if img.name(target) == KPATCH_INFO {
            clear_relocated_fields(img.bytes_mut(target)?, &relas);
        }
    }

    let tls_start = TlsLayout::of(&img).map(|t| t.start);
    let mut syms = img.symbols(symtab)?;
    for s in &mut syms {
        let Some(sec) = sym_section(s).filter(|&i| i < img.sections.len()) else {
            continue;
        };
        // A linked TLS symbol's value is its offset in the TLS block, not
        // an address: its section's distance from the block start is what
        // has to go.
        let base = match (sym_type(s), tls_start) {
            (elf::STT_TLS, Some(start)) => img.addr(sec).wrapping_sub(start),
            (elf::STT_TLS, None) => 0,
            _ => img.addr(sec),
        };
        s.st_value.set(LE, s.st_value.get(LE).wrapping_sub(base));
    }
    img.put_symbols(symtab, &syms)?;
    patch_cfi::settle_values(&mut img, &syms)?;

    for sh in &mut img.sections {
        sh.sh_addr.set(LE, 0);
    }
    img.write_section_headers();
    *patch = img.data;
    Ok(())
}
