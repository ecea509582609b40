//! The static TLS block of an executable or library, computed from its TLS
//! sections (the patch ELF has no program headers left). On x86-64 the block
//! ends at the thread pointer, so a variable's thread-pointer offset is its
//! offset in the block minus the block's aligned size.

use object::elf;

use crate::image::Image;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TlsLayout {
    /// Link-time address of the block (the first TLS section).
    pub start: u64,
    pub size: u64,
    pub align: u64,
}

impl TlsLayout {
    pub fn of(img: &Image) -> Option<TlsLayout> {
        let tls: Vec<usize> = (1..img.sections.len())
            .filter(|&i| img.flags(i) & u64::from(elf::SHF_TLS) != 0)
            .collect();
        let start = tls.iter().map(|&i| img.addr(i)).min()?;
        let end = tls.iter().map(|&i| img.addr(i) + img.size(i)).max()?;
        let align = tls
            .iter()
            .map(|&i| img.sections[i].sh_addralign.get(crate::image::LE))
            .max()
            .unwrap_or(1)
            .max(1);
        Some(TlsLayout {
            start,
            size: end - start,
            align,
        })
    }

    /// Offset from the thread pointer of a TLS symbol whose `st_value` is
    /// `value` (its offset inside the block).
    pub fn tpoff(&self, value: u64) -> i64 {
        let block = self.size.div_ceil(self.align) * self.align;
        value as i64 - block as i64
    }
}
