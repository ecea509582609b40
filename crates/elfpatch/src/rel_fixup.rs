//! `kpatch_strip --rel-fixup ORIG PATCH`: bring the relocations of the patch
//! into the forms the doctor resolves (docs/patch-object.md, section 3), and
//! refuse a patch whose view of the original binary differs from the real
//! original.
//!
//! Per relocation in `.rela.kpatch.*`, in this order:
//! 1. the sanity check: a symbol of the original binary that the patch
//!    names must sit at the same section and offset in ORIG, and a section it
//!    reaches must have the same size there (the stripped patch no longer
//!    has the bytes to compare, sizes and symbol places are what is left);
//! 2. `PLT32` -> `PC32` (the doctor's jump table stands in for the PLT);
//!    a call to an IFUNC defined in the binary (all of a static
//!    executable's libc ones) becomes `PC32` against the original's `.plt`
//!    stub that jumps through its `R_X86_64_IRELATIVE` slot;
//! 3. GOT-relative forms against a defined, non-TLS symbol -> `PC32`, with the
//!    instruction rewritten to match (see `got_relax`);
//! 4. `TPOFF32`: the thread-pointer offset the linker wrote must equal
//!    ORIG's, and then the relocation becomes `NONE`; `GOTTPOFF`:
//!    `r_addend` becomes the address of ORIG's GOT slot filled by
//!    `R_X86_64_TPOFF64` for that symbol;
//! 5. a reference to a local, non-section symbol is re-expressed against its
//!    section symbol, so it survives `strip --strip-unneeded` whatever that
//!    does to local names.

use std::collections::HashMap;

use object::elf;

use crate::error::{Error, Result};
use crate::got_relax::{self, Relaxed};
use crate::image::{
    Image, KPATCH_PREFIX, LE, Rela, Sym, rela_sym, rela_type, reloc_name, set_rela, sym_bind,
    sym_section, sym_type,
};
use crate::original::{Original, Place, base_name};
use crate::tls::TlsLayout;

/// Which input an error is about.
#[derive(Debug, thiserror::Error)]
pub enum FixupError {
    #[error("{0}")]
    Original(Error),
    #[error("{0}")]
    Patch(Error),
}

fn is_got_relative(t: u32) -> bool {
    matches!(
        t,
        elf::R_X86_64_GOTPCREL | elf::R_X86_64_GOTPCRELX | elf::R_X86_64_REX_GOTPCRELX
    )
}

/// Fixes the relocations of `patch` in place. On error `patch` is unchanged.
pub fn rel_fixup(orig: &[u8], patch: &mut Vec<u8>) -> std::result::Result<(), FixupError> {
    let original = Original::read(orig).map_err(FixupError::Original)?;
    let mut img = Image::parse(patch.clone()).map_err(FixupError::Patch)?;
    fix(&original, &mut img).map_err(FixupError::Patch)?;
    *patch = img.data;
    Ok(())
}

struct Ctx<'a> {
    original: &'a Original,
    symtab: usize,
    syms: Vec<Sym>,
    section_syms: HashMap<usize, u32>,
    tls: Option<TlsLayout>,
}

fn fix(original: &Original, img: &mut Image) -> Result<()> {
    img.require_patch_sections()?;
    let symtab = img.symtab()?;
    let syms = img.symbols(symtab)?;
    let section_syms = syms
        .iter()
        .enumerate()
        .filter(|(_, s)| sym_type(s) == elf::STT_SECTION)
        .filter_map(|(i, s)| sym_section(s).map(|sec| (sec, i as u32)))
        .collect();
    let ctx = Ctx {
        original,
        symtab,
        syms,
        section_syms,
        tls: TlsLayout::of(img),
    };
    for rela_sec in img.kpatch_relas() {
        let target = img.sections[rela_sec].sh_info.get(LE) as usize;
        if target == 0 || target >= img.sections.len() {
            return Err(Error::Malformed(format!(
                "{} applies to section index {target}",
                img.name(rela_sec)
            )));
        }
        let mut relas = img.relas(rela_sec)?;
        for r in &mut relas {
            fix_one(&ctx, img, target, r)?;
        }
        img.put_relas(rela_sec, &relas)?;
    }
    Ok(())
}

/// One relocation's symbol and place, resolved to names.
struct Site {
    sym_index: u32,
    sym: Sym,
    name: String,
    /// Name of the section the relocation applies to.
    section: String,
    /// Offset of the relocated field in that section.
    place: u64,
    /// Section the symbol is defined in, if any.
    defined_in: Option<usize>,
}

fn fix_one(ctx: &Ctx, img: &mut Image, target: usize, r: &mut Rela) -> Result<()> {
    let sym_index = rela_sym(r);
    let sym = *ctx
        .syms
        .get(sym_index as usize)
        .ok_or_else(|| Error::Malformed(format!("relocation names symbol {sym_index}")))?;
    let site = Site {
        sym_index,
        sym,
        name: img.symbol_name(ctx.symtab, &sym),
        section: img.name(target).to_string(),
        place: r.r_offset.get(LE).wrapping_sub(img.addr(target)),
        defined_in: sym_section(&sym).filter(|&s| s < img.sections.len()),
    };
    let in_original = site
        .defined_in
        .is_some_and(|s| !img.name(s).starts_with(KPATCH_PREFIX));
    if in_original && sym_type(&sym) != elf::STT_TLS {
        check_against_original(ctx.original, img, &sym, &site.name)?;
    }
    // A direct reference to a defined IFUNC would reach its resolver, not
    // the implementation it selects.
    if site.defined_in.is_some() && sym_type(&sym) == elf::STT_GNU_IFUNC {
        return ifunc_call(ctx, img, &site, r);
    }
    let r_type = retype(ctx, img, target, &site, r)?;
    let new_sym = rebase_local(ctx, img, &site, r, r_type)?;
    set_rela(r, new_sym, r_type);
    Ok(())
}

fn unsupported(site: &Site, r_type: u32, what: &str) -> Error {
    Error::UnsupportedRelocation {
        section: site.section.clone(),
        offset: site.place,
        r_type: reloc_name(r_type),
        symbol: format!("{}{what}", site.name),
    }
}

/// Steps 2-4: the relocation type the doctor will see, with the code and
/// addend changes that go with it.
fn retype(ctx: &Ctx, img: &mut Image, target: usize, site: &Site, r: &mut Rela) -> Result<u32> {
    let r_type = rela_type(r);
    match r_type {
        elf::R_X86_64_PLT32 => Ok(elf::R_X86_64_PC32),
        t if is_got_relative(t)
            && site.defined_in.is_some()
            && sym_type(&site.sym) != elf::STT_TLS =>
        {
            let code = img.bytes_mut(target)?;
            match got_relax::relax(code, site.place as usize) {
                Some(Relaxed::Jmp) => r.r_offset.set(LE, r.r_offset.get(LE) - 1),
                Some(Relaxed::Lea | Relaxed::Call) => {}
                None => {
                    let at = site.place as usize;
                    return Err(Error::Unrelaxable {
                        section: site.section.clone(),
                        offset: site.place,
                        r_type: if t == elf::R_X86_64_GOTPCREL {
                            "R_X86_64_GOTPCREL"
                        } else {
                            "R_X86_64_(REX_)GOTPCRELX"
                        },
                        symbol: site.name.clone(),
                        bytes: code
                            .get(at.saturating_sub(3)..at.min(code.len()))
                            .unwrap_or(&[])
                            .to_vec(),
                    });
                }
            }
            Ok(elf::R_X86_64_PC32)
        }
        // The linker already wrote the thread-pointer offset into the
        // code; once it is known to equal the original's, nothing is left
        // to relocate (LibCare's loader refuses to apply TPOFF32 at all).
        elf::R_X86_64_TPOFF32 if check_tpoff(ctx, &site.sym, &site.name)? => Ok(elf::R_X86_64_NONE),
        elf::R_X86_64_TPOFF32 => Ok(r_type),
        elf::R_X86_64_GOTTPOFF => {
            let slot = tpoff_slot(ctx, site).ok_or_else(|| Error::TlsGotEntryMissing {
                symbol: site.name.clone(),
            })?;
            r.r_addend.set(LE, slot as i64);
            Ok(r_type)
        }
        t if kpatch_file::reloc::in_patch(t) => Ok(t),
        t => Err(unsupported(site, t, "")),
    }
}

/// The original's GOT slot holding the thread-pointer offset of the
/// thread-local `site` names: the slot filled for that symbol by name, or,
/// for a file-static one the dynamic linker knows only by its offset in the
/// object's TLS block, the slot filled for that offset. The offset is the
/// original's symbol's; the patch's own value serves only when the
/// original has no symbol table and both TLS blocks have one size.
fn tpoff_slot(ctx: &Ctx, site: &Site) -> Option<u64> {
    let name = base_name(&site.name);
    if let Some(&slot) = ctx.original.tpoff_slots.get(name) {
        return Some(slot);
    }
    if sym_bind(&site.sym) != elf::STB_LOCAL || sym_type(&site.sym) != elf::STT_TLS {
        return None;
    }
    let offset = match ctx.original.tls_values.get(name) {
        Some(&v) => v,
        None => {
            let (patch, orig) = (ctx.tls?, ctx.original.tls?);
            if patch.size != orig.size {
                return None;
            }
            site.sym.st_value.get(LE)
        }
    };
    ctx.original.tpoff_slots_by_offset.get(&offset).copied()
}

/// A call to a locally defined IFUNC (a static executable's libc) goes to
/// the original's `.plt` stub that jumps through the slot its
/// `R_X86_64_IRELATIVE` filled with the selected implementation; anything
/// else (taking its address, no such stub) is refused.
fn ifunc_call(ctx: &Ctx, img: &Image, site: &Site, r: &mut Rela) -> Result<()> {
    let r_type = rela_type(r);
    let refuse = || unsupported(site, r_type, " (a locally defined IFUNC)");
    if r_type != elf::R_X86_64_PLT32 {
        return Err(refuse());
    }
    let stub = ctx
        .original
        .ifunc_stubs
        .get(&site.sym.st_value.get(LE))
        .ok_or_else(refuse)?;
    let plt = img.section_by_name(&stub.section).ok_or_else(refuse)?;
    let section_sym = *ctx
        .section_syms
        .get(&plt)
        .ok_or_else(|| Error::NoSectionSymbol {
            section: stub.section.clone(),
        })?;
    match ctx.original.section_sizes.get(&stub.section) {
        Some(&size) if size == img.size(plt) => {}
        _ => return Err(refuse()),
    }
    r.r_addend
        .set(LE, r.r_addend.get(LE).wrapping_add(stub.offset as i64));
    set_rela(r, section_sym, elf::R_X86_64_PC32);
    Ok(())
}

/// Step 5: the symbol index the relocation ends up naming; a local,
/// non-section symbol is replaced by its section's symbol and the addend
/// carries its offset.
fn rebase_local(ctx: &Ctx, img: &Image, site: &Site, r: &mut Rela, r_type: u32) -> Result<u32> {
    let local = sym_bind(&site.sym) == elf::STB_LOCAL
        && matches!(
            sym_type(&site.sym),
            elf::STT_NOTYPE | elf::STT_OBJECT | elf::STT_FUNC
        )
        && !is_got_relative(r_type);
    let (true, Some(sec)) = (local, site.defined_in) else {
        return Ok(site.sym_index);
    };
    // `strip --strip-unneeded` before `--rel-fixup` (LibCare's makefiles'
    // order) drops the section symbols nothing referred to yet; the local
    // symbol itself survived, since a relocation names it, and nothing
    // strips after this step in that order, so it is kept as it is.
    let Some(&section_sym) = ctx.section_syms.get(&sec) else {
        return Ok(site.sym_index);
    };
    let delta = site.sym.st_value.get(LE).wrapping_sub(img.addr(sec)) as i64;
    r.r_addend.set(LE, r.r_addend.get(LE).wrapping_add(delta));
    Ok(section_sym)
}

/// The seed's sanity check: the patched build must see the original's
/// symbols where the original has them.
fn check_against_original(original: &Original, img: &Image, sym: &Sym, name: &str) -> Result<()> {
    let Some(sec) = sym_section(sym) else {
        return Ok(());
    };
    let section = img.name(sec).to_string();
    let patch_size = img.size(sec);
    match original.section_sizes.get(&section) {
        None => return Err(Error::SectionMissing { section }),
        Some(&orig_size) if orig_size != patch_size => {
            return Err(Error::SectionSizeMismatch {
                section,
                orig_size,
                patch_size,
            });
        }
        Some(_) => {}
    }
    if sym_type(sym) == elf::STT_SECTION {
        return Ok(());
    }
    let here = Place {
        section,
        offset: sym.st_value.get(LE).wrapping_sub(img.addr(sec)),
        size: sym.st_size.get(LE),
    };
    match original.symbols.get(base_name(name)) {
        Some(places) if !places.contains(&here) => Err(Error::SymbolMismatch {
            symbol: name.to_string(),
            orig_section: places[0].section.clone(),
            orig_offset: places[0].offset,
            orig_size: places[0].size,
            patch_section: here.section,
            patch_offset: here.offset,
            patch_size: here.size,
        }),
        _ => Ok(()),
    }
}

/// Whether the patch's thread-pointer offset for `sym` is the original's:
/// true when checked equal, false when the original does not say (no TLS
/// block or no symbol for it), an error when they differ.
fn check_tpoff(ctx: &Ctx, sym: &Sym, name: &str) -> Result<bool> {
    let (Some(patch_tls), Some(orig_tls)) = (ctx.tls, ctx.original.tls) else {
        return Ok(false);
    };
    let Some(&orig_value) = ctx.original.tls_values.get(base_name(name)) else {
        return Ok(false);
    };
    let patch_tpoff = patch_tls.tpoff(sym.st_value.get(LE));
    let orig_tpoff = orig_tls.tpoff(orig_value);
    if patch_tpoff != orig_tpoff {
        return Err(Error::TlsMismatch {
            symbol: name.to_string(),
            orig_tpoff,
            patch_tpoff,
        });
    }
    Ok(true)
}
