//! Code run on the patient's behalf.
//!
//! System calls: the main thread is pointed at a `syscall` instruction
//! already present in its address space, single-stepped over it, and put
//! back exactly as it was (all registers, `orig_rax` included, so an
//! interrupted blocking call restarts transparently).
//!
//! Function calls (IFUNC resolvers): the main thread calls the function with
//! a return address of 0 pushed well below its stack pointer; the fault at
//! address 0 on return hands control back with the result in `rax`, and the
//! thread is put back as it was, vector registers included (the fault is
//! never delivered).

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::maps;
use crate::patient::{self, Held};
use crate::ptrace::{self, Stop};

const SYSCALL_INSN: [u8; 2] = [0x0f, 0x05];

/// Address of a `syscall` instruction in `pid`: the vDSO first (always
/// mapped, small), then any executable mapping. Code pages do not change, so
/// this can be looked up before the patient is stopped.
pub fn find_syscall_insn(pid: i32, maps: &[maps::Mapping]) -> Option<u64> {
    let vdso = maps.iter().filter(|m| m.path == "[vdso]");
    let rest = maps
        .iter()
        .filter(|m| m.executable() && m.readable() && m.path != "[vdso]");
    for m in vdso.chain(rest) {
        let len = (m.end - m.start).min(1 << 20) as usize;
        let mut buf = vec![0u8; len];
        if patient::read_memory(pid, m.start, &mut buf).is_err() {
            continue;
        }
        if let Some(off) = buf.windows(2).position(|w| w == SYSCALL_INSN) {
            return Some(m.start + off as u64);
        }
    }
    None
}

impl Held {
    /// Runs syscall `nr` with `args` in the patient and returns its raw result
    /// (negative errno on failure).
    pub fn syscall(&mut self, nr: i64, args: [u64; 6]) -> Result<i64> {
        let insn = self.syscall_insn()?;
        let tid = self.worker_tid()?;
        let saved = ptrace::getregs(tid)?;
        let mut regs = saved;
        regs.rip = insn;
        regs.rax = nr as u64;
        // Not in a syscall as far as the kernel's restart logic is concerned.
        regs.orig_rax = u64::MAX;
        regs.rdi = args[0];
        regs.rsi = args[1];
        regs.rdx = args[2];
        regs.r10 = args[3];
        regs.r8 = args[4];
        regs.r9 = args[5];
        ptrace::setregs(tid, &regs)?;
        let result = loop {
            ptrace::step(tid)?;
            match ptrace::wait(tid)? {
                Stop::Signal(nix::sys::signal::Signal::SIGTRAP) => {
                    let after = ptrace::getregs(tid)?;
                    if after.rip == insn + 2 {
                        break after.rax as i64;
                    }
                    // Trap before the instruction ran (a stale step trap): step again.
                }
                Stop::Signal(sig) => self.note_signal(tid, sig),
                Stop::Interrupted | Stop::Event(_) => {}
                Stop::Gone => {
                    return Err(Error::Thread {
                        pid: self.pid(),
                        tid,
                        what: "exited during an injected syscall".into(),
                    });
                }
            }
        };
        ptrace::setregs(tid, &saved)?;
        Ok(result)
    }

    /// Calls `func(args...)` in the patient and returns `rax`. Bounded
    /// like every wait of the doctor: a function that has not returned
    /// after two seconds (blocked on a lock a stopped thread holds) is
    /// abandoned as `call_within` describes.
    pub fn call(&mut self, func: u64, args: [u64; 6]) -> Result<u64> {
        self.call_within(func, args, Some(Instant::now() + Duration::from_secs(2)))
    }

    /// Like `call`, but gives up at `deadline`: the thread is interrupted
    /// wherever it is and put back as it was. Meant for functions that take
    /// a lock another (stopped) thread may hold, where waiting would never
    /// end; they must be abandoned while blocked on that lock, before they
    /// have changed anything.
    pub fn call_within(
        &mut self,
        func: u64,
        args: [u64; 6],
        deadline: Option<Instant>,
    ) -> Result<u64> {
        let tid = self.call_tid()?;
        let saved = ptrace::getregs(tid)?;
        // The called function may use any vector register (memcpy, memset
        // do); the thread may have had live values in them where it was
        // stopped, which is not always a call boundary.
        let saved_vector = ptrace::get_xstate(tid)?;
        // Far below the red zone and whatever the thread was doing, aligned
        // as at a call site (rsp + 8 is 16-aligned inside the callee).
        let sp = ((saved.rsp - 8192) & !0xf) - 8;
        self.write(sp, &0u64.to_le_bytes())?;
        let mut regs = saved;
        regs.rsp = sp;
        regs.rip = func;
        regs.rax = 0;
        regs.orig_rax = u64::MAX;
        regs.rdi = args[0];
        regs.rsi = args[1];
        regs.rdx = args[2];
        regs.rcx = args[3];
        regs.r8 = args[4];
        regs.r9 = args[5];
        ptrace::setregs(tid, &regs)?;
        tracing::debug!("calling {func:#x} in thread {tid}");
        let outcome = loop {
            ptrace::cont(tid)?;
            let stop = match deadline {
                None => ptrace::wait(tid)?,
                Some(d) => match ptrace::wait_until(tid, d)? {
                    Some(stop) => stop,
                    None => {
                        let _ = ptrace::interrupt(tid);
                        loop {
                            match ptrace::wait(tid)? {
                                Stop::Signal(sig) => {
                                    self.note_signal(tid, sig);
                                    ptrace::cont(tid)?;
                                    let _ = ptrace::interrupt(tid);
                                }
                                Stop::Gone => {
                                    return Err(Error::Thread {
                                        pid: self.pid(),
                                        tid,
                                        what: "exited during a function call we injected".into(),
                                    });
                                }
                                Stop::Interrupted | Stop::Event(_) => break,
                            }
                        }
                        break Err(Error::Thread {
                            pid: self.pid(),
                            tid,
                            what: format!(
                                "a function called at {func:#x} did not return in time (a lock held by a stopped thread?)"
                            ),
                        });
                    }
                },
            };
            match stop {
                Stop::Signal(nix::sys::signal::Signal::SIGSEGV) => {
                    let after = ptrace::getregs(tid)?;
                    if after.rip == 0 {
                        break Ok(after.rax);
                    }
                    break Err(Error::Thread {
                        pid: self.pid(),
                        tid,
                        what: format!(
                            "faulted at {:#x} in a function called at {func:#x}",
                            after.rip
                        ),
                    });
                }
                Stop::Signal(sig) => self.note_signal(tid, sig),
                Stop::Interrupted | Stop::Event(_) => {}
                Stop::Gone => {
                    return Err(Error::Thread {
                        pid: self.pid(),
                        tid,
                        what: "exited during a function call we injected".into(),
                    });
                }
            }
        };
        ptrace::setregs(tid, &saved)?;
        ptrace::set_xstate(tid, &saved_vector)?;
        outcome
    }

    fn syscall_insn(&mut self) -> Result<u64> {
        if let Some(a) = self.syscall_insn {
            return Ok(a);
        }
        let pid = self.pid();
        let a = find_syscall_insn(pid, &maps::read(pid)?).ok_or(Error::NoSyscallInsn { pid })?;
        self.syscall_insn = Some(a);
        Ok(a)
    }

    /// Tells where a `syscall` instruction is (found before stopping the
    /// patient, to keep the stop short).
    pub fn use_syscall_insn(&mut self, addr: Option<u64>) {
        if addr.is_some() {
            self.syscall_insn = addr;
        }
    }

    fn checked(&mut self, name: &'static str, nr: i64, args: [u64; 6]) -> Result<u64> {
        let r = self.syscall(nr, args)?;
        if (-4095..0).contains(&r) {
            return Err(Error::RemoteSyscall {
                pid: self.pid(),
                name,
                errno: nix::errno::Errno::from_raw(-r as i32),
            });
        }
        Ok(r as u64)
    }

    /// Maps `len` bytes of anonymous read/write/execute memory exactly at
    /// `addr` (never over an existing mapping).
    pub fn mmap_fixed(&mut self, addr: u64, len: u64) -> Result<u64> {
        let prot = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64;
        let got = self.checked(
            "mmap",
            libc::SYS_mmap,
            [addr, len, prot, flags, u64::MAX, 0],
        )?;
        if got != addr {
            // Old kernels ignore MAP_FIXED_NOREPLACE and treat it as a hint.
            self.munmap(got, len)?;
            return Err(Error::RemoteSyscall {
                pid: self.pid(),
                name: "mmap",
                errno: nix::errno::Errno::EEXIST,
            });
        }
        Ok(got)
    }

    pub fn munmap(&mut self, addr: u64, len: u64) -> Result<()> {
        self.checked("munmap", libc::SYS_munmap, [addr, len, 0, 0, 0, 0])
            .map(|_| ())
    }
}
