//! Figures for the remote unwinder: building the tables of a live process,
//! and one unwind of a ~10-frame stack of a thread stopped in nanosleep.
//! Run: `cargo bench -p doctor --bench unwind`.

#[path = "../tests/unwind_support/mod.rs"]
mod unwind_support;

use std::time::{Duration, Instant};

use doctor::unwind::{Tables, unwind};
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
}
