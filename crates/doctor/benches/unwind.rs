//! Figures for the remote unwinder: building the tables of a live process,
//! and one unwind of a ~10-frame stack of a thread stopped in nanosleep.
//! Run: `cargo bench -p doctor --bench unwind`.

#[path = "../tests/unwind_support/mod.rs"]
mod unwind_support;

use std::time::{Duration, Instant};

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use doctor::unwind::{Memory, MemoryError, Tables, unwind};
use unwind_support::{Patient, Process, compile};

const DEEP: &str = r#"
#include <stdio.h>
#include <time.h>
#define KEEP __attribute__((noinline, noclone))
KEEP int leaf(void) {
    struct timespec ts = {1000, 0};
    printf("ready\n");
    fflush(stdout);
    nanosleep(&ts, 0);
    __asm__ volatile("" ::: "memory");
    return 1;
}
KEEP int rec(int n) {
    int r = n ? rec(n - 1) : leaf();
    __asm__ volatile("" ::: "memory");
    return r + n;
}
int main(void) {
    int r = rec(2);
    __asm__ volatile("" ::: "memory");
    return r == 42;
}
"#;

/// Counts reads and keeps a copy of every page read, to replay the same
/// unwind without system calls.
struct Recorder<'m> {
    inner: &'m dyn Memory,
    reads: Cell<usize>,
    pages: RefCell<HashMap<u64, Vec<u8>>>,
}

impl Memory for Recorder<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.reads.set(self.reads.get() + 1);
        self.inner.read(addr, buf)?;
        let page = addr & !4095;
        let mut bytes = vec![0; 4096];
        if self.inner.read(page, &mut bytes).is_ok() {
            self.pages.borrow_mut().insert(page, bytes);
        }
        Ok(())
    }
}

/// Pages recorded by [`Recorder`].
struct Snapshot(HashMap<u64, Vec<u8>>);

impl Memory for Snapshot {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let page = addr & !4095;
        let at = (addr - page) as usize;
        match self.0.get(&page) {
            Some(bytes) if at + buf.len() <= 4096 => {
                buf.copy_from_slice(&bytes[at..at + buf.len()]);
                Ok(())
            }
            _ => Err(MemoryError {
                addr,
                len: buf.len(),
                reason: "not in the snapshot".into(),
            }),
        }
    }
}

fn figures(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let n = samples.len();
    let mean = samples.iter().sum::<Duration>() / n as u32;
    println!(
        "{label}: n={n} mean={:.1}us median={:.1}us p99={:.1}us min={:.1}us",
        mean.as_secs_f64() * 1e6,
        samples[n / 2].as_secs_f64() * 1e6,
        samples[n * 99 / 100].as_secs_f64() * 1e6,
        samples[0].as_secs_f64() * 1e6,
    );
}

fn main() {
    let (_dir, bin) = compile("deep", DEEP, &["-O2", "-fomit-frame-pointer"]);
    let mut patient = Patient::spawn(&bin);
    patient.expect_line("ready");
    let pid = patient.pid();
    patient.wait_in_syscall(pid, &[35, 230]);
    let regs = patient.hold(pid);

    let build: Vec<Duration> = (0..20)
        .map(|_| {
            let t = Instant::now();
            let process = Process::load(&patient);
            std::hint::black_box(&process);
            t.elapsed()
        })
        .collect();
    let process = Process::load(&patient);
    println!(
        "tables: {} FDEs over the executable, libc, ld.so and the vDSO",
        process.tables.fde_count()
    );
    figures(
        "build tables for the whole process (read files + index)",
        build,
    );

    let libc = std::fs::read("/lib/x86_64-linux-gnu/libc.so.6").expect("read libc");
    let index: Vec<Duration> = (0..20)
        .map(|_| {
            let mut tables = Tables::new();
            let t = Instant::now();
            tables.add_elf("libc.so.6", &libc, 0).unwrap();
            t.elapsed()
        })
        .collect();
    figures("index libc's .eh_frame (bytes already in memory)", index);

    let memory = patient.memory();
    let frames = unwind(&regs, &memory, &process.tables, 64).expect("unwind");
    println!(
        "stack: {} frames: {:?}",
        frames.len(),
        process.names(&frames)
    );
    let unwinds: Vec<Duration> = (0..5000)
        .map(|_| {
            let t = Instant::now();
            let frames = unwind(&regs, &memory, &process.tables, 64).unwrap();
            std::hint::black_box(frames);
            t.elapsed()
        })
        .collect();
    figures(
        &format!("one unwind of {} frames via /proc/PID/mem", frames.len()),
        unwinds,
    );

    let recorder = Recorder {
        inner: &memory,
        reads: Cell::new(0),
        pages: RefCell::new(HashMap::new()),
    };
    unwind(&regs, &recorder, &process.tables, 64).expect("recorded unwind");
    println!(
        "reads of process memory per unwind: {} (pages touched: {})",
        recorder.reads.get(),
        recorder.pages.borrow().len()
    );
    let snapshot = Snapshot(recorder.pages.into_inner());
    let replays: Vec<Duration> = (0..5000)
        .map(|_| {
            let t = Instant::now();
            let frames = unwind(&regs, &snapshot, &process.tables, 64).unwrap();
            std::hint::black_box(frames);
            t.elapsed()
        })
        .collect();
    figures(
        "same unwind from an in-memory snapshot (no syscalls)",
        replays,
    );
}
