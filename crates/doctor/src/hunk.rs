//! Hunks: the 5-byte `jmp rel32` written at the entry of each replaced
//! function (after its `endbr64`, which stays so indirect calls under CET
//! still land on a valid target).

use kpatch_file::InfoEntry;

use crate::error::{Error, Result};
use crate::record::SavedHunk;

pub const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];
pub const JMP_LEN: u32 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    pub function: String,
    /// Where the jump is written.
    pub addr: u64,
    /// Where it jumps.
    pub target: u64,
    /// Original bytes it replaces.
    pub saved: Vec<u8>,
    /// The jump itself.
    pub bytes: [u8; 5],
}

impl Hunk {
    pub fn saved_hunk(&self) -> SavedHunk {
        SavedHunk {
            addr: self.addr,
            target: self.target,
            saved: self.saved.clone(),
        }
    }
}

pub fn jmp(from: u64, to: u64) -> Option<[u8; 5]> {
    let rel = i32::try_from(to.wrapping_sub(from + 5) as i64).ok()?;
    let mut b = [0xe9, 0, 0, 0, 0];
    b[1..].copy_from_slice(&rel.to_le_bytes());
    Some(b)
}

/// Plans the hunk for one info entry, given the first bytes of the original
/// function (at least 9). `None` for a new function (nothing to redirect).
pub fn plan(entry: &InfoEntry, function: &str, head: &[u8]) -> Result<Option<Hunk>> {
    if entry.is_new_function() {
        return Ok(None);
    }
    let skip = if head.starts_with(&ENDBR64) { 4 } else { 0 };
    let need = skip as u32 + JMP_LEN;
    if entry.dlen < need {
        return Err(Error::FunctionTooShort {
            function: function.to_string(),
            len: entry.dlen,
            need,
        });
    }
    let addr = entry.daddr + skip;
    let bytes = jmp(addr, entry.saddr).ok_or_else(|| Error::JumpTooFar {
        function: function.to_string(),
        from: addr,
        to: entry.saddr,
    })?;
    Ok(Some(Hunk {
        function: function.to_string(),
        addr,
        target: entry.saddr,
        saved: head[skip as usize..skip as usize + JMP_LEN as usize].to_vec(),
        bytes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dlen: u32) -> InfoEntry {
        InfoEntry {
            daddr: 0x1000,
            saddr: 0x2000,
            dlen,
            slen: 10,
            ..Default::default()
        }
    }

    #[test]
    fn jump_goes_after_endbr64() {
        let head = [0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0x48, 0x89, 0xe5, 0x90];
        let h = plan(&entry(20), "f", &head).unwrap().unwrap();
        assert_eq!(h.addr, 0x1004);
        assert_eq!(h.saved, [0x55, 0x48, 0x89, 0xe5, 0x90]);
        assert_eq!(h.bytes[0], 0xe9);
        let rel = i32::from_le_bytes(h.bytes[1..].try_into().unwrap());
        assert_eq!(0x1004 + 5 + rel as u64, 0x2000);
    }

    #[test]
    fn short_functions_are_refused_by_name() {
        let head = [0xf3, 0x0f, 0x1e, 0xfa, 0xc3, 0, 0, 0, 0];
        let e = plan(&entry(5), "tiny", &head).unwrap_err();
        assert!(e.to_string().contains("`tiny`"), "{e}");
        assert!(plan(&entry(4), "t", &[0xc3; 9]).is_err());
        assert!(plan(&entry(5), "t", &[0x55; 9]).unwrap().is_some());
    }

    #[test]
    fn new_functions_get_no_hunk() {
        let e = InfoEntry {
            saddr: 0x2000,
            slen: 4,
            ..Default::default()
        };
        assert_eq!(plan(&e, "n", &[0; 9]).unwrap(), None);
    }
}
