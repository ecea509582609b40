//! Just enough ELF reading to pick the binaries a patched build changed and
//! to name the original they patch: section names and the GNU BuildID note.

use std::path::Path;

use anyhow::{Context, Result, bail};

const SHT_NOTE: u32 = 7;
const SHT_NOBITS: u32 = 8;
const NT_GNU_BUILD_ID: u32 = 3;

/// The section table of a 64-bit little-endian ELF file.
pub struct ElfProbe {
    data: Vec<u8>,
    sections: Vec<Section>,
}

struct Section {
    name: String,
    kind: u32,
    offset: usize,
    size: usize,
}

fn u16_at(d: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(d: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(d: &[u8], off: usize) -> Option<usize> {
    let v = u64::from_le_bytes(d.get(off..off + 8)?.try_into().ok()?);
    usize::try_from(v).ok()
}

/// Whether the bytes start like an ELF file.
pub fn is_elf(head: &[u8]) -> bool {
    head.starts_with(b"\x7fELF")
}

impl ElfProbe {
    pub fn read(path: &Path) -> Result<ElfProbe> {
        let data =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        ElfProbe::parse(data).with_context(|| path.display().to_string())
    }

    pub fn parse(data: Vec<u8>) -> Result<ElfProbe> {
        if !is_elf(&data) {
            bail!("not an ELF file");
        }
        if data.get(4) != Some(&2) || data.get(5) != Some(&1) {
            bail!("not a 64-bit little-endian ELF file");
        }
        let truncated = || anyhow::anyhow!("truncated ELF section table");
        let shoff = u64_at(&data, 0x28).ok_or_else(truncated)?;
        let shentsize = usize::from(u16_at(&data, 0x3a).ok_or_else(truncated)?);
        let shnum = usize::from(u16_at(&data, 0x3c).ok_or_else(truncated)?);
        let shstrndx = usize::from(u16_at(&data, 0x3e).ok_or_else(truncated)?);
        let header = |i: usize| shoff + i * shentsize;
        let mut raw = Vec::with_capacity(shnum);
        for i in 0..shnum {
            let h = header(i);
            raw.push((
                u32_at(&data, h).ok_or_else(truncated)?,
                u32_at(&data, h + 4).ok_or_else(truncated)?,
                u64_at(&data, h + 0x18).ok_or_else(truncated)?,
                u64_at(&data, h + 0x20).ok_or_else(truncated)?,
            ));
        }
        let strtab_off = raw.get(shstrndx).map(|r| r.2).unwrap_or(0);
        let sections = raw
            .into_iter()
            .map(|(name, kind, offset, size)| Section {
                name: c_string(&data, strtab_off + name as usize),
                kind,
                offset,
                size,
            })
            .collect();
        Ok(ElfProbe { data, sections })
    }

    pub fn has_section(&self, name: &str) -> bool {
        self.sections.iter().any(|s| s.name == name)
    }

    /// Whether the section is there with its bytes: a separate debug file
    /// (`objcopy --only-keep-debug`) keeps every section header but turns
    /// the loaded ones into `SHT_NOBITS`.
    pub fn has_contents(&self, name: &str) -> bool {
        self.sections
            .iter()
            .any(|s| s.name == name && s.kind != SHT_NOBITS)
    }

    /// The GNU BuildID in lowercase hex, from any note section.
    pub fn build_id(&self) -> Option<String> {
        for s in self.sections.iter().filter(|s| s.kind == SHT_NOTE) {
            let notes = self.data.get(s.offset..s.offset.checked_add(s.size)?)?;
            let mut off = 0;
            while off + 12 <= notes.len() {
                let namesz = u32_at(notes, off)? as usize;
                let descsz = u32_at(notes, off + 4)? as usize;
                let kind = u32_at(notes, off + 8)?;
                let name_off = off + 12;
                let desc_off = name_off + namesz.next_multiple_of(4);
                let next = desc_off + descsz.next_multiple_of(4);
                let name = notes.get(name_off..name_off + namesz)?;
                if kind == NT_GNU_BUILD_ID && name == b"GNU\0" {
                    let desc = notes.get(desc_off..desc_off + descsz)?;
                    return Some(desc.iter().map(|b| format!("{b:02x}")).collect());
                }
                off = next;
            }
        }
        None
    }
}

fn c_string(data: &[u8], off: usize) -> String {
    let tail = data.get(off..).unwrap_or(&[]);
    let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
    String::from_utf8_lossy(&tail[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_executable() {
        let exe = std::env::current_exe().unwrap();
        let probe = ElfProbe::read(&exe).unwrap();
        assert!(probe.has_section(".text"));
        assert!(!probe.has_section(".kpatch.info"));
    }

    #[test]
    fn refuses_what_is_not_elf() {
        let err = ElfProbe::parse(b"#!/bin/sh\n".to_vec()).err().unwrap();
        assert!(err.to_string().contains("not an ELF"));
        assert!(ElfProbe::parse(b"\x7fELF\x02\x01".to_vec()).is_err());
    }
}
