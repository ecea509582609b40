//! `kpatch_strip --undo-link`: the doctor loads sections wherever it finds
//! room, so nothing in the patch may carry a link-time address of the
//! patched build. Every defined symbol's value becomes relative to its
//! section, and every relocation's `r_offset` relative to the section it
//! applies to; `.kpatch.eh_frame`'s PC-relative fields are rewritten to
//! match (see `patch_cfi::settle_values`).
//!
//! The result is the ELF LibCare's loader takes as well as ours: `ET_REL`
//! marks it undone; `.kpatch.*` sections have address 0 and sit at file
//! offsets that keep their alignment once the 688-byte header is in front
//! (LibCare maps the whole file and uses each section where it lies); every
//! other allocated section carries the address of the section of the same
//! name in the original binary (LibCare finds the original's code and data
//! there, plus the load bias; our doctor looks them up by name), or 0 when
//! no original is given. Running it again changes nothing.

use object::elf;

use crate::error::Result;
use crate::image::{Image, KPATCH_PREFIX, LE, Rela, rela_type, sym_section, sym_type};
use crate::patch_cfi;
use crate::strip::{needs_relayout, relayout};
use crate::tls::TlsLayout;

const KPATCH_INFO: &str = ".kpatch.info";

/// The linker wrote link-time addresses where `.kpatch.info`'s relocations
/// apply; the contract wants zeros there, so that the section read before
/// relocation shows nothing that looks like an address.
fn clear_relocated_fields(info: &mut [u8], relas: &[Rela]) {
    for r in relas {
        let width = match kpatch_file::reloc::reloc(rela_type(r)) {
            Some(k) if !k.reads_slot && k.width > 0 => usize::from(k.width),
            _ => continue,
        };
        let at = r.r_offset.get(LE) as usize;
        if let Some(field) = info.get_mut(at..at.saturating_add(width)) {
            field.fill(0);
        }
    }
}

/// Undoes the link of `patch` in place, taking the addresses of sections
/// outside the patch from `original` (the binary the patch is for) when
/// given. It also re-applies the `--strip` layout if `strip
/// --strip-unneeded` brought sections or program headers back, or left a
/// section where the header would misalign it. On error `patch` is
/// unchanged.
pub fn undo_link(patch: &mut Vec<u8>, original: Option<&[u8]>) -> Result<()> {
    let mut img = Image::parse(patch.clone())?;
    img.require_patch_sections()?;
    img.symtab()?;
    let original = original.map(|o| Image::parse(o.to_vec())).transpose()?;
    if needs_relayout(&img) {
        img = Image::parse(relayout(&img)?)?;
    }
    if img.header.e_type.get(LE) != elf::ET_REL {
        make_relative(&mut img)?;
    }
    for i in 1..img.sections.len() {
        let addr = match &original {
            Some(orig) if !img.name(i).starts_with(KPATCH_PREFIX) && is_alloc(&img, i) => orig
                .section_by_name(img.name(i))
                .map_or(0, |o| orig.addr(o)),
            _ => 0,
        };
        img.sections[i].sh_addr.set(LE, addr);
    }
    img.header.e_type.set(LE, elf::ET_REL);
    img.write_section_headers();
    *patch = img.data;
    Ok(())
}

fn is_alloc(img: &Image, i: usize) -> bool {
    img.flags(i) & u64::from(elf::SHF_ALLOC) != 0
}

/// Subtracts each section's link-time address from the offsets and values
/// that refer to it.
fn make_relative(img: &mut Image) -> Result<()> {
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

    let tls_start = TlsLayout::of(img).map(|t| t.start);
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
    patch_cfi::settle_values(img, &syms)?;
    Ok(())
}
