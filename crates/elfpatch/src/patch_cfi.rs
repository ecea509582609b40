//! `--strip`'s unwind step: the doctor's stack walker must step through
//! frames of applied patch code, so the patch carries the CFI of its own
//! functions and nothing else.
//!
//! From the linked binary's `.eh_frame` (and the `.rela.eh_frame` that
//! `ld -q` writes) it keeps the FDEs whose pc_begin is relocated against an
//! executable `.kpatch.*` section, plus the CIEs they use, packed together
//! and ended by a zero terminator. The section keeps its header slot and is
//! renamed `.kpatch.eh_frame` (its relocations `.rela.kpatch.eh_frame`), so
//! the doctor loads and relocates it like any other patch section and no
//! index moves. Fields that were 32-bit absolute (`-no-pie` C++ code) become
//! PC-relative, because the doctor places the patch anywhere within reach of
//! its code, and a personality routine in a library is out of 32-bit range:
//! that one is reached indirectly through the doctor's jump table slot
//! (`GOTPCREL`). It never decodes a value: the relocations say where
//! everything points.

use std::collections::{BTreeSet, HashMap};

use object::elf;

use crate::eh_frame::{self, Encoding, Entry, Record, pe};
use crate::error::Result;
use crate::image::{
    Image, KPATCH_PREFIX, LE, RELA_SIZE, Rela, Sym, rela_sym, rela_type, set_rela, sym_section,
};

pub const KPATCH_EH_FRAME: &str = ".kpatch.eh_frame";
pub const KPATCH_RELA_EH_FRAME: &str = ".rela.kpatch.eh_frame";

/// A relocation of a kept record.
#[derive(Clone, Copy)]
struct Field {
    /// Offset in `.eh_frame`.
    old: usize,
    /// Offset in `.kpatch.eh_frame`.
    new: usize,
    rela: Rela,
    /// The type the linker used; `rela` may have another.
    linked_type: u32,
}

/// Moves the patch's CFI into `.kpatch.eh_frame`. Returns `false` (and
/// leaves `img` alone) when the patch code has no FDE, e.g. when it was
/// built with `-fno-asynchronous-unwind-tables`.
pub(crate) fn keep_patch_cfi(img: &mut Image) -> Result<bool> {
    let Some(eh) = img
        .section_by_name(".eh_frame")
        .filter(|&i| matches!(img.sh_type(i), elf::SHT_PROGBITS | elf::SHT_X86_64_UNWIND))
    else {
        return Ok(false);
    };
    let Some(rela_sec) = (1..img.sections.len()).find(|&i| {
        img.sh_type(i) == elf::SHT_RELA && img.sections[i].sh_info.get(LE) as usize == eh
    }) else {
        return Ok(false);
    };
    let symtab = img.symtab()?;
    let syms = img.symbols(symtab)?;
    let code: BTreeSet<usize> = (1..img.sections.len())
        .filter(|&i| {
            img.name(i).starts_with(KPATCH_PREFIX)
                && img.flags(i) & u64::from(elf::SHF_EXECINSTR) != 0
        })
        .collect();
    let bytes = img.bytes(eh)?.to_vec();
    let base = img.addr(eh);
    let records = eh_frame::records(&bytes)?;
    let relas: HashMap<usize, Rela> = img
        .relas(rela_sec)?
        .into_iter()
        .filter(|r| rela_type(r) != elf::R_X86_64_NONE)
        .filter_map(|r| {
            let at = r.r_offset.get(LE).checked_sub(base)? as usize;
            (at < bytes.len()).then_some((at, r))
        })
        .collect();

    let in_patch_code = |at: usize| {
        relas.get(&at).is_some_and(|r| {
            syms.get(rela_sym(r) as usize)
                .and_then(sym_section)
                .is_some_and(|s| code.contains(&s))
        })
    };
    let fdes: BTreeSet<usize> = records
        .iter()
        .filter(|r| matches!(&r.entry, Entry::Fde(f) if in_patch_code(f.pc_begin)))
        .map(|r| r.offset)
        .collect();
    if fdes.is_empty() {
        return Ok(false);
    }
    let cies: BTreeSet<usize> = records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Fde(f) if fdes.contains(&r.offset) => Some(f.cie),
            _ => None,
        })
        .collect();
    let kept: Vec<&Record> = records
        .iter()
        .filter(|r| cies.contains(&r.offset) || fdes.contains(&r.offset))
        .collect();

    let (mut out, mut fields) = pack(&bytes, &kept, &relas);
    make_position_independent(&kept, &syms, &mut fields, &mut out);
    out.extend_from_slice(&[0; 4]);
    // Values on disk as if the section still sat at its linked address:
    // the doctor overwrites them, readelf and people read them.
    for f in &fields {
        write_value(&mut out, base, f);
    }
    let rela_bytes: Vec<u8> = fields
        .iter()
        .flat_map(|f| {
            let mut r = f.rela;
            r.r_offset.set(LE, base + f.new as u64);
            object::pod::bytes_of(&r).to_vec()
        })
        .collect();

    img.set_contents(eh, &out);
    img.set_contents(rela_sec, &rela_bytes);
    img.rename(&[(eh, KPATCH_EH_FRAME), (rela_sec, KPATCH_RELA_EH_FRAME)])?;
    let sh = &mut img.sections[eh];
    sh.sh_type.set(LE, elf::SHT_PROGBITS);
    sh.sh_flags.set(LE, u64::from(elf::SHF_ALLOC));
    sh.sh_addralign.set(LE, 8);
    sh.sh_entsize.set(LE, 0);
    let sh = &mut img.sections[rela_sec];
    sh.sh_link.set(LE, symtab as u32);
    sh.sh_entsize.set(LE, RELA_SIZE as u64);
    Ok(true)
}

/// Copies the kept records back to back, points each FDE at its CIE's new
/// place, and returns the relocations that move with them, in order.
fn pack(bytes: &[u8], kept: &[&Record], relas: &HashMap<usize, Rela>) -> (Vec<u8>, Vec<Field>) {
    let mut out = Vec::new();
    let mut moved_to = HashMap::new();
    let mut fields = Vec::new();
    for rec in kept {
        let new = out.len();
        moved_to.insert(rec.offset, new);
        out.extend_from_slice(&bytes[rec.offset..rec.offset + rec.len]);
        if let Entry::Fde(f) = &rec.entry {
            // The CIE comes first in the section, so it was placed already.
            let pointer = (new + 4 - moved_to[&f.cie]) as u32;
            out[new + 4..new + 8].copy_from_slice(&pointer.to_le_bytes());
        }
        let mut mine: Vec<Field> = relas
            .iter()
            .filter(|(at, _)| rec.contains(**at))
            .map(|(&old, &rela)| Field {
                old,
                new: new + (old - rec.offset),
                rela,
                linked_type: rela_type(&rela),
            })
            .collect();
        mine.sort_by_key(|f| f.new);
        fields.extend(mine);
    }
    (out, fields)
}

fn is_abs32(t: u32) -> bool {
    matches!(t, elf::R_X86_64_32 | elf::R_X86_64_32S)
}

/// Whether pointers with this encoding are 4-byte absolute values.
fn is_abs_sized4(enc: u8) -> bool {
    enc & (pe::APPLICATION | pe::INDIRECT) == pe::ABSPTR
        && matches!(enc & pe::FORMAT, pe::UDATA4 | pe::SDATA4)
}

/// Rewrites 32-bit absolute pointers to PC-relative ones. An encoding byte
/// changes only when every field that follows it carries an absolute
/// relocation, so no field is left meaning something else.
fn make_position_independent(kept: &[&Record], syms: &[Sym], fields: &mut [Field], out: &mut [u8]) {
    let by_old: HashMap<usize, usize> =
        fields.iter().enumerate().map(|(i, f)| (f.old, i)).collect();
    let new_of = |old: usize| {
        kept.iter()
            .scan(0, |new, r| {
                let here = *new;
                *new += r.len;
                Some((r, here))
            })
            .find(|(r, _)| r.contains(old))
            .map(|(r, new)| new + (old - r.offset))
    };
    let pcrel = pe::PCREL | pe::SDATA4;
    for rec in kept {
        let Entry::Cie(cie) = &rec.entry else {
            continue;
        };
        let users: Vec<&eh_frame::Fde> = kept
            .iter()
            .filter_map(|r| match &r.entry {
                Entry::Fde(f) if f.cie == rec.offset => Some(f),
                _ => None,
            })
            .collect();
        let mut convert = |enc: Encoding, at: Vec<usize>, to: &dyn Fn(&Sym) -> (u8, u32)| {
            let idx: Option<Vec<usize>> = at.iter().map(|a| by_old.get(a).copied()).collect();
            let Some(idx) = idx.filter(|v| !v.is_empty()) else {
                return;
            };
            if !is_abs_sized4(enc.value) || !idx.iter().all(|&i| is_abs32(fields[i].linked_type)) {
                return;
            }
            let mut new_enc = enc.value;
            for i in idx {
                let r = &mut fields[i].rela;
                let sym = syms.get(rela_sym(r) as usize);
                let (e, t) = sym.map_or((pcrel, elf::R_X86_64_PC32), to);
                set_rela(r, rela_sym(r), t);
                new_enc = e;
            }
            if let Some(at) = new_of(enc.at) {
                out[at] = new_enc;
            }
        };
        let direct = |_: &Sym| (pcrel, elf::R_X86_64_PC32);
        if let Some(enc) = cie.fde {
            convert(enc, users.iter().map(|f| f.pc_begin).collect(), &direct);
        }
        if let Some(enc) = cie.lsda {
            convert(enc, users.iter().filter_map(|f| f.lsda).collect(), &direct);
        }
        if let Some((enc, at)) = cie.personality {
            // A routine of another object is reachable only through a slot
            // the doctor fills: its jump table entry's.
            let personality = |sym: &Sym| {
                if sym.st_shndx.get(LE) == elf::SHN_UNDEF {
                    (pe::INDIRECT | pcrel, elf::R_X86_64_GOTPCREL)
                } else {
                    (pcrel, elf::R_X86_64_PC32)
                }
            };
            convert(enc, vec![at], &personality);
        }
    }
}

/// Writes the field's value for the section at its linked address `base`:
/// a moved PC-relative field gets its distance from the new place, a field
/// made PC-relative its old absolute value minus the new place, a jump
/// table slot (unknown until the doctor builds it) zero.
fn write_value(out: &mut [u8], base: u64, f: &Field) {
    let old_p = base + f.old as u64;
    let new_p = base + f.new as u64;
    let at = f.new;
    let width = if rela_type(&f.rela) == elf::R_X86_64_PC64 {
        8
    } else {
        4
    };
    if out.len() < at + width {
        return;
    }
    match (f.linked_type, rela_type(&f.rela)) {
        (_, elf::R_X86_64_GOTPCREL) => out[at..at + 4].fill(0),
        (linked, elf::R_X86_64_PC32) => {
            let old = u32::from_le_bytes(out[at..at + 4].try_into().expect("4 bytes"));
            let target = match linked {
                elf::R_X86_64_32 => u64::from(old),
                elf::R_X86_64_32S => old as i32 as i64 as u64,
                _ => old_p.wrapping_add(old as i32 as i64 as u64),
            };
            let v = target.wrapping_sub(new_p) as u32;
            out[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        (_, elf::R_X86_64_PC64) => {
            let old = u64::from_le_bytes(out[at..at + 8].try_into().expect("8 bytes"));
            let v = old.wrapping_add(old_p).wrapping_sub(new_p);
            out[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        _ => {}
    }
}

/// `--undo-link`'s part: the linked values in `.kpatch.eh_frame` are
/// distances between link-time addresses that no longer exist. Each field
/// is rewritten as if every section were loaded at 0, so that a reader of
/// the finished patch sees an FDE's range as offsets in its code section.
/// `syms` must already be section-relative. Running it twice changes
/// nothing.
pub(crate) fn settle_values(img: &mut Image, syms: &[Sym]) -> Result<()> {
    let Some(eh) = img.section_by_name(KPATCH_EH_FRAME) else {
        return Ok(());
    };
    let Some(rela_sec) = (1..img.sections.len()).find(|&i| {
        img.sh_type(i) == elf::SHT_RELA && img.sections[i].sh_info.get(LE) as usize == eh
    }) else {
        return Ok(());
    };
    let relas = img.relas(rela_sec)?;
    let out = img.bytes_mut(eh)?;
    for r in &relas {
        let at = r.r_offset.get(LE) as usize;
        let Some(field) = out.get_mut(at..at.saturating_add(4)) else {
            continue;
        };
        let sym = syms.get(rela_sym(r) as usize);
        let v = match (rela_type(r), sym.and_then(sym_section)) {
            (elf::R_X86_64_PC32, Some(_)) => sym
                .map_or(0, |s| s.st_value.get(LE))
                .wrapping_add(r.r_addend.get(LE) as u64)
                .wrapping_sub(at as u64) as u32,
            (elf::R_X86_64_PC32 | elf::R_X86_64_GOTPCREL, None) => 0,
            _ => continue,
        };
        field.copy_from_slice(&v.to_le_bytes());
    }
    Ok(())
}
