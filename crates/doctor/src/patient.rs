//! Holding the patient: every thread of a process stopped under ptrace, and
//! the only way to touch its registers or memory while it is stopped.
//!
//! `Held::hold` seizes and interrupts each thread listed in
//! `/proc/PID/task`, rescanning until a scan finds no new thread (a thread
//! can clone between our scan and its stop). Dropping `Held` detaches every
//! thread and re-queues any signal that arrived meanwhile, so no error path
//! can leave the patient stopped or lose one of its signals. Every wait for
//! a thread to stop is bounded (`STOP_WAIT`), and a blocking call that our
//! stop made fail with `EINTR` is rewound before the thread runs again.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::error::{Error, Result};
use crate::ptrace::{self, Regs, Stop};

/// One thread of the patient.
#[derive(Debug)]
pub struct Thread {
    pub tid: i32,
    /// Registers as they were when the thread stopped (what detach restores).
    pub regs: Regs,
    /// Seized and confirmed stopped.
    stopped: bool,
}

/// The patient, held. See the module comment.
pub struct Held {
    pid: i32,
    threads: Vec<Thread>,
    mem: File,
    /// Signals taken from signal-delivery-stops, re-queued on release.
    pending: Vec<(i32, Signal)>,
    held_since: Instant,
    stopped_total: Duration,
    /// Address of a `syscall` instruction, found on first use.
    pub(crate) syscall_insn: Option<u64>,
}

/// Whether process `pid` exists (as a process, not a thread of another)
/// and has not ended (a zombie waiting for its parent does not count).
pub fn exists(pid: i32) -> bool {
    pid > 0 && task_alive(pid, pid)
}

/// Whether thread `tid` of `pid` is there and not dead (state Z or X).
fn task_alive(pid: i32, tid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")) else {
        return false;
    };
    // "tid (comm) S ...": the state follows the last ')'.
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

fn task_ids(pid: i32) -> Result<BTreeSet<i32>> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::NoSuchProcess { pid }
        } else {
            Error::Proc {
                pid,
                what: "task list".into(),
                source,
            }
        }
    })?;
    Ok(dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

impl Held {
    /// Stops every thread of `pid`.
    pub fn hold(pid: i32) -> Result<Held> {
        if !exists(pid) {
            return Err(Error::NoSuchProcess { pid });
        }
        let mem = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/{pid}/mem"))
            .map_err(|source| Error::Proc {
                pid,
                what: "memory".into(),
                source,
            })?;
        let mut held = Held {
            pid,
            threads: Vec::new(),
            mem,
            pending: Vec::new(),
            held_since: Instant::now(),
            stopped_total: Duration::ZERO,
            syscall_insn: None,
        };
        held.catch_all_threads()?;
        if held.threads.is_empty() {
            return Err(Error::NoSuchProcess { pid });
        }
        tracing::debug!(pid, threads = held.threads.len(), "patient held");
        Ok(held)
    }

    fn catch_all_threads(&mut self) -> Result<()> {
        // Threads found dead (exited, not yet reaped): listed but not ours.
        let mut dead = BTreeSet::new();
        loop {
            let known: BTreeSet<i32> = self.threads.iter().map(|t| t.tid).collect();
            let new: Vec<i32> = task_ids(self.pid)?
                .into_iter()
                .filter(|t| !known.contains(t) && !dead.contains(t))
                .collect();
            if new.is_empty() {
                return Ok(());
            }
            for &tid in &new {
                match ptrace::seize(tid) {
                    Ok(()) => {}
                    // The thread exited between the scan and the seize.
                    Err(Error::Ptrace {
                        source: nix::errno::Errno::ESRCH,
                        ..
                    }) => {
                        dead.insert(tid);
                        continue;
                    }
                    // Auto-attached when a thread we trace created it:
                    // its first stop is on its way.
                    Err(Error::Ptrace {
                        source: nix::errno::Errno::EPERM,
                        ..
                    }) if ptrace::traced_by_us(tid) => {
                        self.threads.push(Thread {
                            tid,
                            regs: zero_regs(),
                            stopped: false,
                        });
                        continue;
                    }
                    // A thread that has ended but is not reaped yet.
                    Err(Error::Ptrace {
                        source: nix::errno::Errno::EPERM,
                        ..
                    }) if !task_alive(self.pid, tid) => {
                        dead.insert(tid);
                        continue;
                    }
                    Err(Error::Ptrace {
                        source: nix::errno::Errno::EPERM,
                        ..
                    }) => {
                        return Err(Error::Thread {
                            pid: self.pid,
                            tid,
                            what: "cannot be traced (already traced by another tracer, or not permitted)".into(),
                        });
                    }
                    Err(e) => return Err(e),
                }
                self.threads.push(Thread {
                    tid,
                    regs: zero_regs(),
                    stopped: false,
                });
                ptrace::interrupt(tid)?;
            }
            let deadline = Instant::now() + STOP_WAIT;
            for &tid in &new {
                if self.threads.iter().any(|t| t.tid == tid) {
                    match self.settle(tid, deadline, &[])? {
                        Some(regs) => self.mark_stopped(tid, regs),
                        None => {
                            self.threads.retain(|t| t.tid != tid);
                            dead.insert(tid);
                        }
                    }
                }
            }
        }
    }

    /// Waits until `tid`, already sent `PTRACE_INTERRUPT`, sits in the
    /// interrupt stop, and returns its registers; `None` if it exited.
    ///
    /// Any other ptrace stop (a clone event, a signal about to be delivered)
    /// uses up the pending interrupt, so after resuming from one the
    /// interrupt is sent again: otherwise a thread that then blocks (in
    /// `pthread_join`, say) never stops and the wait never ends. A signal
    /// is kept for release; a trap of ours (`traps`) is put back on its
    /// instruction. Bounded by `deadline`: a thread that does not stop by
    /// then is an error naming it (dropping `Held` lets everything go).
    fn settle(&mut self, tid: i32, deadline: Instant, traps: &[u64]) -> Result<Option<Regs>> {
        loop {
            let Some(stop) = ptrace::wait_until(tid, deadline)? else {
                return Err(Error::Thread {
                    pid: self.pid,
                    tid,
                    what: format!(
                        "did not stop within {} ms of PTRACE_INTERRUPT; patient released",
                        STOP_WAIT.as_millis()
                    ),
                });
            };
            match stop {
                Stop::Interrupted => return Ok(Some(ptrace::getregs(tid)?)),
                Stop::Gone => return Ok(None),
                Stop::Signal(Signal::SIGTRAP)
                    if ptrace::getregs(tid)
                        .is_ok_and(|r| traps.contains(&r.rip.wrapping_sub(1))) =>
                {
                    let mut r = ptrace::getregs(tid)?;
                    r.rip -= 1;
                    ptrace::setregs(tid, &r)?;
                }
                Stop::Signal(sig) => self.pending.push((tid, sig)),
                Stop::Event(_) => {}
            }
            ptrace::cont(tid)?;
            // ESRCH: it exited meanwhile; the next wait says so.
            let _ = ptrace::interrupt(tid);
        }
    }

    /// Prepares a thread stopped by us to run again. A blocking call that
    /// the kernel never restarts after a stop (see `UNRESTARTED`) returned
    /// `EINTR` only because we stopped the thread, so it is rewound to run
    /// again, unless a signal we took is to be delivered to that thread
    /// (then the `EINTR` is the signal's, as the program expects).
    fn rewind_our_eintr(&mut self, i: usize) {
        let t = &self.threads[i];
        let r = t.regs;
        if !t.stopped
            || r.rax as i64 != -(libc::EINTR as i64)
            || !UNRESTARTED.contains(&(r.orig_rax as i64))
            || self.pending.iter().any(|&(tid, _)| tid == t.tid)
        {
            return;
        }
        let mut insn = [0u8; 2];
        if r.rip < 2 || self.read(r.rip - 2, &mut insn).is_err() || insn != [0x0f, 0x05] {
            return;
        }
        let mut again = r;
        again.rax = r.orig_rax;
        again.rip = r.rip - 2;
        match ptrace::setregs(t.tid, &again) {
            Ok(()) => {
                tracing::debug!(
                    tid = t.tid,
                    nr = r.orig_rax,
                    "syscall interrupted by our stop restarted"
                );
                self.threads[i].regs = again;
            }
            Err(e) => tracing::warn!("restarting the syscall of thread {}: {e}", t.tid),
        }
    }

    /// Resumes every thread we hold, each one's own interrupted call rewound.
    fn cont_all(&mut self) -> Result<()> {
        for i in 0..self.threads.len() {
            self.rewind_our_eintr(i);
            let t = &mut self.threads[i];
            ptrace::cont(t.tid)?;
            t.stopped = false;
        }
        Ok(())
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn threads(&self) -> &[Thread] {
        &self.threads
    }

    /// Lets every thread run for `pause`, then stops them all again (and
    /// any thread created meanwhile). Used while waiting for a safe moment.
    pub fn resume_for(&mut self, pause: Duration) -> Result<()> {
        self.stopped_total += self.held_since.elapsed();
        self.cont_all()?;
        std::thread::sleep(pause);
        self.held_since = Instant::now();
        self.stop_running(&[])?;
        self.catch_again()
    }

    /// Waits for every thread to be stopped again after the patient ran;
    /// a patient that vanished meanwhile exited rather than never existed.
    fn catch_again(&mut self) -> Result<()> {
        let pid = self.pid;
        self.catch_all_threads().map_err(|e| match e {
            Error::NoSuchProcess { .. } => Error::Exited { pid },
            e => e,
        })?;
        if self.threads.is_empty() {
            return Err(Error::Exited { pid: self.pid });
        }
        Ok(())
    }

    /// Plants `int3` at each of `traps`, lets every thread run until one of
    /// them executes a trap or `deadline` passes, then takes the traps out
    /// and stops every thread again, a trapped one with its pc back on the
    /// original instruction. Returns whether a trap was hit. Signals that
    /// arrive meanwhile are delivered at once; new threads are held too.
    pub fn run_until_trap(&mut self, traps: &[u64], deadline: Instant) -> Result<bool> {
        let mut saved = Vec::with_capacity(traps.len());
        for &a in traps {
            let mut b = [0u8; 1];
            self.read(a, &mut b)?;
            saved.push((a, b[0]));
        }
        let restore = |held: &Held| {
            for &(a, b) in saved.iter().rev() {
                if let Err(e) = held.write(a, &[b])
                    && exists(held.pid)
                {
                    tracing::error!("removing breakpoint at {a:#x}: {e}");
                }
            }
        };
        for &a in traps {
            if let Err(e) = self.write(a, &[0xcc]) {
                restore(self);
                return Err(e);
            }
        }
        self.stopped_total += self.held_since.elapsed();
        if let Err(e) = self.cont_all() {
            restore(self);
            return Err(e);
        }
        let is_trap = |tid: i32| {
            ptrace::getregs(tid)
                .ok()
                .filter(|r| traps.contains(&r.rip.wrapping_sub(1)))
        };
        let mut hit = false;
        let outcome = (|| -> Result<()> {
            let mut last_scan = Instant::now();
            // A termination signal for the doctor ends the wait early: the
            // caller then rolls back instead of waiting out the deadline.
            while !hit
                && !self.threads.is_empty()
                && Instant::now() < deadline
                && ptrace::termination_pending().is_none()
            {
                let mut quiet = true;
                let tids: Vec<i32> = self.threads.iter().map(|t| t.tid).collect();
                for tid in tids {
                    let Some(stop) = ptrace::wait_nohang(tid)? else {
                        continue;
                    };
                    quiet = false;
                    match stop {
                        Stop::Signal(Signal::SIGTRAP) if is_trap(tid).is_some() => {
                            let mut r = is_trap(tid).expect("checked");
                            r.rip -= 1;
                            ptrace::setregs(tid, &r)?;
                            self.mark_stopped(tid, r);
                            hit = true;
                            break;
                        }
                        Stop::Signal(sig) => ptrace::cont_with(tid, sig)?,
                        // A new thread's first stop, or a late interrupt.
                        Stop::Interrupted => {
                            let r = ptrace::getregs(tid)?;
                            self.mark_stopped(tid, r);
                            if let Some(i) = self.threads.iter().position(|t| t.tid == tid) {
                                self.rewind_our_eintr(i);
                                self.threads[i].stopped = false;
                            }
                            ptrace::cont(tid)?;
                        }
                        Stop::Event(_) => ptrace::cont(tid)?,
                        Stop::Gone => self.threads.retain(|t| t.tid != tid),
                    }
                }
                if last_scan.elapsed() > Duration::from_millis(5) {
                    // Threads created meanwhile were attached by TRACECLONE.
                    last_scan = Instant::now();
                    let known: BTreeSet<i32> = self.threads.iter().map(|t| t.tid).collect();
                    for tid in task_ids(self.pid)? {
                        if !known.contains(&tid) && ptrace::traced_by_us(tid) {
                            self.threads.push(Thread {
                                tid,
                                regs: zero_regs(),
                                stopped: false,
                            });
                        }
                    }
                }
                if quiet {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            Ok(())
        })();
        // Out with the traps before anyone can run into them again.
        restore(self);
        self.held_since = Instant::now();
        let stop_all = self.stop_running(traps);
        outcome?;
        stop_all?;
        self.catch_again()?;
        Ok(hit)
    }

    fn mark_stopped(&mut self, tid: i32, regs: Regs) {
        if let Some(t) = self.threads.iter_mut().find(|t| t.tid == tid) {
            t.regs = regs;
            t.stopped = true;
        }
    }

    /// Interrupts every thread not stopped yet and waits for each; one that
    /// ran into a (now removed) trap is put back on its instruction.
    fn stop_running(&mut self, traps: &[u64]) -> Result<()> {
        let running: Vec<i32> = self
            .threads
            .iter()
            .filter(|t| !t.stopped)
            .map(|t| t.tid)
            .collect();
        for &tid in &running {
            // ESRCH: the thread exited while running; the wait sees it.
            let _ = ptrace::interrupt(tid);
        }
        let deadline = Instant::now() + STOP_WAIT;
        for tid in running {
            match self.settle(tid, deadline, traps)? {
                Some(regs) => self.mark_stopped(tid, regs),
                None => self.threads.retain(|t| t.tid != tid),
            }
        }
        Ok(())
    }

    /// How long the patient has been stopped so far, summed over holds.
    pub fn stopped_for(&self) -> Duration {
        self.stopped_total + self.held_since.elapsed()
    }

    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        read_at(&self.mem, self.pid, addr, buf)
    }

    pub fn write(&self, addr: u64, bytes: &[u8]) -> Result<()> {
        let n = self
            .mem
            .write_at(bytes, addr)
            .map_err(|source| Error::Memory {
                op: "write",
                pid: self.pid,
                addr,
                len: bytes.len(),
                source,
            })?;
        if n != bytes.len() {
            return Err(Error::Memory {
                op: "write",
                pid: self.pid,
                addr,
                len: bytes.len(),
                source: std::io::Error::new(std::io::ErrorKind::WriteZero, "short write"),
            });
        }
        Ok(())
    }

    /// The thread used to run injected syscalls: the main one if present.
    pub(crate) fn worker_tid(&self) -> Result<i32> {
        self.threads
            .iter()
            .find(|t| t.tid == self.pid)
            .or(self.threads.first())
            .map(|t| t.tid)
            .ok_or(Error::Exited { pid: self.pid })
    }

    /// The thread to run a function call in: one stopped in a system call
    /// if there is one (the main thread first). A thread stopped anywhere
    /// else may be halfway through a non-reentrant update (malloc's
    /// per-thread cache, say) that the called function would then see
    /// half-done; in a system call it is between such steps.
    pub(crate) fn call_tid(&self) -> Result<i32> {
        let in_syscall = |t: &&Thread| t.stopped && (t.regs.orig_rax as i64) >= 0;
        self.threads
            .iter()
            .filter(in_syscall)
            .find(|t| t.tid == self.pid)
            .or_else(|| self.threads.iter().find(in_syscall))
            .map(|t| Ok(t.tid))
            .unwrap_or_else(|| self.worker_tid())
    }

    /// Whether the patient still has threads to work with.
    pub fn alive(&self) -> bool {
        !self.threads.is_empty() && exists(self.pid)
    }

    pub(crate) fn note_signal(&mut self, tid: i32, sig: Signal) {
        self.pending.push((tid, sig));
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Seized but not confirmed stopped: stop it so detach works. One
        // that will not stop stays traced until the doctor exits, which
        // lets it go as well.
        let _ = self.stop_running(&[]);
        for i in 0..self.threads.len() {
            self.rewind_our_eintr(i);
        }
        for &(tid, sig) in &self.pending {
            if let Err(e) = ptrace::tgkill(self.pid, tid, sig) {
                tracing::warn!("re-queueing {sig} for thread {tid}: {e}");
            }
        }
        for t in &self.threads {
            if let Err(e) = ptrace::detach(t.tid) {
                tracing::warn!("detaching thread {}: {e}", t.tid);
            }
        }
        tracing::debug!(
            pid = self.pid,
            stopped_us = self.stopped_for().as_micros() as u64,
            "patient released"
        );
    }
}

/// How long a thread sent `PTRACE_INTERRUPT` may take to stop. A thread
/// stops within microseconds unless it is stuck in the kernel (an
/// uninterruptible wait on a dead file server, say).
const STOP_WAIT: Duration = Duration::from_secs(2);

/// System calls that fail with `EINTR` when their thread is merely stopped
/// (by ptrace or a stop signal) and resumed, and that the kernel does not
/// restart (signal(7)): `epoll_wait`, `epoll_pwait`, `epoll_pwait2`,
/// `semop`, `semtimedop`, `rt_sigtimedwait`, `io_getevents`,
/// `io_pgetevents`, and socket receives with a timeout (`accept`,
/// `accept4`, `recvfrom`, `recvmsg`, `recvmmsg`).
const UNRESTARTED: [i64; 13] = [232, 281, 441, 65, 220, 128, 208, 333, 43, 288, 45, 47, 299];

fn zero_regs() -> Regs {
    Regs {
        r15: 0,
        r14: 0,
        r13: 0,
        r12: 0,
        rbp: 0,
        rbx: 0,
        r11: 0,
        r10: 0,
        r9: 0,
        r8: 0,
        rax: 0,
        rcx: 0,
        rdx: 0,
        rsi: 0,
        rdi: 0,
        orig_rax: 0,
        rip: 0,
        cs: 0,
        eflags: 0,
        rsp: 0,
        ss: 0,
        fs_base: 0,
        gs_base: 0,
        ds: 0,
        es: 0,
        fs: 0,
        gs: 0,
    }
}

/// Reads remote memory without holding the patient (used to prepare a patch
/// before stopping anything).
pub fn read_memory(pid: i32, addr: u64, buf: &mut [u8]) -> Result<()> {
    thread_local! {
        // The last process read: preparing a patch reads one process many
        // times, and opening /proc/PID/mem costs more than a small read.
        static MEM: std::cell::RefCell<Option<(i32, File)>> = const { std::cell::RefCell::new(None) };
    }
    MEM.with(|cell| {
        let mut slot = cell.borrow_mut();
        if let Some((p, f)) = slot.as_ref()
            && *p == pid
            && read_at(f, pid, addr, buf).is_ok()
        {
            return Ok(());
        }
        {
            let f = File::open(format!("/proc/{pid}/mem")).map_err(|source| Error::Proc {
                pid,
                what: "memory".into(),
                source,
            })?;
            *slot = Some((pid, f));
        }
        // A fresh descriptor: the cached one may belong to an earlier
        // process that had this PID.
        let (_, f) = slot.as_ref().expect("just set");
        read_at(f, pid, addr, buf)
    })
}

fn read_at(f: &File, pid: i32, addr: u64, buf: &mut [u8]) -> Result<()> {
    f.read_exact_at(buf, addr).map_err(|source| Error::Memory {
        op: "read",
        pid,
        addr,
        len: buf.len(),
        source,
    })
}
