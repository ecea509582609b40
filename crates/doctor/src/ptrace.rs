//! The ptrace and signal primitives the doctor uses on one thread at a time.
//!
//! This is the only module of the crate allowed to use `unsafe` (for the
//! calls nix does not wrap: `tgkill`, the XSAVE register set, `sigpending`). Everything here is a thin, typed layer
//! over the kernel interface; policy (which thread, when, what to restore)
//! lives in `patient`.
#![allow(unsafe_code)]

use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// General-purpose registers of a stopped thread, `orig_rax` included.
pub type Regs = libc::user_regs_struct;

/// `PTRACE_EVENT_STOP`: the stop a `PTRACE_INTERRUPT` (or a group-stop) of a
/// seized thread reports.
const EVENT_STOP: i32 = 128;

/// What `waitpid` told us about a traced thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Interrupt or group-stop: the thread is held and nothing is pending.
    Interrupted,
    /// Signal-delivery-stop: the thread was about to receive `Signal`.
    Signal(Signal),
    /// Some other ptrace event stop (we asked for none; treated as a plain stop).
    Event(i32),
    /// The thread is gone.
    Gone,
}

fn pt(op: &'static str, tid: i32) -> impl FnOnce(nix::Error) -> Error {
    move |source| Error::Ptrace { op, tid, source }
}

/// Seizes without stopping. Threads the patient creates while traced are
/// traced too (`TRACECLONE`: no thread can run into a breakpoint of ours
/// untraced). Not `EXITKILL`: the patient must survive the doctor dying.
pub fn seize(tid: i32) -> Result<()> {
    ptrace::seize(Pid::from_raw(tid), ptrace::Options::PTRACE_O_TRACECLONE)
        .map_err(pt("SEIZE", tid))
}

/// Whether `tid` is traced by this process already (a thread auto-attached
/// through `TRACECLONE`).
pub fn traced_by_us(tid: i32) -> bool {
    // TracerPid names the tracing thread, not its process.
    let me = nix::unistd::gettid().to_string();
    std::fs::read_to_string(format!("/proc/{tid}/status")).is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .is_some_and(|v| v.trim() == me)
    })
}

pub fn interrupt(tid: i32) -> Result<()> {
    ptrace::interrupt(Pid::from_raw(tid)).map_err(pt("INTERRUPT", tid))
}

/// Waits for the next stop (or the end) of one traced thread.
pub fn wait(tid: i32) -> Result<Stop> {
    loop {
        match waitpid(Pid::from_raw(tid), Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::PtraceEvent(_, _, EVENT_STOP)) => return Ok(Stop::Interrupted),
            Ok(WaitStatus::PtraceEvent(_, _, ev)) => return Ok(Stop::Event(ev)),
            Ok(WaitStatus::Stopped(_, sig)) => return Ok(Stop::Signal(sig)),
            Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..)) => return Ok(Stop::Gone),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::ECHILD) => return Ok(Stop::Gone),
            Err(e) => {
                return Err(Error::Ptrace {
                    op: "waitpid",
                    tid,
                    source: e,
                });
            }
        }
    }
}

/// The next stop of one traced thread, without blocking: `None` if it has
/// nothing to report. (Never `waitpid(-1)`: a library must not reap
/// children or stops that belong to someone else.)
pub fn wait_nohang(tid: i32) -> Result<Option<Stop>> {
    let flags = WaitPidFlag::__WALL | WaitPidFlag::WNOHANG;
    loop {
        let st = match waitpid(Pid::from_raw(tid), Some(flags)) {
            Ok(st) => st,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::ECHILD) => return Ok(Some(Stop::Gone)),
            Err(e) => {
                return Err(Error::Ptrace {
                    op: "waitpid",
                    tid,
                    source: e,
                });
            }
        };
        return Ok(match st {
            WaitStatus::StillAlive => None,
            WaitStatus::PtraceEvent(_, _, EVENT_STOP) => Some(Stop::Interrupted),
            WaitStatus::PtraceEvent(_, _, ev) => Some(Stop::Event(ev)),
            WaitStatus::Stopped(_, sig) => Some(Stop::Signal(sig)),
            WaitStatus::Exited(..) | WaitStatus::Signaled(..) => Some(Stop::Gone),
            _ => continue,
        });
    }
}

/// The next stop of `tid`, or `None` once `deadline` has passed. Polls: a
/// quick stop (an injected call returning, an interrupt landing) comes
/// within microseconds, far below the granularity of a sleep (about 60 us,
/// the timer slack), so the first half millisecond only yields.
pub fn wait_until(tid: i32, deadline: std::time::Instant) -> Result<Option<Stop>> {
    let start = std::time::Instant::now();
    loop {
        if let Some(stop) = wait_nohang(tid)? {
            return Ok(Some(stop));
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        if now - start < std::time::Duration::from_micros(500) {
            std::thread::yield_now();
        } else {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
}

pub fn getregs(tid: i32) -> Result<Regs> {
    ptrace::getregs(Pid::from_raw(tid)).map_err(pt("GETREGS", tid))
}

pub fn setregs(tid: i32, regs: &Regs) -> Result<()> {
    ptrace::setregs(Pid::from_raw(tid), *regs).map_err(pt("SETREGS", tid))
}

/// `NT_X86_XSTATE`: the register set of the whole XSAVE area (x87, SSE,
/// AVX and what else the CPU has).
const NT_X86_XSTATE: usize = 0x202;

/// Large enough for every XSAVE layout of today's CPUs (AMX tiles
/// included); the kernel says how much it filled.
const XSTATE_MAX: usize = 16 * 1024;

/// The thread's floating-point and vector registers, in the kernel's XSAVE
/// layout, to be given back by `set_xstate`.
pub fn get_xstate(tid: i32) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; XSTATE_MAX];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: PTRACE_GETREGSET writes at most iov_len bytes into the buffer
    // iov points to, which we own and keep alive across the call, and
    // updates iov_len; the thread is traced by us and stopped.
    let rc = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGSET,
            tid,
            NT_X86_XSTATE as *mut libc::c_void,
            (&mut iov as *mut libc::iovec).cast::<libc::c_void>(),
        )
    };
    if rc < 0 {
        return Err(Error::Ptrace {
            op: "GETREGSET(NT_X86_XSTATE)",
            tid,
            source: nix::errno::Errno::last(),
        });
    }
    buf.truncate(iov.iov_len);
    Ok(buf)
}

/// Gives a thread back the registers `get_xstate` read.
pub fn set_xstate(tid: i32, state: &[u8]) -> Result<()> {
    let mut buf = state.to_vec();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: PTRACE_SETREGSET reads iov_len bytes from our own buffer,
    // alive across the call; the thread is traced by us and stopped.
    let rc = unsafe {
        libc::ptrace(
            libc::PTRACE_SETREGSET,
            tid,
            NT_X86_XSTATE as *mut libc::c_void,
            (&mut iov as *mut libc::iovec).cast::<libc::c_void>(),
        )
    };
    if rc < 0 {
        return Err(Error::Ptrace {
            op: "SETREGSET(NT_X86_XSTATE)",
            tid,
            source: nix::errno::Errno::last(),
        });
    }
    Ok(())
}

pub fn step(tid: i32) -> Result<()> {
    ptrace::step(Pid::from_raw(tid), None).map_err(pt("SINGLESTEP", tid))
}

pub fn cont(tid: i32) -> Result<()> {
    ptrace::cont(Pid::from_raw(tid), None).map_err(pt("CONT", tid))
}

/// Resumes a thread delivering `sig` (a signal that arrived while the
/// patient ran under our watch goes through at once).
pub fn cont_with(tid: i32, sig: Signal) -> Result<()> {
    ptrace::cont(Pid::from_raw(tid), Some(sig)).map_err(pt("CONT", tid))
}

pub fn detach(tid: i32) -> Result<()> {
    ptrace::detach(Pid::from_raw(tid), None).map_err(pt("DETACH", tid))
}

/// Signals that would end the doctor in the middle of an operation.
const TERMINATION: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// Blocks the termination signals in the calling thread, so that they wait
/// for `termination_pending` instead of killing the doctor while a patient
/// is stopped, half-switched or has breakpoints planted.
pub fn defer_termination() -> Result<()> {
    let mut set = nix::sys::signal::SigSet::empty();
    for s in TERMINATION {
        set.add(s);
    }
    set.thread_block().map_err(|source| Error::Ptrace {
        op: "sigprocmask",
        tid: 0,
        source,
    })
}

/// A termination signal that arrived while deferred, if any.
pub fn termination_pending() -> Option<Signal> {
    // SAFETY: sigset_t is plain data; sigpending fills the one we own and
    // sigismember only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        if libc::sigpending(&mut set) != 0 {
            return None;
        }
        TERMINATION
            .into_iter()
            .find(|&s| libc::sigismember(&set, s as i32) == 1)
    }
}

/// Queues `sig` for one thread again (a signal we took out of a
/// signal-delivery-stop while holding the patient must not be lost).
pub fn tgkill(pid: i32, tid: i32, sig: Signal) -> Result<()> {
    // SAFETY: tgkill takes three integers and touches no memory of ours.
    let rc = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, sig as i32) };
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::Ptrace {
            op: "tgkill",
            tid,
            source: nix::errno::Errno::last(),
        })
    }
}
