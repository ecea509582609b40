//! Relocation of the patch into a local image of its region. Every check
//! happens here, before a single byte reaches the patient: an unknown type
//! or a value that does not fit is an error naming the relocation.

use object::elf;

use crate::error::{Error, RelocFault, Result};
use crate::jump_table;
use crate::layout::Layout;
use crate::patch::{Patch, PatchReloc, Place};
use crate::resolve::Value;

/// Relocation types that read an address from a GOT slot (ours: the jump
/// table entry's slot).
pub fn needs_slot(rtype: u32) -> bool {
    kpatch_file::reloc::reloc(rtype).is_some_and(|r| r.reads_slot)
}

/// Builds the region image: section bytes, jump table, relocations applied.
/// The record at the start is left for the caller.
/// `target_bias` is the load bias of the object the patch targets (GOT
/// slots of the original are addressed through it).
pub fn build_image(
    patch: &Patch,
    layout: &Layout,
    base: u64,
    values: &[Value],
    target_bias: u64,
) -> Result<Vec<u8>> {
    let mut image = vec![0u8; layout.size as usize];
    for (i, s) in patch.sections.iter().enumerate() {
        if let Some(off) = layout.section_offset[i]
            && !s.nobits
        {
            let off = off as usize;
            image[off..off + s.data.len()].copy_from_slice(&s.data);
        }
    }
    for (&sym, &n) in &layout.slots {
        let off = (layout.jump_table + n as u64 * jump_table::ENTRY_SIZE) as usize;
        image[off..off + 16].copy_from_slice(&jump_table::entry(values[sym].addr));
    }
    for r in &patch.relocs {
        apply_one(patch, layout, base, values, target_bias, r, &mut image)?;
    }
    Ok(image)
}

fn fits_i32(v: i64) -> bool {
    i32::try_from(v).is_ok()
}

fn apply_one(
    patch: &Patch,
    layout: &Layout,
    base: u64,
    values: &[Value],
    target_bias: u64,
    r: &PatchReloc,
    image: &mut [u8],
) -> Result<()> {
    let sec = &patch.sections[r.section];
    let err = |why: String| {
        Error::Relocation(Box::new(RelocFault {
            patch: patch.display(),
            section: sec.name.clone(),
            offset: r.offset,
            rtype: kpatch_file::reloc::reloc_name(r.rtype),
            symbol: patch.symbols[r.symbol].name.clone(),
            why,
        }))
    };
    let sec_off = layout.section_offset[r.section].expect("relocs only for loaded sections");
    let width = match kpatch_file::reloc::reloc(r.rtype) {
        Some(k) if k.width == 0 => return Ok(()),
        Some(k) => u64::from(k.width),
        None => return Err(err("unsupported relocation type".into())),
    };
    if r.offset.checked_add(width).is_none_or(|end| end > sec.size) {
        return Err(err(format!("outside the {}-byte section", sec.size)));
    }
    if sec.nobits {
        return Err(err("applies to a section without contents".into()));
    }
    let at = (sec_off + r.offset) as usize;
    let p = base + sec_off + r.offset;
    let sym = &patch.symbols[r.symbol];
    let v = values[r.symbol];
    let s = v.addr;
    let a = r.addend;
    // Start of the symbol's jump table entry; its address slot is 8 further.
    let entry = || {
        layout
            .slots
            .get(&r.symbol)
            .map(|&n| base + layout.jump_table + n as u64 * jump_table::ENTRY_SIZE)
    };
    let slot = || entry().map(|e| e + jump_table::SLOT_OFFSET);
    let put32 =
        |image: &mut [u8], x: i64| image[at..at + 4].copy_from_slice(&(x as i32).to_le_bytes());
    let rel = |target: u64| (target.wrapping_add(a as u64)).wrapping_sub(p) as i64;
    match r.rtype {
        elf::R_X86_64_64 => {
            image[at..at + 8].copy_from_slice(&s.wrapping_add(a as u64).to_le_bytes());
        }
        elf::R_X86_64_PC64 => {
            image[at..at + 8].copy_from_slice(&rel(s).to_le_bytes());
        }
        elf::R_X86_64_PC32 | elf::R_X86_64_PLT32 => {
            let mut x = rel(s);
            if !fits_i32(x)
                && v.imported
                && sym.kind != elf::STT_OBJECT
                && v.kind != elf::STT_OBJECT
            {
                // A far function: call its jump table entry instead.
                let entry =
                    entry().ok_or_else(|| err("far target without a jump table entry".into()))?;
                x = rel(entry);
            }
            if !fits_i32(x) {
                return Err(err(format!(
                    "target {s:#x} is out of 32-bit reach of {p:#x}"
                )));
            }
            put32(image, x);
        }
        elf::R_X86_64_32 => {
            let x = s.wrapping_add(a as u64);
            if x > u64::from(u32::MAX) {
                return Err(err(format!("value {x:#x} does not fit 32 bits")));
            }
            put32(image, x as i64);
        }
        elf::R_X86_64_32S => {
            let x = s.wrapping_add(a as u64) as i64;
            if !fits_i32(x) {
                return Err(err(format!("value {x:#x} does not fit signed 32 bits")));
            }
            put32(image, x);
        }
        elf::R_X86_64_GOTPCRELX | elf::R_X86_64_REX_GOTPCRELX
            if at >= 2 && image[at - 2] == 0x8b && fits_i32(rel(s)) && sym.kind != elf::STT_TLS =>
        {
            // mov foo@GOTPCREL(%rip), %reg -> lea foo(%rip), %reg: the target is near.
            image[at - 2] = 0x8d;
            put32(image, rel(s));
        }
        elf::R_X86_64_GOTTPOFF => {
            // kpatch_strip --rel-fixup put the link-time address of the
            // original's own GOT slot for this thread-local (the dynamic
            // linker filled it with the TP offset) in the addend; the field
            // is relative to the end of the 4-byte displacement.
            if sym.kind != elf::STT_TLS {
                return Err(err("symbol is not thread-local".into()));
            }
            let slot = target_bias.wrapping_add(a as u64);
            let x = slot.wrapping_sub(p + 4) as i64;
            if !fits_i32(x) {
                return Err(err(format!("GOT slot {slot:#x} out of reach")));
            }
            put32(image, x);
        }
        elf::R_X86_64_GOTPCREL | elf::R_X86_64_GOTPCRELX | elf::R_X86_64_REX_GOTPCRELX => {
            let x = rel(slot().ok_or_else(|| err("no jump table slot".into()))?);
            if !fits_i32(x) {
                return Err(err("jump table out of reach".into()));
            }
            put32(image, x);
        }
        elf::R_X86_64_TPOFF32 => {
            if v.kind != elf::STT_TLS || v.imported {
                return Err(err("symbol is not a thread-local of the target".into()));
            }
            let x = s.wrapping_add(a as u64) as i64;
            if !fits_i32(x) {
                return Err(err(format!("offset {x:#x} does not fit 32 bits")));
            }
            put32(image, x);
        }
        elf::R_X86_64_TPOFF64 => {
            if v.kind != elf::STT_TLS || v.imported {
                return Err(err("symbol is not a thread-local of the target".into()));
            }
            image[at..at + 8].copy_from_slice(&s.wrapping_add(a as u64).to_le_bytes());
        }
        _ => return Err(err("unsupported relocation type".into())),
    }
    if sym.place == Place::Common {
        return Err(err("common symbol".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout;
    use crate::patch::{PatchSection, PatchSymbol};

    const BASE: u64 = 0x5555_0000_0000;

    fn section(name: &str, data: Vec<u8>) -> PatchSection {
        PatchSection {
            name: name.into(),
            nobits: false,
            size: data.len() as u64,
            align: 16,
            addr: 0,
            data,
        }
    }

    fn symbol(name: &str, place: Place, kind: u8) -> PatchSymbol {
        PatchSymbol {
            name: name.into(),
            version: None,
            place,
            value: 0,
            size: 0,
            kind,
            weak: false,
        }
    }

    /// `.text` of the target (index 1), `.kpatch.text` (index 2) holding
    /// `code`; symbols: null, `far_fn` (undefined), `near_var` (in `.text`).
    fn patch(code: Vec<u8>, relocs: Vec<(u64, u32, usize, i64)>) -> Patch {
        let sections = vec![
            section("", vec![]),
            PatchSection {
                nobits: true,
                data: vec![],
                ..section(".text", vec![0; 0x100])
            },
            section(".kpatch.text", code),
        ];
        Patch {
            path: "t.kpatch".into(),
            header: kpatch_file::KpatchFile::parse(
                &kpatch_file::build(
                    b"",
                    &kpatch_file::MakeOptions {
                        build_id: "ab".into(),
                        ..Default::default()
                    },
                )
                .unwrap(),
            )
            .unwrap()
            .header,
            header_bytes: vec![0; 688],
            digest: 0,
            sections,
            symbols: vec![
                symbol("", Place::Undefined, elf::STT_NOTYPE),
                symbol("far_fn", Place::Undefined, elf::STT_FUNC),
                symbol("near_var", Place::Section(1), elf::STT_OBJECT),
            ],
            relocs: relocs
                .into_iter()
                .map(|(offset, rtype, symbol, addend)| PatchReloc {
                    section: 2,
                    offset,
                    rtype,
                    symbol,
                    addend,
                })
                .collect(),
        }
    }

    fn values() -> Vec<Value> {
        vec![
            Value {
                addr: 0,
                imported: false,
                kind: elf::STT_NOTYPE,
            },
            // A libc function far beyond rel32 reach of the region.
            Value {
                addr: 0x7f00_0000_1000,
                imported: true,
                kind: elf::STT_FUNC,
            },
            // A variable of the target, near.
            Value {
                addr: BASE - 0x1000,
                imported: false,
                kind: elf::STT_OBJECT,
            },
        ]
    }

    fn rel32(image: &[u8], at: usize) -> i64 {
        i64::from(i32::from_le_bytes(image[at..at + 4].try_into().unwrap()))
    }

    #[test]
    fn far_calls_go_through_the_jump_table_and_got_loads_through_its_slot() {
        // call far_fn; mov far_fn@GOTPCREL(%rip), %rax
        let code = vec![0xe8, 0, 0, 0, 0, 0x48, 0x8b, 0x05, 0, 0, 0, 0];
        let p = patch(
            code,
            vec![
                (1, elf::R_X86_64_PLT32, 1, -4),
                (8, elf::R_X86_64_GOTPCREL, 1, -4),
            ],
        );
        let l = layout::plan(&p);
        let image = build_image(&p, &l, BASE, &values(), 0).unwrap();
        let text = l.section_offset[2].unwrap() as usize;
        let entry = BASE + l.jump_table + 16 * l.slots[&1] as u64;
        let call_end = BASE + text as u64 + 5;
        assert_eq!(call_end as i64 + rel32(&image, text + 1), entry as i64);
        let load_end = BASE + text as u64 + 12;
        assert_eq!(
            load_end as i64 + rel32(&image, text + 8),
            (entry + 8) as i64
        );
        let e = (entry - BASE) as usize;
        assert_eq!(&image[e..e + 2], &[0xff, 0x25]);
        assert_eq!(&image[e + 8..e + 16], &0x7f00_0000_1000u64.to_le_bytes());
    }

    #[test]
    fn near_gotpcrelx_mov_becomes_lea() {
        // mov near_var@GOTPCREL(%rip), %rax
        let p = patch(
            vec![0x48, 0x8b, 0x05, 0, 0, 0, 0],
            vec![(3, elf::R_X86_64_REX_GOTPCRELX, 2, -4)],
        );
        let l = layout::plan(&p);
        let image = build_image(&p, &l, BASE, &values(), 0).unwrap();
        let text = l.section_offset[2].unwrap() as usize;
        assert_eq!(image[text + 1], 0x8d, "lea");
        let end = BASE + text as u64 + 7;
        assert_eq!(end as i64 + rel32(&image, text + 3), (BASE - 0x1000) as i64);
    }

    #[test]
    fn refusals_name_the_relocation_before_anything_is_written() {
        // R_X86_64_32 of an address above 4 GiB, an unknown type, and a
        // relocation past the end of its section.
        for (rel, why) in [
            ((0, elf::R_X86_64_32, 1, 0), "does not fit 32 bits"),
            (
                (0, elf::R_X86_64_GOT32, 1, 0),
                "unsupported relocation type",
            ),
            ((2, elf::R_X86_64_64, 1, 0), "outside the"),
        ] {
            let p = patch(vec![0; 8], vec![rel]);
            let l = layout::plan(&p);
            let e = build_image(&p, &l, BASE, &values(), 0).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(why) && msg.contains("far_fn"), "{msg}");
        }
    }
}
