//! What `--rel-fixup` needs to know about the original binary: where its
//! symbols sit (section name + offset), how large its sections are, its TLS
//! block, and which GOT slots its dynamic linker fills with TLS offsets.

use std::collections::HashMap;

use object::elf;

use crate::error::Result;
use crate::image::{Image, LE, rela_sym, rela_type, sym_section, sym_type};
use crate::tls::TlsLayout;

/// A symbol's place, as the doctor will find it in the target object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Place {
    pub section: String,
    pub offset: u64,
    pub size: u64,
}

pub(crate) struct Original {
    /// Section name -> size, for every section with a name.
    pub section_sizes: HashMap<String, u64>,
    /// Base symbol name (before any `@`) -> every place it is defined
    /// (local symbols may repeat across translation units).
    pub symbols: HashMap<String, Vec<Place>>,
    /// Base name of a TLS symbol -> its offset in the TLS block.
    pub tls_values: HashMap<String, u64>,
    pub tls: Option<TlsLayout>,
    /// Base symbol name -> address of the GOT slot that `R_X86_64_TPOFF64`
    /// fills with its thread-pointer offset.
    pub tpoff_slots: HashMap<String, u64>,
    /// The same for `R_X86_64_TPOFF64` without a symbol (gcc's file-static
    /// `__thread` of a shared library in the initial-exec model): offset in
    /// the object's TLS block (the addend) -> GOT slot address.
    pub tpoff_slots_by_offset: HashMap<u64, u64>,
    /// IFUNC resolver address -> the `.plt` stub that jumps through the
    /// slot its `R_X86_64_IRELATIVE` fills (static executables, where every
    /// IFUNC is local and reached only through such a stub).
    pub ifunc_stubs: HashMap<u64, Place>,
}

pub(crate) fn base_name(name: &str) -> &str {
    name.split('@').next().unwrap_or(name)
}

impl Original {
    pub fn read(data: &[u8]) -> Result<Original> {
        let img = Image::parse(data.to_vec())?;
        let section_sizes = (1..img.sections.len())
            .map(|i| (img.name(i).to_string(), img.size(i)))
            .collect();
        let mut symbols: HashMap<String, Vec<Place>> = HashMap::new();
        let mut tls_values = HashMap::new();
        // A stripped original still has .dynsym; use every table there is.
        for tab in (0..img.sections.len())
            .filter(|&i| matches!(img.sh_type(i), elf::SHT_SYMTAB | elf::SHT_DYNSYM))
        {
            for sym in img.symbols(tab)? {
                let Some(sec) = sym_section(&sym) else {
                    continue;
                };
                if sec >= img.sections.len() || sym_type(&sym) == elf::STT_SECTION {
                    continue;
                }
                let name = img.symbol_name(tab, &sym);
                if name.is_empty() {
                    continue;
                }
                let base = base_name(&name).to_string();
                let value = sym.st_value.get(LE);
                if sym_type(&sym) == elf::STT_TLS {
                    tls_values.insert(base, value);
                    continue;
                }
                let place = Place {
                    section: img.name(sec).to_string(),
                    offset: value.wrapping_sub(img.addr(sec)),
                    size: sym.st_size.get(LE),
                };
                let places = symbols.entry(base).or_default();
                if !places.contains(&place) {
                    places.push(place);
                }
            }
        }
        let tls = TlsLayout::of(&img);
        let (tpoff_slots, tpoff_slots_by_offset) = tpoff_slots(&img)?;
        let ifunc_stubs = ifunc_stubs(&img)?;
        Ok(Original {
            section_sizes,
            symbols,
            tls_values,
            tls,
            tpoff_slots,
            tpoff_slots_by_offset,
            ifunc_stubs,
        })
    }
}

type TpoffSlots = (HashMap<String, u64>, HashMap<u64, u64>);

fn tpoff_slots(img: &Image) -> Result<TpoffSlots> {
    let mut slots = HashMap::new();
    let mut by_offset = HashMap::new();
    for i in 0..img.sections.len() {
        let linked = img.sections[i].sh_link.get(LE) as usize;
        if img.sh_type(i) != elf::SHT_RELA
            || img.flags(i) & u64::from(elf::SHF_ALLOC) == 0
            || linked >= img.sections.len()
            || img.sh_type(linked) != elf::SHT_DYNSYM
        {
            continue;
        }
        let dynsyms = img.symbols(linked)?;
        for r in img.relas(i)? {
            if rela_type(&r) != elf::R_X86_64_TPOFF64 {
                continue;
            }
            if rela_sym(&r) == 0 {
                by_offset.insert(r.r_addend.get(LE) as u64, r.r_offset.get(LE));
                continue;
            }
            if let Some(sym) = dynsyms.get(rela_sym(&r) as usize) {
                let name = img.symbol_name(linked, sym);
                if !name.is_empty() {
                    slots.insert(base_name(&name).to_string(), r.r_offset.get(LE));
                }
            }
        }
    }
    Ok((slots, by_offset))
}

fn ifunc_stubs(img: &Image) -> Result<HashMap<u64, Place>> {
    let mut resolver_by_slot = HashMap::new();
    for i in (1..img.sections.len()).filter(|&i| {
        img.sh_type(i) == elf::SHT_RELA && img.flags(i) & u64::from(elf::SHF_ALLOC) != 0
    }) {
        for r in img.relas(i)? {
            if rela_type(&r) == elf::R_X86_64_IRELATIVE {
                resolver_by_slot.insert(r.r_offset.get(LE), r.r_addend.get(LE) as u64);
            }
        }
    }
    let mut stubs = HashMap::new();
    let Some(plt) = img.section_by_name(".plt") else {
        return Ok(stubs);
    };
    if resolver_by_slot.is_empty() || img.sh_type(plt) == elf::SHT_NOBITS {
        return Ok(stubs);
    }
    let code = img.bytes(plt)?;
    let base = img.addr(plt);
    // `jmp *slot(%rip)`: ff 25 disp32, the slot relative to the next insn.
    for off in 0..code.len().saturating_sub(5) {
        if code[off..off + 2] != [0xff, 0x25] {
            continue;
        }
        let disp = i32::from_le_bytes(code[off + 2..off + 6].try_into().expect("4 bytes"));
        let slot = (base + off as u64 + 6).wrapping_add_signed(i64::from(disp));
        if let Some(&resolver) = resolver_by_slot.get(&slot) {
            stubs.entry(resolver).or_insert(Place {
                section: ".plt".to_string(),
                offset: off as u64,
                size: 0,
            });
        }
    }
    Ok(stubs)
}
