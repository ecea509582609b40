//! Unwind tables: for every code range we know, the `.eh_frame` that
//! describes it, with a sorted index of its FDEs.
//!
//! Tables are built from bytes the caller already has (a mapped file's
//! contents, the vDSO image read from the patient, a patch's own unwind
//! section), before the patient is stopped; only lookups happen while it is
//! held.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use gimli::{
    BaseAddresses, CieOrFde, EhFrame, EhFrameHdr, EhFrameOffset, LittleEndian, UnwindSection,
};
use object::{Object, ObjectSection, ObjectSegment, SegmentFlags};

use super::memory::Memory;

const PAGE: u64 = 4096;
const PF_X: u32 = 1;

/// Building a table failed; the object is named so an operator knows which
/// file's unwind information is at fault.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{object}: not a readable ELF file: {source}")]
    Elf {
        object: String,
        source: object::read::Error,
    },
    #[error("{object}: .eh_frame at {addr:#x}: {source}")]
    EhFrame {
        object: String,
        addr: u64,
        source: gimli::Error,
    },
    #[error("{object}: no executable PT_LOAD segment")]
    NoCode { object: String },
    #[error("{object}: code {start:#x}..{end:#x} overlaps {other}")]
    Overlap {
        object: String,
        start: u64,
        end: u64,
        other: String,
    },
    #[error("vDSO image at {start:#x}..{end:#x}: {reason}")]
    Vdso {
        start: u64,
        end: u64,
        reason: String,
    },
}

/// One FDE's code range and where it sits in the section. When the index
/// comes from `.eh_frame_hdr`, which lists start addresses only, `end` is an
/// upper bound (the next FDE's start) and the FDE itself has the last word.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FdeSpan {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) offset: usize,
}

/// The unwind information of one object (or one patch region), relocated to
/// its runtime addresses.
#[derive(Debug)]
pub(crate) struct ObjectTable {
    pub(crate) name: Arc<str>,
    eh_frame: Vec<u8>,
    eh_frame_addr: u64,
    code: Vec<Range<u64>>,
    fdes: Vec<FdeSpan>,
    /// The entry function's code when the entry point has no FDE, as in
    /// hand-written `_start`s without CFI: it never returns, so a frame
    /// there is the outermost one.
    entry_without_cfi: Option<Range<u64>>,
}

impl ObjectTable {
    /// `hdr` is the object's `.eh_frame_hdr` and its runtime address, if
    /// it has one: its sorted search table spares parsing every FDE.
    fn new(
        name: &str,
        code: Vec<Range<u64>>,
        eh_frame: Vec<u8>,
        eh_frame_addr: u64,
        hdr: Option<(&[u8], u64)>,
    ) -> Result<Self, TableError> {
        let mut table = ObjectTable {
            name: Arc::from(name),
            eh_frame,
            eh_frame_addr,
            code,
            fdes: Vec::new(),
            entry_without_cfi: None,
        };
        // A header that does not parse or point into this .eh_frame is
        // ignored: the section itself is the authority.
        match hdr.and_then(|(bytes, addr)| table.index_from_hdr(bytes, addr)) {
            Some(fdes) => table.fdes = fdes,
            None => {
                table.fdes = table.index().map_err(|source| TableError::EhFrame {
                    object: name.to_owned(),
                    addr: eh_frame_addr,
                    source,
                })?;
            }
        }
        Ok(table)
    }

    fn index_from_hdr(&self, bytes: &[u8], addr: u64) -> Option<Vec<FdeSpan>> {
        let bases = self.bases().set_eh_frame_hdr(addr);
        let hdr = EhFrameHdr::new(bytes, LittleEndian).parse(&bases, 8).ok()?;
        if hdr.eh_frame_ptr().pointer() != self.eh_frame_addr {
            return None;
        }
        let table = hdr.table()?;
        let mut entries = table.iter(&bases);
        let mut fdes = Vec::new();
        while let Some((start, fde)) = entries.next().ok()? {
            let offset = fde.pointer().checked_sub(self.eh_frame_addr)?;
            if offset >= self.eh_frame.len() as u64 {
                return None;
            }
            fdes.push(FdeSpan {
                start: start.pointer(),
                end: u64::MAX,
                offset: offset as usize,
            });
        }
        fdes.sort_by_key(|f| f.start);
        for i in 1..fdes.len() {
            fdes[i - 1].end = fdes[i].start;
        }
        Some(fdes)
    }

    pub(crate) fn section(&self) -> EhFrame<gimli::EndianSlice<'_, LittleEndian>> {
        let mut section = EhFrame::new(&self.eh_frame, LittleEndian);
        section.set_address_size(8);
        section
    }

    pub(crate) fn bases(&self) -> BaseAddresses {
        // x86-64 gcc emits pc-relative FDE addresses; the text base is only
        // there for the rare DW_EH_PE_textrel producer.
        let text = self.code.first().map_or(0, |r| r.start);
        BaseAddresses::default()
            .set_eh_frame(self.eh_frame_addr)
            .set_text(text)
    }

    fn index(&self) -> gimli::Result<Vec<FdeSpan>> {
        let section = self.section();
        let bases = self.bases();
        let mut cies = HashMap::new();
        let mut fdes = Vec::new();
        let mut entries = section.entries(&bases);
        while let Some(entry) = entries.next()? {
            let CieOrFde::Fde(partial) = entry else {
                continue;
            };
            let fde = partial.parse(|section, bases, offset: EhFrameOffset<usize>| {
                if let Some(cie) = cies.get(&offset.0) {
                    return Ok(Clone::clone(cie));
                }
                let cie = section.cie_from_offset(bases, offset)?;
                cies.insert(offset.0, cie.clone());
                Ok(cie)
            })?;
            if fde.len() == 0 {
                continue;
            }
            fdes.push(FdeSpan {
                start: fde.initial_address(),
                end: fde.initial_address().wrapping_add(fde.len()),
                offset: fde.offset(),
            });
        }
        fdes.sort_by_key(|f| f.start);
        Ok(fdes)
    }

    /// Whether an FDE really covers `pc` (an index span from `.eh_frame_hdr`
    /// is only an upper bound).
    pub(crate) fn covered(&self, pc: u64) -> bool {
        let Some(span) = self.fde_for(pc) else {
            return false;
        };
        let section = self.section();
        section
            .fde_from_offset(
                &self.bases(),
                EhFrameOffset(span.offset),
                EhFrame::cie_from_offset,
            )
            .is_ok_and(|fde| fde.contains(pc))
    }

    /// From the entry point up to the next FDE or the end of its segment.
    fn find_entry_without_cfi(&self, entry: u64) -> Option<Range<u64>> {
        if self.covered(entry) {
            return None;
        }
        let segment = self.code.iter().find(|r| r.contains(&entry))?;
        let next = self.fdes.partition_point(|f| f.start <= entry);
        let end = self
            .fdes
            .get(next)
            .map_or(segment.end, |f| f.start.min(segment.end));
        Some(entry..end)
    }

    /// Whether `pc` is in an entry function that has no CFI.
    pub(crate) fn in_entry_without_cfi(&self, pc: u64) -> bool {
        self.entry_without_cfi
            .as_ref()
            .is_some_and(|r| r.contains(&pc))
    }

    /// The FDE covering `pc`, if any.
    pub(crate) fn fde_for(&self, pc: u64) -> Option<FdeSpan> {
        let after = self.fdes.partition_point(|f| f.start <= pc);
        let fde = *self.fdes.get(after.checked_sub(1)?)?;
        (pc < fde.end).then_some(fde)
    }
}

/// A code range claimed by an object.
#[derive(Clone, Debug)]
struct Claim {
    range: Range<u64>,
    object: usize,
}

/// What the unwinder knows about a pc.
pub(crate) enum Lookup<'t> {
    /// No object claims this pc: anonymous memory or an object without a table.
    Unknown,
    /// A known object; `fde` is `None` when its `.eh_frame` does not cover the pc.
    Known {
        object: &'t ObjectTable,
        fde: Option<FdeSpan>,
    },
}

/// Unwind tables for every code range of one address space.
#[derive(Debug, Default)]
pub struct Tables {
    objects: Vec<ObjectTable>,
    claims: Vec<Claim>,
}

impl Tables {
    pub fn new() -> Self {
        Tables::default()
    }

    /// Adds an ELF object from its file contents, loaded at `load_bias`
    /// (runtime address = link-time address + bias). Its executable `PT_LOAD`
    /// segments become the code it claims; its `.eh_frame` section (if any)
    /// describes that code. An object without `.eh_frame` is still added, so
    /// that a pc inside it is reported as "no unwind info in <object>".
    pub fn add_elf(&mut self, name: &str, elf: &[u8], load_bias: u64) -> Result<(), TableError> {
        let file = object::File::parse(elf).map_err(|source| TableError::Elf {
            object: name.to_owned(),
            source,
        })?;
        let code: Vec<Range<u64>> = file
            .segments()
            .filter(|s| matches!(s.flags(), SegmentFlags::Elf { p_flags } if p_flags & PF_X != 0))
            .map(|s| {
                let start = s.address().wrapping_add(load_bias);
                start..start.wrapping_add(s.size())
            })
            .collect();
        if code.is_empty() {
            return Err(TableError::NoCode {
                object: name.to_owned(),
            });
        }
        let section = |wanted: &str| -> Result<Option<(&[u8], u64)>, TableError> {
            let Some(section) = file.section_by_name(wanted) else {
                return Ok(None);
            };
            let bytes = section.data().map_err(|source| TableError::Elf {
                object: name.to_owned(),
                source,
            })?;
            Ok(Some((bytes, section.address().wrapping_add(load_bias))))
        };
        let (bytes, addr) = section(".eh_frame")?.unwrap_or((&[], 0));
        let hdr = section(".eh_frame_hdr")?;
        let mut table = ObjectTable::new(name, code, bytes.to_vec(), addr, hdr)?;
        // Only an object that describes its code at all can vouch for a
        // gap at its entry point: in one without any FDE, every pc would
        // look like the entry function.
        if file.entry() != 0 && !table.fdes.is_empty() {
            table.entry_without_cfi =
                table.find_entry_without_cfi(file.entry().wrapping_add(load_bias));
        }
        self.insert(table)
    }

    /// Adds the vDSO, whose image exists only in the patient's memory: reads
    /// the `[vdso]` mapping `start..end` through `memory` and parses it as
    /// the ELF file it is.
    pub fn add_vdso(
        &mut self,
        memory: &dyn Memory,
        start: u64,
        end: u64,
    ) -> Result<(), TableError> {
        let vdso_error = |reason: String| TableError::Vdso { start, end, reason };
        let len = end
            .checked_sub(start)
            .filter(|len| *len > 0 && *len <= 1 << 24)
            .ok_or_else(|| vdso_error("implausible size".into()))?;
        let mut image = vec![0u8; len as usize];
        memory
            .read(start, &mut image)
            .map_err(|e| vdso_error(e.to_string()))?;
        let bias = load_bias(&image, start, 0)
            .ok_or_else(|| vdso_error("no PT_LOAD at offset 0".into()))?;
        self.add_elf("[vdso]", &image, bias)
    }

    /// Adds code that is not an ELF mapping, such as a patch region: `code` is
    /// its runtime range, `eh_frame` its unwind section relocated to run at
    /// `eh_frame_addr`.
    pub fn add_code(
        &mut self,
        name: &str,
        code: Range<u64>,
        eh_frame: Vec<u8>,
        eh_frame_addr: u64,
    ) -> Result<(), TableError> {
        self.insert(ObjectTable::new(
            name,
            vec![code],
            eh_frame,
            eh_frame_addr,
            None,
        )?)
    }

    /// Forgets every table added under `name` (an unpatched region); returns
    /// how many were removed.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.objects.len();
        self.objects.retain(|o| &*o.name != name);
        self.rebuild_claims();
        before - self.objects.len()
    }

    /// Name of the object whose code contains `pc`.
    pub fn object_at(&self, pc: u64) -> Option<&str> {
        self.claim(pc).map(|o| &*o.name)
    }

    pub(crate) fn object_name_at(&self, pc: u64) -> Option<Arc<str>> {
        self.claim(pc).map(|o| o.name.clone())
    }

    /// Number of FDEs indexed across all objects.
    pub fn fde_count(&self) -> usize {
        self.objects.iter().map(|o| o.fdes.len()).sum()
    }

    pub(crate) fn lookup(&self, pc: u64) -> Lookup<'_> {
        match self.claim(pc) {
            None => Lookup::Unknown,
            Some(object) => Lookup::Known {
                object,
                fde: object.fde_for(pc),
            },
        }
    }

    fn claim(&self, pc: u64) -> Option<&ObjectTable> {
        let after = self.claims.partition_point(|c| c.range.start <= pc);
        let claim = self.claims.get(after.checked_sub(1)?)?;
        claim
            .range
            .contains(&pc)
            .then(|| &self.objects[claim.object])
    }

    fn insert(&mut self, table: ObjectTable) -> Result<(), TableError> {
        for range in &table.code {
            if let Some(other) = self
                .claims
                .iter()
                .find(|c| c.range.start < range.end && range.start < c.range.end)
            {
                return Err(TableError::Overlap {
                    object: table.name.to_string(),
                    start: range.start,
                    end: range.end,
                    other: self.objects[other.object].name.to_string(),
                });
            }
        }
        self.objects.push(table);
        self.rebuild_claims();
        Ok(())
    }

    fn rebuild_claims(&mut self) {
        self.claims = self
            .objects
            .iter()
            .enumerate()
            .flat_map(|(object, t)| {
                t.code.iter().map(move |range| Claim {
                    range: range.clone(),
                    object,
                })
            })
            .filter(|c| !c.range.is_empty())
            .collect();
        self.claims.sort_by_key(|c| c.range.start);
    }
}

/// Load bias of an ELF object from one of its mappings: the mapping at
/// `map_start` maps the file from `map_offset`, so it holds the `PT_LOAD`
/// segment whose page-aligned file offset is `map_offset`.
pub fn load_bias(elf: &[u8], map_start: u64, map_offset: u64) -> Option<u64> {
    let file = object::File::parse(elf).ok()?;
    file.segments().find_map(|s| {
        let (offset, _) = s.file_range();
        (offset & !(PAGE - 1) == map_offset)
            .then(|| map_start.wrapping_sub(s.address() & !(PAGE - 1)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unwind::{MemoryError, Registers, UnwindError, unwind};

    const LIBC: &str = "/lib/x86_64-linux-gnu/libc.so.6";

    type Section<'a> = (&'a [u8], u64);

    fn libc_sections(elf: &[u8]) -> (Vec<Range<u64>>, Section<'_>, Section<'_>) {
        let file = object::File::parse(elf).unwrap();
        let get = |name: &str| {
            let s = file.section_by_name(name).unwrap();
            (s.data().unwrap(), s.address())
        };
        let code = file
            .segments()
            .filter(|s| matches!(s.flags(), SegmentFlags::Elf { p_flags } if p_flags & PF_X != 0))
            .map(|s| s.address()..s.address() + s.size())
            .collect();
        (code, get(".eh_frame"), get(".eh_frame_hdr"))
    }

    #[test]
    fn hdr_index_matches_a_full_parse_of_libc() {
        let elf = std::fs::read(LIBC).unwrap();
        let (code, (eh, eh_addr), hdr) = libc_sections(&elf);
        let fast = ObjectTable::new("libc", code.clone(), eh.to_vec(), eh_addr, Some(hdr)).unwrap();
        let full = ObjectTable::new("libc", code, eh.to_vec(), eh_addr, None).unwrap();
        assert!(full.fdes.len() > 1000, "{}", full.fdes.len());
        assert_eq!(fast.fdes.len(), full.fdes.len());
        for (a, b) in fast.fdes.iter().zip(&full.fdes) {
            assert_eq!((a.start, a.offset), (b.start, b.offset));
            assert!(a.end >= b.end);
        }
    }

    struct NoMemory;
    impl Memory for NoMemory {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
            Err(MemoryError {
                addr,
                len: buf.len(),
                reason: "none".into(),
            })
        }
    }

    /// A program without any unwind table (hand-written `_start`, no CFI):
    /// a pc at its entry point is not taken for an outermost frame, since
    /// nothing in it vouches for any frame; the walk fails.
    #[test]
    fn entry_without_cfi_counts_only_in_an_object_that_has_fdes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("start.c");
        let exe = dir.path().join("start");
        std::fs::write(
            &src,
            "void _start(void) { for (;;) __asm__ volatile(\"pause\"); }\n",
        )
        .unwrap();
        let ok = std::process::Command::new("gcc")
            .args([
                "-nostdlib",
                "-static",
                "-O2",
                "-fno-asynchronous-unwind-tables",
            ])
            .args(["-fno-unwind-tables", "-Wl,--no-eh-frame-hdr", "-o"])
            .arg(&exe)
            .arg(&src)
            .status()
            .unwrap();
        assert!(ok.success());
        let elf = std::fs::read(&exe).unwrap();
        let entry = object::File::parse(&*elf).unwrap().entry();
        let mut tables = Tables::new();
        tables.add_elf("start", &elf, 0).unwrap();
        assert_eq!(tables.fde_count(), 0);
        let regs = Registers {
            rip: entry,
            rsp: 0x1000,
            ..Registers::default()
        };
        let err = unwind(&regs, &NoMemory, &tables, 8).unwrap_err();
        assert!(
            matches!(err, UnwindError::NoFde { pc, .. } if pc == entry),
            "{err}"
        );
    }

    /// libc's code by link-time address, and an 8-byte stack at 0x1000
    /// holding a return address of 0 (the outermost frame).
    struct LibcAndStack<'a>(&'a [u8]);
    impl Memory for LibcAndStack<'_> {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
            if (0x1000..0x1008).contains(&addr) {
                buf.fill(0);
                return Ok(());
            }
            let file = object::File::parse(self.0).unwrap();
            for seg in file.segments() {
                let (off, size) = seg.file_range();
                if addr >= seg.address() && addr + buf.len() as u64 <= seg.address() + size {
                    let at = (off + addr - seg.address()) as usize;
                    buf.copy_from_slice(&self.0[at..at + buf.len()]);
                    return Ok(());
                }
            }
            Err(MemoryError {
                addr,
                len: buf.len(),
                reason: "unmapped".into(),
            })
        }
    }

    /// A thread stopped on the return of glibc's clone/clone3 syscall,
    /// where glibc leaves an FDE gap: the child (rax 0) is outermost, the
    /// parent unwinds with the row before the syscall.
    #[test]
    fn the_return_of_clone_is_unwound_for_parent_and_child() {
        let elf = std::fs::read(LIBC).unwrap();
        let mut tables = Tables::new();
        tables.add_elf("libc.so.6", &elf, 0).unwrap();
        let table = &tables.objects[0];
        let memory = LibcAndStack(&elf);
        let file = object::File::parse(&*elf).unwrap();
        let text = file.section_by_name(".text").unwrap();
        let code = text.data().unwrap();
        let returns: Vec<u64> = code
            .windows(5)
            .enumerate()
            .filter(|(_, w)| *w == [0x0f, 0x05, 0x48, 0x85, 0xc0])
            .map(|(i, _)| text.address() + i as u64 + 2)
            .filter(|&pc| !table.covered(pc) && table.covered(pc - 3))
            .collect();
        assert!(!returns.is_empty(), "clone/clone3 in libc");
        for pc in returns {
            for (rax, frames) in [(0, 1), (1234, 1)] {
                let regs = Registers {
                    rip: pc,
                    rsp: 0x1000,
                    rax,
                    ..Registers::default()
                };
                let walked = unwind(&regs, &memory, &tables, 8)
                    .unwrap_or_else(|e| panic!("pc {pc:#x} rax {rax}: {e}"));
                assert_eq!(walked.len(), frames, "{walked:?}");
                if rax != 0 {
                    // The parent's frame: CFA just above the return address.
                    assert_eq!(walked[0].cfa, Some(0x1008), "{walked:?}");
                }
            }
        }
    }

    #[test]
    fn a_gap_between_fdes_of_a_hdr_indexed_object_is_no_fde() {
        let elf = std::fs::read(LIBC).unwrap();
        let (code, (eh, eh_addr), _) = libc_sections(&elf);
        let full = ObjectTable::new("libc", code, eh.to_vec(), eh_addr, None).unwrap();
        let gap = full
            .fdes
            .windows(2)
            .find(|w| w[0].end < w[1].start)
            .map(|w| w[0].end)
            .expect("libc has a gap between two FDEs");
        let mut tables = Tables::new();
        tables.add_elf("libc.so.6", &elf, 0).unwrap();
        let regs = Registers {
            rip: gap,
            rsp: 0x1000,
            ..Registers::default()
        };
        let err = unwind(&regs, &NoMemory, &tables, 8).unwrap_err();
        assert!(
            matches!(err, UnwindError::NoFde { pc, .. } if pc == gap),
            "{err}"
        );
    }
}
