//! Where everything goes inside the patch region: the record (header copy,
//! saved bytes, info entries), then each `.kpatch.*` section at its
//! alignment, then the jump table. Offsets only; the base address is chosen
//! later by `region`.

use std::collections::BTreeMap;

use kpatch_file::INFO_ENTRY_SIZE;

use crate::jump_table;
use crate::patch::{Patch, Place};
use crate::record;
use crate::relocate::needs_slot;

pub const PAGE: u64 = 4096;

#[derive(Debug, Clone)]
pub struct Layout {
    /// Hunk/entry slots reserved in the record.
    pub record_cap: usize,
    /// Offset of each patch section in the region (None: not loaded).
    pub section_offset: Vec<Option<u64>>,
    pub jump_table: u64,
    /// Symbol index -> jump table entry number.
    pub slots: BTreeMap<usize, usize>,
    /// Whole region, page-rounded.
    pub size: u64,
}

fn align(v: u64, a: u64) -> u64 {
    v.div_ceil(a.max(1)) * a.max(1)
}

pub fn plan(patch: &Patch) -> Layout {
    let record_cap = patch
        .sections
        .iter()
        .filter(|s| s.name == ".kpatch.info")
        .map(|s| (s.size as usize) / INFO_ENTRY_SIZE)
        .sum::<usize>();
    let mut off = align(record::capacity(record_cap) as u64, 64);
    let mut section_offset = vec![None; patch.sections.len()];
    for (i, s) in patch.sections.iter().enumerate() {
        if s.is_patch() {
            off = align(off, s.align);
            section_offset[i] = Some(off);
            off += s.size;
        }
    }
    let mut slots = BTreeMap::new();
    for r in &patch.relocs {
        let sym = &patch.symbols[r.symbol];
        let tls = sym.kind == object::elf::STT_TLS;
        if !tls && (sym.place == Place::Undefined && !sym.name.is_empty() || needs_slot(r.rtype)) {
            let n = slots.len();
            slots.entry(r.symbol).or_insert(n);
        }
    }
    let jump_table = align(off, jump_table::ENTRY_SIZE);
    let end = jump_table + slots.len() as u64 * jump_table::ENTRY_SIZE;
    Layout {
        record_cap,
        section_offset,
        jump_table,
        slots,
        size: align(end, PAGE),
    }
}
