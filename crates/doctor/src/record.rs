//! The record an applied patch leaves at the start of its region in the
//! patient, so that a later, separate `unpatch` or `info` can find it by
//! scanning the patient's anonymous mappings and undo it exactly.
//!
//! Layout (little-endian):
//! ```text
//!   0  the .kpatch header, 688 bytes (starts with "KPATCH1\0"; jmp_offset set;
//!      byte 10, padding in the file, is 1 once the patch is removed but the
//!      region still awaits unmapping: see `unpatch::release_regions`)
//! 688  "DOCTOR2\0"
//! 696  region length u64        704  patch digest u64
//! 712  applied-at (ns) u64      720  target object start u64
//! 728  hunk count u32           732  info entry count u32
//! 736  hunks offset u32         740  entries offset u32
//! 744  target object name, 128 bytes, NUL-terminated
//! 872  .kpatch.eh_frame offset in the region u32 (0: none)
//! 876  .kpatch.eh_frame length u32
//! 880  `__deregister_frame` of each of the patient's unwinders (two u64:
//!      libgcc_s, a program's static copy) that holds the patch's
//!      `.kpatch.eh_frame` (0: none)
//! hunks:   address u64, jump target u64, length u32, pad u32, saved bytes [16]
//! entries: relocated .kpatch.info entries, 48 bytes each
//! ```

use kpatch_file::{INFO_ENTRY_SIZE, InfoEntry};

use crate::error::{Error, Result};
use crate::maps::Mapping;
use crate::patient;

pub const MAGIC: &[u8; 8] = b"DOCTOR2\0";
/// Offset of the "retired" byte (header padding).
pub const RETIRED_OFF: usize = 10;
const NAME_OFF: usize = 744;
const NAME_LEN: usize = 128;
const EH_FRAME_OFF: usize = 872;
/// Offset of the `__deregister_frame` addresses.
pub const DEREGISTER_OFF: usize = 880;
/// How many unwinders one patch can be registered with.
pub const UNWINDERS: usize = 2;
pub const FIXED_LEN: usize = DEREGISTER_OFF + 8 * UNWINDERS;
pub const HUNK_LEN: usize = 40;
/// Longest original byte sequence a hunk may overwrite.
pub const SAVED_MAX: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedHunk {
    pub addr: u64,
    pub target: u64,
    /// The original bytes at `addr` that the jump replaced.
    pub saved: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Where the region starts in the patient.
    pub base: u64,
    pub region_len: u64,
    pub digest: u64,
    pub applied_ns: u64,
    pub object_start: u64,
    pub object: String,
    pub build_id: String,
    pub modulename: String,
    pub level: u32,
    /// Removed (jumps gone), region kept until nothing refers to it.
    pub retired: bool,
    pub hunks: Vec<SavedHunk>,
    pub entries: Vec<InfoEntry>,
    /// The patch code's unwind table: offset in the region and length
    /// (0, 0: the patch brought none).
    pub eh_frame: (u32, u32),
    /// `__deregister_frame` of the patient when the table is registered
    /// with the patient's own unwinder (C++ exceptions through patch code).
    pub deregister: [u64; UNWINDERS],
}

/// Bytes the record needs for up to `max_entries` hunks and entries.
pub fn capacity(max_entries: usize) -> usize {
    FIXED_LEN + max_entries * (HUNK_LEN + INFO_ENTRY_SIZE)
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4"))
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8"))
}
fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

impl Record {
    /// Writes the record into the start of a region image whose first 688
    /// bytes already hold the header copy. `cap` is the number of hunk/entry
    /// slots the layout reserved.
    pub fn encode_into(&self, image: &mut [u8], cap: usize) {
        assert!(self.hunks.len() <= cap && self.entries.len() <= cap);
        let put32 =
            |img: &mut [u8], o: usize, v: u32| img[o..o + 4].copy_from_slice(&v.to_le_bytes());
        let put64 =
            |img: &mut [u8], o: usize, v: u64| img[o..o + 8].copy_from_slice(&v.to_le_bytes());
        image[688..696].copy_from_slice(MAGIC);
        put64(image, 696, self.region_len);
        put64(image, 704, self.digest);
        put64(image, 712, self.applied_ns);
        put64(image, 720, self.object_start);
        put32(image, 728, self.hunks.len() as u32);
        put32(image, 732, self.entries.len() as u32);
        let hunks_off = FIXED_LEN;
        let entries_off = FIXED_LEN + cap * HUNK_LEN;
        put32(image, 736, hunks_off as u32);
        put32(image, 740, entries_off as u32);
        let name = self.object.as_bytes();
        let n = name.len().min(NAME_LEN - 1);
        image[NAME_OFF..NAME_OFF + NAME_LEN].fill(0);
        image[NAME_OFF..NAME_OFF + n].copy_from_slice(&name[..n]);
        put32(image, EH_FRAME_OFF, self.eh_frame.0);
        put32(image, EH_FRAME_OFF + 4, self.eh_frame.1);
        for (i, d) in self.deregister.iter().enumerate() {
            put64(image, DEREGISTER_OFF + 8 * i, *d);
        }
        for (i, h) in self.hunks.iter().enumerate() {
            let o = hunks_off + i * HUNK_LEN;
            put64(image, o, h.addr);
            put64(image, o + 8, h.target);
            put32(image, o + 16, h.saved.len() as u32);
            put32(image, o + 20, 0);
            image[o + 24..o + 24 + SAVED_MAX].fill(0);
            image[o + 24..o + 24 + h.saved.len()].copy_from_slice(&h.saved);
        }
        for (i, e) in self.entries.iter().enumerate() {
            let o = entries_off + i * INFO_ENTRY_SIZE;
            image[o..o + INFO_ENTRY_SIZE].copy_from_slice(&e.to_bytes());
        }
    }

    /// Decodes a record from the first bytes of a region (at least the
    /// fixed part; `read_more` fetches the variable part).
    pub fn decode(
        pid: i32,
        base: u64,
        head: &[u8],
        read_more: impl Fn(u64, &mut [u8]) -> Result<()>,
    ) -> Result<Record> {
        let bad = |why: &str| Error::BadRecord {
            pid,
            addr: base,
            why: why.to_string(),
        };
        if head.len() < FIXED_LEN || &head[..8] != kpatch_file::MAGIC || &head[688..696] != MAGIC {
            return Err(bad("no header"));
        }
        let region_len = u64_at(head, 696);
        let n_hunks = u32_at(head, 728) as usize;
        let n_entries = u32_at(head, 732) as usize;
        let hunks_off = u32_at(head, 736) as usize;
        let entries_off = u32_at(head, 740) as usize;
        let end = (hunks_off + n_hunks * HUNK_LEN).max(entries_off + n_entries * INFO_ENTRY_SIZE);
        if end as u64 > region_len || n_hunks > 1 << 16 || n_entries > 1 << 16 {
            return Err(bad("counts exceed the region"));
        }
        let (eh_off, eh_len) = (u32_at(head, EH_FRAME_OFF), u32_at(head, EH_FRAME_OFF + 4));
        if u64::from(eh_off) + u64::from(eh_len) > region_len {
            return Err(bad(".kpatch.eh_frame outside the region"));
        }
        let mut body = vec![0u8; end];
        read_more(base, &mut body)?;
        let mut hunks = Vec::with_capacity(n_hunks);
        for i in 0..n_hunks {
            let o = hunks_off + i * HUNK_LEN;
            let len = u32_at(&body, o + 16) as usize;
            if len > SAVED_MAX {
                return Err(bad("hunk longer than 16 bytes"));
            }
            hunks.push(SavedHunk {
                addr: u64_at(&body, o),
                target: u64_at(&body, o + 8),
                saved: body[o + 24..o + 24 + len].to_vec(),
            });
        }
        let entries = (0..n_entries)
            .map(|i| {
                let o = entries_off + i * INFO_ENTRY_SIZE;
                InfoEntry::parse(body[o..o + INFO_ENTRY_SIZE].try_into().expect("48"))
            })
            .collect();
        Ok(Record {
            base,
            region_len,
            digest: u64_at(head, 704),
            applied_ns: u64_at(head, 712),
            object_start: u64_at(head, 720),
            object: cstr(&head[NAME_OFF..NAME_OFF + NAME_LEN]),
            build_id: cstr(&head[80..336]),
            modulename: cstr(&head[16..80]),
            level: u32_at(head, 376),
            retired: head[RETIRED_OFF] != 0,
            hunks,
            entries,
            eh_frame: (eh_off, eh_len),
            deregister: std::array::from_fn(|i| u64_at(head, DEREGISTER_OFF + 8 * i)),
        })
    }
}

/// Every applied patch in `pid`, oldest first.
pub fn scan(pid: i32, maps: &[Mapping]) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    for m in maps {
        if !m.anonymous() || !m.readable() || m.end - m.start < FIXED_LEN as u64 {
            continue;
        }
        let mut magic = [0u8; 8];
        if patient::read_memory(pid, m.start, &mut magic).is_err() || &magic != kpatch_file::MAGIC {
            continue;
        }
        let mut head = vec![0u8; FIXED_LEN];
        patient::read_memory(pid, m.start, &mut head)?;
        if &head[688..696] != MAGIC {
            continue;
        }
        out.push(Record::decode(pid, m.start, &head, |a, b| {
            patient::read_memory(pid, a, b)
        })?);
    }
    out.sort_by_key(|r| r.applied_ns);
    Ok(out)
}

/// Names of the functions a record's patch brought, read from its region
/// (the `.kpatch.strtab` strings its info entries point at).
pub fn function_names(pid: i32, r: &Record) -> Vec<String> {
    r.entries
        .iter()
        .map(|e| {
            let mut buf = [0u8; 256];
            let in_region = e.symstr >= r.base && e.symstr < r.base + r.region_len;
            let len = (r.base + r.region_len).saturating_sub(e.symstr).min(256) as usize;
            if in_region && patient::read_memory(pid, e.symstr, &mut buf[..len]).is_ok() {
                let end = buf[..len].iter().position(|&b| b == 0).unwrap_or(len);
                let n = String::from_utf8_lossy(&buf[..end]).into_owned();
                if !n.is_empty() {
                    return n.strip_suffix(".kpatch").map(str::to_string).unwrap_or(n);
                }
            }
            format!("function at {:#x}", e.daddr)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let cap = 3;
        let mut image = vec![0u8; capacity(cap) + 64];
        image[..8].copy_from_slice(kpatch_file::MAGIC);
        image[80..84].copy_from_slice(b"abcd");
        image[376..380].copy_from_slice(&2u32.to_le_bytes());
        let r = Record {
            base: 0x7000_0000,
            region_len: image.len() as u64,
            digest: 42,
            applied_ns: 7,
            object_start: 0x5555_0000,
            object: "/tmp/foo".into(),
            build_id: "abcd".into(),
            modulename: String::new(),
            level: 2,
            retired: false,
            hunks: vec![SavedHunk {
                addr: 0x5555_1139,
                target: 0x7000_1000,
                saved: vec![0x55, 0x48, 0x89, 0xe5, 0x48],
            }],
            entries: vec![InfoEntry {
                daddr: 0x5555_1139,
                saddr: 0x7000_1000,
                dlen: 26,
                slen: 30,
                ..Default::default()
            }],
            eh_frame: (0x400, 0x58),
            deregister: [0x7f00_1234_5678, 0],
        };
        r.encode_into(&mut image, cap);
        let back = Record::decode(1, r.base, &image[..FIXED_LEN], |_, b| {
            b.copy_from_slice(&image[..b.len()]);
            Ok(())
        })
        .unwrap();
        assert_eq!(back, r);
    }
}
