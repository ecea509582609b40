//! The `.kpatch` file format shared by the build side and the apply side.
//!
//! A `.kpatch` file is a fixed 688-byte header (LibCare layout, little-endian)
//! followed by the patch ELF object produced by `kpatch_strip`, padded to 16
//! bytes. This crate owns that layout and the 48-byte `.kpatch.info` entry
//! layout, and the table of relocation types a patch ELF may carry
//! (`reloc`), and nothing else: it never opens files, never parses the inner ELF
//! and never decides policy (which patch fits which process). Callers hand it
//! bytes and get typed values or a typed error back.

use std::fmt;

pub mod reloc;

/// Size of the header that precedes the patch ELF.
pub const HEADER_SIZE: usize = 688;
/// Magic bytes at offset 0.
pub const MAGIC: &[u8; 8] = b"KPATCH1\0";
/// Size of one `.kpatch.info` entry.
pub const INFO_ENTRY_SIZE: usize = 48;

const MODULENAME_OFF: usize = 16;
const MODULENAME_LEN: usize = 64;
const UNAME_OFF: usize = 80;
const UNAME_LEN: usize = 256;
const BUILD_TIME_OFF: usize = 336;
const CSUM_OFF: usize = 344;
const NR_RELOC_OFF: usize = 348;
const KPATCH_OFFSET_OFF: usize = 352;
const REL_OFFSET_OFF: usize = 356;
const TOTAL_SIZE_OFF: usize = 360;
const JMP_OFFSET_OFF: usize = 364;
const USER_UNDO_OFF: usize = 368;
const USER_INFO_OFF: usize = 372;
const USER_LEVEL_OFF: usize = 376;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not a kpatch file: {len} bytes, shorter than the {HEADER_SIZE}-byte header")]
    TooShort { len: usize },
    #[error("not a kpatch file: bad magic {found:02x?} (expected \"KPATCH1\\0\")")]
    BadMagic { found: [u8; 8] },
    #[error("kpatch header says the patch ELF is at {offset}..{end}, but the file has {len} bytes")]
    Truncated { offset: u64, end: u64, len: usize },
    #[error("kpatch header has no target BuildID")]
    NoBuildId,
    #[error("BuildID {0:?} is not lowercase hex")]
    BadBuildId(String),
    #[error("{what} is {len} bytes, longer than the {max} the header allows")]
    FieldTooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("checksum mismatch: header says {stored:#010x}, content gives {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("patch ELF of {0} bytes does not fit the 32-bit size field")]
    TooBig(usize),
    #[error(".kpatch.info is {len} bytes, not a multiple of {INFO_ENTRY_SIZE}")]
    InfoSize { len: usize },
}

/// The decoded header. Fields we never interpret are kept so that a file read
/// and written back is byte-identical.
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    pub flags: u8,
    pub safety_method: u8,
    /// Optional name of the target object.
    pub modulename: String,
    /// Target BuildID, lowercase hex.
    pub build_id: String,
    pub build_time: u64,
    pub csum: u32,
    pub nr_reloc: u32,
    pub kpatch_offset: u32,
    pub rel_offset: u32,
    pub total_size: u32,
    pub jmp_offset: u32,
    pub user_undo: u32,
    pub user_info: u32,
    /// Patch level; 0 when the file carries none.
    pub user_level: u32,
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Header")
            .field("build_id", &self.build_id)
            .field("modulename", &self.modulename)
            .field("build_time", &self.build_time)
            .field("csum", &format_args!("{:#010x}", self.csum))
            .field("kpatch_offset", &self.kpatch_offset)
            .field("total_size", &self.total_size)
            .field("user_level", &self.user_level)
            .finish()
    }
}

/// A parsed `.kpatch` file: the header and the patch ELF it carries.
#[derive(Debug, Clone)]
pub struct KpatchFile<'a> {
    pub header: Header,
    /// The patch ELF, exactly as `kpatch_strip` left it (padding excluded
    /// where the ELF header tells its true end is not known, so this runs to
    /// `total_size`).
    pub elf: &'a [u8],
}

fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// Checks that a BuildID is non-empty lowercase hex and returns it.
pub fn normalize_build_id(id: &str) -> Result<String, Error> {
    let id = id.trim().to_ascii_lowercase();
    if id.is_empty() {
        return Err(Error::NoBuildId);
    }
    if !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::BadBuildId(id));
    }
    Ok(id)
}

/// Simple additive checksum (Fletcher-like over 32-bit words) of the patch
/// ELF. LibCare writes 0 there; we write a real value and verify it only when
/// it is non-zero, so files in either convention are accepted.
pub fn checksum(elf: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in elf.chunks(4) {
        let mut w = [0u8; 4];
        w[..chunk.len()].copy_from_slice(chunk);
        a = a.wrapping_add(u32::from_le_bytes(w));
        b = b.wrapping_add(a);
    }
    // Never 0: 0 means "no checksum" in the LibCare convention.
    (b ^ a.rotate_left(16)).max(1)
}

impl<'a> KpatchFile<'a> {
    /// Parses a whole `.kpatch` file image.
    pub fn parse(data: &'a [u8]) -> Result<Self, Error> {
        if data.len() < HEADER_SIZE {
            if data.len() >= 8 && &data[..8] != MAGIC {
                let mut found = [0u8; 8];
                found.copy_from_slice(&data[..8]);
                return Err(Error::BadMagic { found });
            }
            return Err(Error::TooShort { len: data.len() });
        }
        if &data[..8] != MAGIC {
            let mut found = [0u8; 8];
            found.copy_from_slice(&data[..8]);
            return Err(Error::BadMagic { found });
        }
        let header = Header {
            flags: data[8],
            safety_method: data[9],
            modulename: cstr(&data[MODULENAME_OFF..MODULENAME_OFF + MODULENAME_LEN]),
            build_id: cstr(&data[UNAME_OFF..UNAME_OFF + UNAME_LEN]),
            build_time: u64_at(data, BUILD_TIME_OFF),
            csum: u32_at(data, CSUM_OFF),
            nr_reloc: u32_at(data, NR_RELOC_OFF),
            kpatch_offset: u32_at(data, KPATCH_OFFSET_OFF),
            rel_offset: u32_at(data, REL_OFFSET_OFF),
            total_size: u32_at(data, TOTAL_SIZE_OFF),
            jmp_offset: u32_at(data, JMP_OFFSET_OFF),
            user_undo: u32_at(data, USER_UNDO_OFF),
            user_info: u32_at(data, USER_INFO_OFF),
            user_level: u32_at(data, USER_LEVEL_OFF),
        };
        if header.build_id.is_empty() {
            return Err(Error::NoBuildId);
        }
        let start = u64::from(header.kpatch_offset);
        let end = u64::from(header.total_size);
        if start < HEADER_SIZE as u64 || end < start || end > data.len() as u64 {
            return Err(Error::Truncated {
                offset: start,
                end,
                len: data.len(),
            });
        }
        let elf = &data[start as usize..end as usize];
        if header.csum != 0 {
            let computed = checksum(elf);
            if computed != header.csum {
                return Err(Error::Checksum {
                    stored: header.csum,
                    computed,
                });
            }
        }
        Ok(KpatchFile { header, elf })
    }
}

/// Sets the jump table's offset in a header image (the applier writes it
/// into the copy of the header it places in the patient, as LibCare does).
pub fn set_jmp_offset(header: &mut [u8], offset: u32) {
    header[JMP_OFFSET_OFF..JMP_OFFSET_OFF + 4].copy_from_slice(&offset.to_le_bytes());
}

/// Sets the patch level in a header image (a levelled storage says the
/// level by its directory name, which wins over the file's own field).
pub fn set_user_level(header: &mut [u8], level: u32) {
    header[USER_LEVEL_OFF..USER_LEVEL_OFF + 4].copy_from_slice(&level.to_le_bytes());
}

/// What `kpatch_make` needs to know to wrap a patch ELF.
#[derive(Debug, Clone, Default)]
pub struct MakeOptions {
    pub build_id: String,
    pub modulename: String,
    pub build_time: u64,
    pub user_level: u32,
    /// Write a real checksum (ours) instead of LibCare's 0.
    pub checksum: bool,
}

/// Builds a complete `.kpatch` image: header, patch ELF, zero padding to 16.
pub fn build(elf: &[u8], opts: &MakeOptions) -> Result<Vec<u8>, Error> {
    let build_id = normalize_build_id(&opts.build_id)?;
    if build_id.len() >= UNAME_LEN {
        return Err(Error::FieldTooLong {
            what: "BuildID",
            len: build_id.len(),
            max: UNAME_LEN - 1,
        });
    }
    if opts.modulename.len() >= MODULENAME_LEN {
        return Err(Error::FieldTooLong {
            what: "module name",
            len: opts.modulename.len(),
            max: MODULENAME_LEN - 1,
        });
    }
    let padded = elf.len().div_ceil(16) * 16;
    let total = HEADER_SIZE + padded;
    let total32 = u32::try_from(total).map_err(|_| Error::TooBig(elf.len()))?;
    let mut out = vec![0u8; total];
    out[..8].copy_from_slice(MAGIC);
    out[MODULENAME_OFF..MODULENAME_OFF + opts.modulename.len()]
        .copy_from_slice(opts.modulename.as_bytes());
    out[UNAME_OFF..UNAME_OFF + build_id.len()].copy_from_slice(build_id.as_bytes());
    out[BUILD_TIME_OFF..BUILD_TIME_OFF + 8].copy_from_slice(&opts.build_time.to_le_bytes());
    let hs = HEADER_SIZE as u32;
    for (off, v) in [
        (KPATCH_OFFSET_OFF, hs),
        (REL_OFFSET_OFF, hs),
        (TOTAL_SIZE_OFF, total32),
        (USER_LEVEL_OFF, opts.user_level),
    ] {
        out[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    out[HEADER_SIZE..HEADER_SIZE + elf.len()].copy_from_slice(elf);
    if opts.checksum {
        let csum = checksum(&out[HEADER_SIZE..]);
        out[CSUM_OFF..CSUM_OFF + 4].copy_from_slice(&csum.to_le_bytes());
    }
    Ok(out)
}

/// One 48-byte `.kpatch.info` entry, after relocation (addresses are what
/// the relocations made of them; in a file on disk they are usually 0 and
/// the meaning is carried by `.rela.kpatch.info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InfoEntry {
    /// Original function address; 0 for a new function.
    pub daddr: u64,
    /// Patched function address.
    pub saddr: u64,
    /// Original function length; 0 for a new function.
    pub dlen: u32,
    /// Patched function length.
    pub slen: u32,
    /// Address of the name in `.kpatch.strtab`.
    pub symstr: u64,
    pub vaddr: u64,
    pub flags: u32,
}

impl InfoEntry {
    pub const DADDR_OFF: usize = 0;
    pub const SADDR_OFF: usize = 8;
    pub const DLEN_OFF: usize = 16;
    pub const SLEN_OFF: usize = 20;
    pub const SYMSTR_OFF: usize = 24;
    pub const VADDR_OFF: usize = 32;
    pub const FLAGS_OFF: usize = 40;

    pub fn parse(b: &[u8; INFO_ENTRY_SIZE]) -> Self {
        InfoEntry {
            daddr: u64_at(b, Self::DADDR_OFF),
            saddr: u64_at(b, Self::SADDR_OFF),
            dlen: u32_at(b, Self::DLEN_OFF),
            slen: u32_at(b, Self::SLEN_OFF),
            symstr: u64_at(b, Self::SYMSTR_OFF),
            vaddr: u64_at(b, Self::VADDR_OFF),
            flags: u32_at(b, Self::FLAGS_OFF),
        }
    }

    pub fn to_bytes(&self) -> [u8; INFO_ENTRY_SIZE] {
        let mut b = [0u8; INFO_ENTRY_SIZE];
        b[0..8].copy_from_slice(&self.daddr.to_le_bytes());
        b[8..16].copy_from_slice(&self.saddr.to_le_bytes());
        b[16..20].copy_from_slice(&self.dlen.to_le_bytes());
        b[20..24].copy_from_slice(&self.slen.to_le_bytes());
        b[24..32].copy_from_slice(&self.symstr.to_le_bytes());
        b[32..40].copy_from_slice(&self.vaddr.to_le_bytes());
        b[40..44].copy_from_slice(&self.flags.to_le_bytes());
        b
    }

    /// The entry as GNU assembler directives, one field a line in layout
    /// order, for `kpatch_gensrc`'s output: each argument is an assembler
    /// expression (`fn`, `fn.Lfe - fn`, `0`); `vaddr` and `flags` are 0.
    pub fn assembly(daddr: &str, saddr: &str, dlen: &str, slen: &str, symstr: &str) -> String {
        let fields: [(usize, &str, &str); 8] = [
            (Self::DADDR_OFF, ".quad", daddr),
            (Self::SADDR_OFF, ".quad", saddr),
            (Self::DLEN_OFF, ".long", dlen),
            (Self::SLEN_OFF, ".long", slen),
            (Self::SYMSTR_OFF, ".quad", symstr),
            (Self::VADDR_OFF, ".quad", "0"),
            (Self::FLAGS_OFF, ".long", "0"),
            (Self::FLAGS_OFF + 4, ".long", "0"),
        ];
        fields
            .iter()
            .map(|(_, directive, value)| format!("\t{directive}\t{value}\n"))
            .collect()
    }

    pub fn is_terminator(&self) -> bool {
        *self == InfoEntry::default()
    }

    /// A function the patch adds rather than replaces.
    pub fn is_new_function(&self) -> bool {
        self.daddr == 0 && self.dlen == 0
    }
}

/// Splits relocated `.kpatch.info` contents into entries, stopping at the
/// all-zero terminator (or the end of the section if there is none).
pub fn parse_info(section: &[u8]) -> Result<Vec<InfoEntry>, Error> {
    if !section.len().is_multiple_of(INFO_ENTRY_SIZE) {
        return Err(Error::InfoSize { len: section.len() });
    }
    Ok(section
        .chunks_exact(INFO_ENTRY_SIZE)
        .map(|c| InfoEntry::parse(c.try_into().expect("48 bytes")))
        .take_while(|e| !e.is_terminator())
        .collect())
}

#[cfg(test)]
mod tests {

    #[test]
    fn info_entry_assembly_fills_the_48_bytes_in_layout_order() {
        let text = InfoEntry::assembly("f", "f.kpatch", "f.Lfe - f", "n", "s1");
        let sizes: Vec<usize> = text
            .lines()
            .map(|l| if l.contains(".quad") { 8 } else { 4 })
            .collect();
        assert_eq!(sizes.iter().sum::<usize>(), INFO_ENTRY_SIZE);
        let offsets: Vec<usize> = sizes
            .iter()
            .scan(0, |at, n| {
                let o = *at;
                *at += n;
                Some(o)
            })
            .collect();
        assert_eq!(
            &offsets[..7],
            &[
                InfoEntry::DADDR_OFF,
                InfoEntry::SADDR_OFF,
                InfoEntry::DLEN_OFF,
                InfoEntry::SLEN_OFF,
                InfoEntry::SYMSTR_OFF,
                InfoEntry::VADDR_OFF,
                InfoEntry::FLAGS_OFF
            ]
        );
        assert!(text.starts_with("\t.quad\tf\n\t.quad\tf.kpatch\n\t.long\tf.Lfe - f\n"));
    }
    use super::*;

    fn sample(checksum: bool) -> Vec<u8> {
        build(
            b"\x7fELF-body-of-17b!",
            &MakeOptions {
                build_id: "9E898B990912e176275b1da24c30803288095cd1".into(),
                modulename: "foo".into(),
                build_time: 1234,
                user_level: 3,
                checksum,
            },
        )
        .unwrap()
    }

    #[test]
    fn header_layout_matches_libcare_offsets() {
        let f = sample(false);
        assert_eq!(f.len(), HEADER_SIZE + 32);
        assert_eq!(&f[..8], b"KPATCH1\0");
        assert_eq!(&f[16..19], b"foo");
        assert_eq!(&f[80..120], b"9e898b990912e176275b1da24c30803288095cd1");
        assert_eq!(f[120], 0);
        assert_eq!(u64_at(&f, 336), 1234);
        assert_eq!(u32_at(&f, 344), 0, "LibCare convention: no checksum");
        assert_eq!(u32_at(&f, 352), 688);
        assert_eq!(u32_at(&f, 356), 688);
        assert_eq!(u32_at(&f, 360), 688 + 32);
        assert_eq!(u32_at(&f, 376), 3);
        assert!(f[432..688].iter().all(|&b| b == 0));
    }

    #[test]
    fn round_trip_with_and_without_checksum() {
        for cs in [false, true] {
            let f = sample(cs);
            let k = KpatchFile::parse(&f).unwrap();
            assert_eq!(
                k.header.build_id,
                "9e898b990912e176275b1da24c30803288095cd1"
            );
            assert_eq!(k.header.modulename, "foo");
            assert_eq!(k.header.user_level, 3);
            assert_eq!(&k.elf[..17], b"\x7fELF-body-of-17b!");
            assert_eq!(k.header.csum != 0, cs);
        }
    }

    #[test]
    fn refuses_bad_magic_truncation_and_corruption() {
        let f = sample(true);
        let mut bad = f.clone();
        bad[0] = b'X';
        assert!(matches!(
            KpatchFile::parse(&bad),
            Err(Error::BadMagic { .. })
        ));
        assert!(matches!(
            KpatchFile::parse(&f[..100]),
            Err(Error::TooShort { len: 100 })
        ));
        assert!(matches!(
            KpatchFile::parse(&f[..HEADER_SIZE + 8]),
            Err(Error::Truncated { .. })
        ));
        let mut flipped = f.clone();
        flipped[HEADER_SIZE + 3] ^= 0x40;
        assert!(matches!(
            KpatchFile::parse(&flipped),
            Err(Error::Checksum { .. })
        ));
    }

    #[test]
    fn refuses_non_hex_build_id() {
        let e = build(
            b"x",
            &MakeOptions {
                build_id: "not-hex".into(),
                ..Default::default()
            },
        );
        assert!(matches!(e, Err(Error::BadBuildId(_))));
    }

    #[test]
    fn info_entries_stop_at_terminator() {
        let a = InfoEntry {
            daddr: 0x1000,
            saddr: 0x2000,
            dlen: 26,
            slen: 40,
            symstr: 0x3000,
            vaddr: 0,
            flags: 0,
        };
        let n = InfoEntry {
            daddr: 0,
            dlen: 0,
            saddr: 0x2100,
            slen: 8,
            ..Default::default()
        };
        let mut sec = Vec::new();
        sec.extend_from_slice(&a.to_bytes());
        sec.extend_from_slice(&n.to_bytes());
        sec.extend_from_slice(&[0u8; 48]);
        sec.extend_from_slice(&a.to_bytes());
        let v = parse_info(&sec).unwrap();
        assert_eq!(v, vec![a, n]);
        assert!(v[1].is_new_function());
        assert!(parse_info(&sec[..47]).is_err());
    }
}
