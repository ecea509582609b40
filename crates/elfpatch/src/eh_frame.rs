//! The layout of `.eh_frame` records (LSB "Exception Frames", x86-64 psABI):
//! where each CIE and FDE starts and ends, which CIE an FDE uses, and where
//! the pointer fields and their encoding bytes sit. Offsets only; no value
//! is decoded, because the linked bytes of a record that `--strip` moves
//! are rewritten from relocations, not trusted.

use crate::error::{Error, Result};

/// `DW_EH_PE_*` bits this module needs to name.
pub(crate) mod pe {
    pub const OMIT: u8 = 0xff;
    pub const FORMAT: u8 = 0x0f;
    pub const APPLICATION: u8 = 0x70;
    pub const INDIRECT: u8 = 0x80;
    pub const ABSPTR: u8 = 0x00;
    pub const UDATA2: u8 = 0x02;
    pub const UDATA4: u8 = 0x03;
    pub const UDATA8: u8 = 0x04;
    pub const SDATA2: u8 = 0x0a;
    pub const SDATA4: u8 = 0x0b;
    pub const SDATA8: u8 = 0x0c;
    pub const PCREL: u8 = 0x10;
}

/// One pointer-encoding byte of a CIE's augmentation data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Encoding {
    /// Offset of the encoding byte in the section.
    pub at: usize,
    pub value: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cie {
    /// Encoding of the FDEs' pc_begin/pc_range (`R`); absptr without one.
    pub fde: Option<Encoding>,
    /// Encoding of the FDEs' LSDA pointer (`L`).
    pub lsda: Option<Encoding>,
    /// Encoding of the personality pointer (`P`) and the pointer's offset.
    pub personality: Option<(Encoding, usize)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fde {
    /// Offset of the CIE this FDE uses.
    pub cie: usize,
    /// Offset of the pc_begin field.
    pub pc_begin: usize,
    /// Offset of the LSDA pointer, when its CIE says there is one.
    pub lsda: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    Cie(Cie),
    Fde(Fde),
}

/// A record: `offset..offset + len` covers its length field and contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub offset: usize,
    pub len: usize,
    pub entry: Entry,
}

impl Record {
    pub fn contains(&self, at: usize) -> bool {
        (self.offset..self.offset + self.len).contains(&at)
    }
}

/// Size in bytes of a pointer with this encoding; variable-length forms
/// (uleb128/sleb128) are not produced by GNU as and are refused.
pub(crate) fn pointer_size(enc: u8) -> Option<usize> {
    match enc & pe::FORMAT {
        pe::ABSPTR | pe::UDATA8 | pe::SDATA8 => Some(8),
        pe::UDATA4 | pe::SDATA4 => Some(4),
        pe::UDATA2 | pe::SDATA2 => Some(2),
        _ => None,
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Start of the record being read, for messages.
    record: usize,
}

impl Reader<'_> {
    fn fail(&self, what: impl Into<String>) -> Error {
        Error::UnwindInfo {
            offset: self.record,
            what: what.into(),
        }
    }

    fn u8(&mut self) -> Result<u8> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| self.fail("record runs past its end"))?;
        self.pos += 1;
        Ok(b)
    }

    fn leb(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.fail("LEB128 number longer than 64 bits"))
    }

    fn cstr(&mut self) -> Result<&[u8]> {
        let rest = self.bytes.get(self.pos..).unwrap_or(&[]);
        let n = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.fail("unterminated augmentation string"))?;
        self.pos += n + 1;
        Ok(&rest[..n])
    }

    fn skip(&mut self, n: usize) -> Result<()> {
        if self.pos + n > self.bytes.len() {
            return Err(self.fail("record runs past its end"));
        }
        self.pos += n;
        Ok(())
    }

    fn encoding(&mut self) -> Result<Encoding> {
        let at = self.pos;
        let value = self.u8()?;
        Ok(Encoding { at, value })
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Splits a section into its records, passing over zero terminators.
pub(crate) fn records(bytes: &[u8]) -> Result<Vec<Record>> {
    let mut out: Vec<Record> = Vec::new();
    let mut off = 0;
    while off + 4 <= bytes.len() {
        let fail = |what: &str| Error::UnwindInfo {
            offset: off,
            what: what.into(),
        };
        let length = u32_at(bytes, off).expect("bounds checked");
        if length == 0 {
            // A terminator (crtend's, or padding): an unwinder stops here,
            // but whatever follows may still be ours to find.
            off += 4;
            continue;
        }
        if length == u32::MAX {
            return Err(fail("64-bit DWARF record (not produced by GNU as)"));
        }
        let len = 4 + length as usize;
        if off + len > bytes.len() || length < 4 {
            return Err(fail("length runs past the section end"));
        }
        let id = u32_at(bytes, off + 4).expect("length >= 4");
        let mut r = Reader {
            bytes: &bytes[..off + len],
            pos: off + 8,
            record: off,
        };
        let entry = if id == 0 {
            Entry::Cie(cie(&mut r)?)
        } else {
            let cie_off = (off + 4)
                .checked_sub(id as usize)
                .ok_or_else(|| fail("CIE pointer points before the section"))?;
            let Some(Record {
                entry: Entry::Cie(c),
                ..
            }) = out.iter().find(|rec| rec.offset == cie_off)
            else {
                return Err(fail(&format!("CIE pointer names no CIE at {cie_off:#x}")));
            };
            Entry::Fde(fde(&mut r, c, cie_off)?)
        };
        out.push(Record {
            offset: off,
            len,
            entry,
        });
        off += len;
    }
    Ok(out)
}

fn cie(r: &mut Reader) -> Result<Cie> {
    let version = r.u8()?;
    if !matches!(version, 1 | 3) {
        return Err(r.fail(format!("CIE version {version}")));
    }
    let aug = r.cstr()?.to_vec();
    if aug.starts_with(b"eh") {
        r.skip(8)?;
    }
    r.leb()?; // code alignment
    r.leb()?; // data alignment (signed, only skipped)
    if version == 1 {
        r.u8()?;
    } else {
        r.leb()?;
    }
    let mut c = Cie {
        fde: None,
        lsda: None,
        personality: None,
    };
    if aug.first() != Some(&b'z') {
        return Ok(c);
    }
    r.leb()?; // augmentation data length: the letters say what follows
    for &letter in &aug[1..] {
        match letter {
            b'R' => c.fde = Some(r.encoding()?),
            b'L' => c.lsda = Some(r.encoding()?),
            b'P' => {
                let enc = r.encoding()?;
                let at = r.pos;
                let size = pointer_size(enc.value)
                    .ok_or_else(|| r.fail(format!("personality encoding {:#x}", enc.value)))?;
                r.skip(size)?;
                c.personality = Some((enc, at));
            }
            b'S' | b'B' => {}
            other => {
                return Err(r.fail(format!("augmentation letter {:?}", other as char)));
            }
        }
    }
    Ok(c)
}

fn fde(r: &mut Reader, c: &Cie, cie: usize) -> Result<Fde> {
    let enc = c.fde.map_or(pe::ABSPTR, |e| e.value);
    let size = pointer_size(enc).ok_or_else(|| r.fail(format!("FDE encoding {enc:#x}")))?;
    let pc_begin = r.pos;
    r.skip(2 * size)?;
    let mut lsda = None;
    if c.fde.is_some() || c.lsda.is_some() || c.personality.is_some() {
        // A `z` CIE: augmentation data follows the range.
        r.leb()?;
        if let Some(l) = c.lsda.filter(|l| l.value != pe::OMIT) {
            lsda = Some(r.pos);
            let size = pointer_size(l.value)
                .ok_or_else(|| r.fail(format!("LSDA encoding {:#x}", l.value)))?;
            r.skip(size)?;
        }
    }
    Ok(Fde {
        cie,
        pc_begin,
        lsda,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CIE "zPLR" as g++ writes it for PIE code, and one FDE using it.
    fn cxx_pair() -> Vec<u8> {
        let mut v = Vec::new();
        // CIE: length 0x1c, id 0, version 1, "zPLR", 1, -8, 16,
        // aug len 7, P=0x9b + 4 bytes, L=0x1b, R=0x1b, pad.
        v.extend_from_slice(&0x1cu32.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&[1, b'z', b'P', b'L', b'R', 0, 1, 0x78, 16, 7, 0x9b]);
        v.extend_from_slice(&[0xaa; 4]);
        v.extend_from_slice(&[0x1b, 0x1b, 0x0c, 7, 8, 0x90, 1, 0, 0]);
        assert_eq!(v.len(), 0x20);
        // FDE: length 0x1c, CIE pointer 0x24, begin, range, aug len 4, lsda, pad.
        v.extend_from_slice(&0x1cu32.to_le_bytes());
        v.extend_from_slice(&0x24u32.to_le_bytes());
        v.extend_from_slice(&[0x11; 8]);
        v.push(4);
        v.extend_from_slice(&[0x22; 4]);
        v.extend_from_slice(&[0; 11]);
        v.extend_from_slice(&[0; 4]);
        v
    }

    #[test]
    fn finds_fields_of_a_cxx_cie_and_fde() {
        let recs = records(&cxx_pair()).unwrap();
        assert_eq!(recs.len(), 2);
        let Entry::Cie(c) = &recs[0].entry else {
            panic!()
        };
        assert_eq!(
            c.personality,
            Some((
                Encoding {
                    at: 18,
                    value: 0x9b
                },
                19
            ))
        );
        assert_eq!(
            c.lsda,
            Some(Encoding {
                at: 23,
                value: 0x1b
            })
        );
        assert_eq!(
            c.fde,
            Some(Encoding {
                at: 24,
                value: 0x1b
            })
        );
        assert_eq!(
            recs[1].entry,
            Entry::Fde(Fde {
                cie: 0,
                pc_begin: 0x28,
                lsda: Some(0x31),
            })
        );
        assert_eq!((recs[1].offset, recs[1].len), (0x20, 0x20));
    }

    #[test]
    fn refuses_a_dangling_cie_pointer_with_its_offset() {
        let mut b = cxx_pair();
        b[0x24] = 0x10;
        let e = records(&b).unwrap_err().to_string();
        assert!(e.contains("0x20") && e.contains("no CIE"), "{e}");
    }

    #[test]
    fn passes_over_a_zero_terminator() {
        let mut b = vec![0; 4];
        b.extend(cxx_pair());
        let recs = records(&b).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].offset, 4);
        let Entry::Fde(f) = &recs[1].entry else {
            panic!()
        };
        assert_eq!((f.cie, f.pc_begin), (4, 0x2c));
    }

    #[test]
    fn refuses_a_record_longer_than_the_section() {
        let mut b = cxx_pair();
        b[0x20] = 0x40;
        let e = records(&b).unwrap_err().to_string();
        assert!(e.contains("past the section end"), "{e}");
    }
}
