//! Where the unwinder reads the patient's stack and code from.

use std::cell::RefCell;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// A failed read of the patient's memory.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {len} bytes at {addr:#x}: {reason}")]
pub struct MemoryError {
    pub addr: u64,
    pub len: usize,
    pub reason: String,
}

/// Read access to one address space: a live thread's process, or a test's
/// fake stack. Implementations must fill all of `buf` or fail.
pub trait Memory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError>;
}

impl<M: Memory + ?Sized> Memory for &M {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        (**self).read(addr, buf)
    }
}

/// A process's memory through `/proc/PID/mem`.
///
/// Reading needs ptrace access to the process (the caller holds it stopped);
/// the file is opened read-only, the unwinder never writes.
#[derive(Debug)]
pub struct ProcessMemory {
    pid: i32,
    file: File,
}

impl ProcessMemory {
    pub fn open(pid: i32) -> Result<Self, MemoryError> {
        let path = format!("/proc/{pid}/mem");
        let file = File::open(&path).map_err(|e| MemoryError {
            addr: 0,
            len: 0,
            reason: format!("open {path}: {e}"),
        })?;
        Ok(ProcessMemory { pid, file })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }
}

impl Memory for ProcessMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.file.read_exact_at(buf, addr).map_err(|e| MemoryError {
            addr,
            len: buf.len(),
            reason: format!("/proc/{}/mem: {e}", self.pid),
        })
    }
}

const PAGE: u64 = 4096;
const CACHED_PAGES: usize = 16;

/// Page-granular read cache for the length of one unwind: a stack walk reads
/// a few words per frame, mostly from the same stack pages, and each read
/// through `/proc/PID/mem` is a system call. The patient is stopped, so the
/// pages cannot change under us.
pub(crate) struct PageCache<'m> {
    inner: &'m dyn Memory,
    pages: RefCell<Vec<(u64, Box<[u8]>)>>,
}

impl<'m> PageCache<'m> {
    pub(crate) fn new(inner: &'m dyn Memory) -> Self {
        PageCache {
            inner,
            pages: RefCell::new(Vec::new()),
        }
    }

    pub(crate) fn read_u64(&self, addr: u64) -> Result<u64, MemoryError> {
        let mut word = [0u8; 8];
        self.read(addr, &mut word)?;
        Ok(u64::from_le_bytes(word))
    }
}

impl Memory for PageCache<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let page = addr & !(PAGE - 1);
        let within = (addr - page) as usize;
        if within + buf.len() > PAGE as usize {
            return self.inner.read(addr, buf);
        }
        let mut pages = self.pages.borrow_mut();
        if let Some((_, bytes)) = pages.iter().find(|(start, _)| *start == page) {
            buf.copy_from_slice(&bytes[within..within + buf.len()]);
            return Ok(());
        }
        let mut bytes = vec![0u8; PAGE as usize].into_boxed_slice();
        if self.inner.read(page, &mut bytes).is_err() {
            // A fake stack, or a mapping edge: fall back to the exact range.
            return self.inner.read(addr, buf);
        }
        buf.copy_from_slice(&bytes[within..within + buf.len()]);
        if pages.len() == CACHED_PAGES {
            pages.remove(0);
        }
        pages.push((page, bytes));
        Ok(())
    }
}

/// Pages of code kept for every walk of one check: all threads of a
/// patient run the same code, and each walk reads instructions around its
/// frames (the signal-trampoline test), so without it the same code pages
/// are read once per thread. Only addresses `is_code` claims are kept;
/// everything else (stacks) goes through to `inner`.
pub struct CodePages<'m> {
    inner: &'m dyn Memory,
    is_code: &'m dyn Fn(u64) -> bool,
    pages: RefCell<std::collections::HashMap<u64, Option<Box<[u8]>>>>,
}

impl<'m> CodePages<'m> {
    pub fn new(inner: &'m dyn Memory, is_code: &'m dyn Fn(u64) -> bool) -> Self {
        CodePages {
            inner,
            is_code,
            pages: RefCell::new(std::collections::HashMap::new()),
        }
    }
}

impl Memory for CodePages<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let page = addr & !(PAGE - 1);
        let within = (addr - page) as usize;
        if within + buf.len() > PAGE as usize || !(self.is_code)(page) {
            return self.inner.read(addr, buf);
        }
        let mut pages = self.pages.borrow_mut();
        let cached = pages.entry(page).or_insert_with(|| {
            let mut bytes = vec![0u8; PAGE as usize].into_boxed_slice();
            self.inner.read(page, &mut bytes).ok().map(|()| bytes)
        });
        match cached {
            Some(bytes) => {
                buf.copy_from_slice(&bytes[within..within + buf.len()]);
                Ok(())
            }
            None => self.inner.read(addr, buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    struct Counting {
        base: u64,
        bytes: Vec<u8>,
        reads: Cell<usize>,
    }

    impl Memory for Counting {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
            self.reads.set(self.reads.get() + 1);
            let fail = || MemoryError {
                addr,
                len: buf.len(),
                reason: "outside".into(),
            };
            let start = addr.checked_sub(self.base).ok_or_else(fail)? as usize;
            let src = self.bytes.get(start..start + buf.len()).ok_or_else(fail)?;
            buf.copy_from_slice(src);
            Ok(())
        }
    }

    #[test]
    fn page_cache_reads_each_page_once() {
        let bytes: Vec<u8> = (0..2 * PAGE as usize).map(|i| i as u8).collect();
        let mem = Counting {
            base: 0x10000,
            bytes,
            reads: Cell::new(0),
        };
        let cache = PageCache::new(&mem);
        for i in 0..100u64 {
            let v = cache.read_u64(0x10000 + (i * 8) % 4000).unwrap();
            assert_eq!(v & 0xff, ((i * 8) % 4000) & 0xff);
        }
        assert_eq!(mem.reads.get(), 1);
        // Crossing a page boundary goes straight to the backing memory.
        let mut buf = [0u8; 8];
        cache.read(0x10000 + PAGE - 4, &mut buf).unwrap();
        assert_eq!(buf, [0xfc, 0xfd, 0xfe, 0xff, 0, 1, 2, 3]);
    }

    #[test]
    fn page_cache_falls_back_when_a_page_is_partly_unreadable() {
        let mem = Counting {
            base: 0x10010,
            bytes: vec![7; 64],
            reads: Cell::new(0),
        };
        let cache = PageCache::new(&mem);
        assert_eq!(cache.read_u64(0x10020).unwrap(), 0x0707070707070707);
        assert!(cache.read_u64(0x10000).is_err());
    }
}
