//! `/proc/PID/maps`: the patient's address space as the kernel reports it.

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// `rwxp` / `r-xs` ...
    pub perms: String,
    pub offset: u64,
    pub inode: u64,
    /// File path, `[vdso]`, `[heap]`, `[stack]`, or empty for anonymous memory.
    pub path: String,
}

impl Mapping {
    pub fn readable(&self) -> bool {
        self.perms.as_bytes().first() == Some(&b'r')
    }
    pub fn executable(&self) -> bool {
        self.perms.as_bytes().get(2) == Some(&b'x')
    }
    /// Anonymous memory (no file, no kernel-named region).
    pub fn anonymous(&self) -> bool {
        self.inode == 0 && self.path.is_empty()
    }
    /// A mapping of a file on disk (possibly deleted since).
    pub fn file_backed(&self) -> bool {
        self.inode != 0 && self.path.starts_with('/')
    }
    /// The path of this mapping under `/proc/PID/map_files`, which opens the
    /// file that is mapped even if it was replaced or deleted on disk.
    pub fn map_files_path(&self, pid: i32) -> String {
        format!("/proc/{pid}/map_files/{:x}-{:x}", self.start, self.end)
    }
}

pub fn read(pid: i32) -> Result<Vec<Mapping>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::NoSuchProcess { pid }
        } else {
            Error::Proc {
                pid,
                what: "maps".into(),
                source,
            }
        }
    })?;
    text.lines()
        .map(|l| {
            parse_line(l).ok_or_else(|| Error::Proc {
                pid,
                what: "maps".into(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("unparsable line {l:?}"),
                ),
            })
        })
        .collect()
}

pub fn parse_line(line: &str) -> Option<Mapping> {
    let mut it = line.splitn(6, ' ');
    let range = it.next()?;
    let perms = it.next()?.to_string();
    let offset = u64::from_str_radix(it.next()?, 16).ok()?;
    let _dev = it.next()?;
    let inode = it.next()?.parse().ok()?;
    let path = it.next().unwrap_or("").trim_start().to_string();
    let (s, e) = range.split_once('-')?;
    Some(Mapping {
        start: u64::from_str_radix(s, 16).ok()?,
        end: u64::from_str_radix(e, 16).ok()?,
        perms,
        offset,
        inode,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_anon_and_named_lines() {
        let m = parse_line(
            "55d0c0a00000-55d0c0a01000 r-xp 00001000 fe:01 1311 /tmp/a dir/foo (deleted)",
        )
        .unwrap();
        assert_eq!(m.start, 0x55d0c0a00000);
        assert_eq!(m.offset, 0x1000);
        assert_eq!(m.path, "/tmp/a dir/foo (deleted)");
        assert!(m.executable() && m.file_backed());
        let a = parse_line("7f0000000000-7f0000001000 rw-p 00000000 00:00 0 ").unwrap();
        assert!(a.anonymous() && !a.executable());
        let v =
            parse_line("7ffd1000-7ffd3000 r-xp 00000000 00:00 0                  [vdso]").unwrap();
        assert_eq!(v.path, "[vdso]");
        assert!(!v.anonymous());
    }
}
