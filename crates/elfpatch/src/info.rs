//! What a finished patch ELF's `.kpatch.info` promises, read back by name:
//! for the build side to warn about functions the doctor will refuse
//! before anyone tries to apply the patch.

use object::elf;

use crate::error::Result;
use crate::image::{Image, LE, cstr_at, rela_sym};

/// One `.kpatch.info` entry: the function's name and its two lengths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchedFunction {
    pub name: String,
    /// Length of the original function (0 for a function new in the patch).
    pub dlen: u32,
    /// Length of the patch code.
    pub slen: u32,
}

/// The entries of `.kpatch.info` in a patch ELF (after `--undo-link`), up to
/// the all-zero terminator. A name that cannot be found reads as `?`.
pub fn patched_functions(data: &[u8]) -> Result<Vec<PatchedFunction>> {
    let img = Image::parse(data.to_vec())?;
    let Some(info) = img.section_by_name(".kpatch.info") else {
        return Ok(Vec::new());
    };
    let symtab = img.symtab()?;
    let syms = img.symbols(symtab)?;
    let strtab = img.section_by_name(".kpatch.strtab");
    let mut names = std::collections::HashMap::new();
    for sec in (1..img.sections.len()).filter(|&i| {
        img.sh_type(i) == elf::SHT_RELA && img.sections[i].sh_info.get(LE) as usize == info
    }) {
        for r in img.relas(sec)? {
            let place = r.r_offset.get(LE).wrapping_sub(img.addr(info));
            let Some(sym) = syms.get(rela_sym(&r) as usize) else {
                continue;
            };
            let Some(sec) = strtab.filter(|&t| usize::from(sym.st_shndx.get(LE)) == t) else {
                continue;
            };
            let at = sym.st_value.get(LE).wrapping_sub(img.addr(sec)) as i64 + r.r_addend.get(LE);
            if let Ok(bytes) = img.bytes(sec)
                && (0..bytes.len() as i64).contains(&at)
            {
                names.insert(place, cstr_at(bytes, at as usize));
            }
        }
    }
    let bytes = img.bytes(info)?;
    let mut out = Vec::new();
    for (k, entry) in bytes.chunks_exact(kpatch_file::INFO_ENTRY_SIZE).enumerate() {
        let base = (k * kpatch_file::INFO_ENTRY_SIZE) as u64;
        let name = names.get(&(base + kpatch_file::InfoEntry::SYMSTR_OFF as u64));
        if name.is_none() && entry.iter().all(|&b| b == 0) {
            break;
        }
        let u32_at = |o: usize| u32::from_le_bytes(entry[o..o + 4].try_into().expect("4 bytes"));
        out.push(PatchedFunction {
            name: name.cloned().unwrap_or_else(|| "?".into()),
            dlen: u32_at(kpatch_file::InfoEntry::DLEN_OFF),
            slen: u32_at(kpatch_file::InfoEntry::SLEN_OFF),
        });
    }
    Ok(out)
}
