//! The unwinder on live processes: C programs built with gcc at several
//! optimisation levels, stopped with ptrace, walked from their registers.

mod unwind_support;

use doctor::unwind::{FrameKind, unwind};
use unwind_support::{Patient, Process, compile, has_chain};

const NANOSLEEP: u64 = 35;
const CLOCK_NANOSLEEP: u64 = 230;
const FUTEX: u64 = 202;
const SLEEPING: &[u64] = &[NANOSLEEP, CLOCK_NANOSLEEP];

const CHAIN: &str = r#"
#include <stdio.h>
#include <time.h>
#define KEEP __attribute__((noinline, noclone))
KEEP int leaf(int n) {
    struct timespec ts = {1000, 0};
    printf("ready\n");
    fflush(stdout);
    nanosleep(&ts, 0);
    __asm__ volatile("" ::: "memory");
    return n + 1;
}
KEEP int middle(int n) { int r = leaf(n * 2); __asm__ volatile("" ::: "memory"); return r + 3; }
KEEP int top(int n) { int r = middle(n + 1); __asm__ volatile("" ::: "memory"); return r * 5; }
int main(int argc, char **argv) { (void)argv; return top(argc) == 42; }
"#;

fn sleeping_chain(flags: &[&str]) {
    let (_dir, bin) = compile("chain", CHAIN, flags);
    let mut patient = Patient::spawn(&bin);
    patient.expect_line("ready");
    let pid = patient.pid();
    patient.wait_in_syscall(pid, SLEEPING);
    let regs = patient.hold(pid);
    let process = Process::load(&patient);
    let frames = unwind(&regs, &patient.memory(), &process.tables, 64)
        .unwrap_or_else(|e| panic!("{flags:?}: unwind failed: {e}"));
    let names = process.names(&frames);
    assert!(
        has_chain(&names, &["leaf", "middle", "top", "main"]),
        "{flags:?}: {names:?}"
    );
    // Below main: libc's start code, then the executable's _start, whose
    // CFI marks the return address undefined.
    assert!(
        names.iter().any(|n| n.contains("__libc_start_main")),
        "{names:?}"
    );
    assert_eq!(
        names.last().map(String::as_str),
        Some("_start"),
        "{names:?}"
    );
    assert_eq!(frames[0].kind, FrameKind::Top);
    assert!(frames[1..].iter().all(|f| f.kind == FrameKind::Call));
    assert!(frames.windows(2).all(|w| w[0].sp < w[1].sp), "{frames:#?}");
}

#[test]
fn sleeping_chain_at_o0() {
    sleeping_chain(&["-O0"]);
}

#[test]
fn sleeping_chain_at_o2() {
    sleeping_chain(&["-O2"]);
}

#[test]
fn sleeping_chain_at_o2_without_frame_pointer() {
    sleeping_chain(&["-O2", "-fomit-frame-pointer"]);
}

const SIGNAL: &str = r#"
#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#define KEEP __attribute__((noinline, noclone))
#define BARRIER __asm__ volatile("" ::: "memory")
static volatile sig_atomic_t spin = 1;
KEEP void sleep_forever(void) {
    struct timespec ts = {1000, 0};
    write(1, "ready\n", 6);
    nanosleep(&ts, 0);
    BARRIER;
}
KEEP void spin_here(const char *msg) {
    write(1, msg, 3);
    while (spin) BARRIER;
}
void on_usr2(int sig) { (void)sig; sleep_forever(); BARRIER; }
void on_usr1(int sig) {
    (void)sig;
#ifdef NESTED
    spin_here("g2\n");
#else
    sleep_forever();
#endif
    BARRIER;
}
KEEP void busy(void) { spin_here("go\n"); BARRIER; }
KEEP void outer(void) { busy(); BARRIER; }
int main(void) {
    struct sigaction sa = {0};
#ifdef ALTSTACK
    stack_t ss = {0};
    ss.ss_size = 1 << 16;
    ss.ss_sp = mmap(0, ss.ss_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    sigaltstack(&ss, 0);
    sa.sa_flags = SA_ONSTACK;
#endif
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, 0);
    sa.sa_handler = on_usr2;
    sigaction(SIGUSR2, &sa, 0);
    outer();
    return 0;
}
"#;

/// Signals `signal` once the program printed `line` and had time to enter
/// its spin loop.
fn signal_when(patient: &mut Patient, line: &str, signal: nix::sys::signal::Signal) {
    patient.expect_line(line);
    std::thread::sleep(std::time::Duration::from_millis(50));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(patient.pid()), signal).unwrap();
}

/// Returns the frame names, checking every signal frame is followed by an
/// interrupted frame.
fn through_signal_frames(flags: &[&str], nested: bool) -> Vec<String> {
    use nix::sys::signal::Signal;
    let (_dir, bin) = compile("signal", SIGNAL, flags);
    let mut patient = Patient::spawn(&bin);
    signal_when(&mut patient, "go", Signal::SIGUSR1);
    if nested {
        signal_when(&mut patient, "g2", Signal::SIGUSR2);
    }
    patient.expect_line("ready");
    let pid = patient.pid();
    patient.wait_in_syscall(pid, SLEEPING);
    let regs = patient.hold(pid);
    let process = Process::load(&patient);
    let frames = unwind(&regs, &patient.memory(), &process.tables, 64)
        .unwrap_or_else(|e| panic!("{flags:?}: unwind failed: {e}"));
    let names = process.names(&frames);
    eprintln!("{flags:?}: {names:?}");
    let altstack = flags.contains(&"-DALTSTACK");
    let outermost_signal = frames
        .iter()
        .rposition(|f| f.kind == FrameKind::SignalTrampoline);
    for (i, frame) in frames.iter().enumerate() {
        if frame.kind == FrameKind::SignalTrampoline {
            assert_eq!(frames[i + 1].kind, FrameKind::Interrupted, "{names:?}");
            // The alternate stack is an mmap far from [stack]: only the
            // outermost signal frame leaves it for the thread's own stack.
            let far = frame.sp.abs_diff(frames[i + 1].sp) > 1 << 20;
            let leaves_altstack = altstack && Some(i) == outermost_signal;
            assert_eq!(far, leaves_altstack, "frame {i}: {frames:#x?}");
        }
    }
    let signal_frames = frames
        .iter()
        .filter(|f| f.kind == FrameKind::SignalTrampoline)
        .count();
    assert_eq!(signal_frames, if nested { 2 } else { 1 }, "{names:?}");
    assert!(
        has_chain(&names, &["spin_here", "busy", "outer", "main"]),
        "{flags:?}: {names:?}"
    );
    assert_eq!(
        names.last().map(String::as_str),
        Some("_start"),
        "{names:?}"
    );
    names
}

#[test]
fn signal_handler_frame_unwinds_into_the_interrupted_function_o0() {
    let names = through_signal_frames(&["-O0"], false);
    assert!(
        has_chain(
            &names,
            &["sleep_forever", "on_usr1", "?libc.so.6", "spin_here"]
        ),
        "{names:?}"
    );
}

#[test]
fn signal_handler_frame_unwinds_into_the_interrupted_function_o2() {
    let names = through_signal_frames(&["-O2", "-fomit-frame-pointer"], false);
    assert!(
        has_chain(
            &names,
            &["sleep_forever", "on_usr1", "?libc.so.6", "spin_here"]
        ),
        "{names:?}"
    );
}

#[test]
fn signal_handler_on_an_alternate_stack_unwinds_back_to_the_main_stack() {
    let names = through_signal_frames(&["-O2", "-DALTSTACK"], false);
    assert!(
        has_chain(
            &names,
            &["sleep_forever", "on_usr1", "?libc.so.6", "spin_here"]
        ),
        "{names:?}"
    );
}

#[test]
fn nested_signal_handlers_unwind_through_both_signal_frames() {
    let names = through_signal_frames(&["-O2", "-DNESTED", "-DALTSTACK"], true);
    assert!(
        has_chain(
            &names,
            &[
                "sleep_forever",
                "on_usr2",
                "?libc.so.6",
                "spin_here",
                "on_usr1",
                "?libc.so.6",
                "spin_here",
                "busy"
            ]
        ),
        "{names:?}"
    );
}

const THREADS: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#define KEEP __attribute__((noinline, noclone))
KEEP void t_leaf(long i) {
    struct timespec ts = {1000 + i, 0};
    nanosleep(&ts, 0);
    __asm__ volatile("" ::: "memory");
}
KEEP void t_mid(long i) { t_leaf(i); __asm__ volatile("" ::: "memory"); }
void *worker(void *arg) { t_mid((long)arg); return 0; }
int main(void) {
    pthread_t t[3];
    for (long i = 0; i < 3; i++) pthread_create(&t[i], 0, worker, (void *)i);
    write(1, "ready\n", 6);
    for (int i = 0; i < 3; i++) pthread_join(t[i], 0);
    return 0;
}
"#;

#[test]
fn every_thread_of_a_threaded_process_unwinds_to_its_outermost_frame() {
    let (_dir, bin) = compile("threads", THREADS, &["-O2"]);
    let mut patient = Patient::spawn(&bin);
    patient.expect_line("ready");
    let pid = patient.pid();
    let tids = patient.threads();
    assert_eq!(tids.len(), 4, "{tids:?}");
    for &tid in &tids {
        let nrs: &[u64] = if tid == pid { &[FUTEX] } else { SLEEPING };
        patient.wait_in_syscall(tid, nrs);
    }
    let regs: Vec<_> = tids.iter().map(|&tid| patient.hold(tid)).collect();
    let process = Process::load(&patient);
    let memory = patient.memory();
    for (tid, regs) in tids.iter().zip(&regs) {
        let frames = unwind(regs, &memory, &process.tables, 64)
            .unwrap_or_else(|e| panic!("thread {tid}: unwind failed: {e}"));
        let names = process.names(&frames);
        eprintln!("thread {tid}: {names:?}");
        if *tid == pid {
            assert!(has_chain(&names, &["main"]), "main thread: {names:?}");
            assert_eq!(names.last().map(String::as_str), Some("_start"));
        } else {
            assert!(
                has_chain(&names, &["t_leaf", "t_mid", "worker"]),
                "thread {tid}: {names:?}"
            );
            // worker's caller is libc's start_thread, called from the clone
            // child path whose CFI ends the stack.
            let after = names.iter().position(|n| n == "worker").unwrap();
            let rest = &frames[after + 1..];
            assert!(!rest.is_empty(), "thread {tid}: nothing below worker");
            assert!(
                rest.iter()
                    .all(|f| f.object.as_deref().is_some_and(|o| o.contains("libc"))),
                "thread {tid}: {names:?}"
            );
        }
    }
}

const VDSO: &str = r#"
#include <stdio.h>
#include <time.h>
#define KEEP __attribute__((noinline, noclone))
KEEP long poll_clock(void) {
    struct timespec ts;
    long sum = 0;
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        sum += ts.tv_nsec;
        __asm__ volatile("" ::: "memory");
    }
    return sum;
}
int main(void) { return (int)poll_clock(); }
"#;

/// Stops a thread at 300 arbitrary points of a clock_gettime loop (in the
/// vDSO, in libc's wrapper, in prologues and epilogues) and unwinds each.
#[test]
fn random_stops_in_a_vdso_loop_all_unwind_including_vdso_frames() {
    let (_dir, bin) = compile("vdso", VDSO, &["-O2"]);
    let mut patient = Patient::spawn(&bin);
    patient.expect_line("ready");
    // Let it return from printing "ready" into its loop.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let pid = patient.pid();
    let mut process = None;
    let mut in_vdso = 0;
    for _ in 0..300 {
        let regs = patient.hold(pid);
        let process = process.get_or_insert_with(|| Process::load(&patient));
        let frames = unwind(&regs, &patient.memory(), &process.tables, 64)
            .unwrap_or_else(|e| panic!("stopped at {:#x}: unwind failed: {e}", regs.rip));
        let names = process.names(&frames);
        assert!(has_chain(&names, &["poll_clock", "main"]), "{names:?}");
        assert_eq!(names.last().map(String::as_str), Some("_start"));
        let (start, end) = process.vdso;
        if (start..end).contains(&regs.rip) {
            in_vdso += 1;
            assert_eq!(frames[0].object.as_deref(), Some("[vdso]"));
        }
        patient.resume(pid);
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    assert!(in_vdso > 0, "never stopped inside the vDSO in 300 tries");
    eprintln!("{in_vdso} of 300 stops were inside the vDSO");
}

const LIBC_HEAVY: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define KEEP __attribute__((noinline, noclone))
static int cmp(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }
KEEP unsigned work(unsigned seed) {
    char buf[256];
    int v[32];
    size_t n = 64 + seed % 4096;
    char *p = malloc(n);
    memset(p, (int)seed, n);
    snprintf(buf, sizeof buf, "%u %s %f", seed, "x", seed / 7.0);
    for (int i = 0; i < 32; i++) v[i] = (int)((seed * 2654435761u) >> (i % 16));
    qsort(v, 32, sizeof v[0], cmp);
    unsigned r = (unsigned)strlen(buf) + (unsigned)p[n / 2] + (unsigned)v[3];
    free(p);
    return r;
}
KEEP void driver(void) {
    unsigned s = 1;
    for (;;) s = work(s) * 31 + 7;
}
int main(void) {
    printf("ready\n");
    fflush(stdout);
    driver();
    return 0;
}
"#;

/// Stops a thread at 300 arbitrary points of code that spends its time in
/// libc (malloc, memset, snprintf, qsort, free, PLT stubs): wherever it is,
/// prologue, epilogue or hand-written assembly, the walk reaches _start.
#[test]
fn random_stops_in_libc_heavy_code_all_unwind() {
    let (_dir, bin) = compile("heavy", LIBC_HEAVY, &["-O2"]);
    let mut patient = Patient::spawn(&bin);
    patient.expect_line("ready");
    // Let it return from printing "ready" into its loop.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let pid = patient.pid();
    let mut process = None;
    let mut in_libc = 0;
    for _ in 0..300 {
        let regs = patient.hold(pid);
        let process = process.get_or_insert_with(|| Process::load(&patient));
        let frames = unwind(&regs, &patient.memory(), &process.tables, 64)
            .unwrap_or_else(|e| panic!("stopped at {:#x}: unwind failed: {e}", regs.rip));
        let names = process.names(&frames);
        assert!(has_chain(&names, &["driver", "main"]), "{names:?}");
        assert_eq!(names.last().map(String::as_str), Some("_start"));
        if frames[0]
            .object
            .as_deref()
            .is_some_and(|o| o.contains("libc"))
        {
            in_libc += 1;
        }
        patient.resume(pid);
        std::thread::sleep(std::time::Duration::from_micros(300));
    }
    eprintln!("{in_libc} of 300 stops were inside libc");
    assert!(in_libc > 0);
}

const NO_CFI_START: &str = r#"
#include <time.h>
#include <unistd.h>
#define KEEP __attribute__((noinline, noclone))
/* An entry point written by hand, with no CFI at all. */
__asm__(".text\n.globl _start\n.type _start,@function\n_start:\n"
        "\txor %ebp, %ebp\n\tand $-16, %rsp\n\tcall entry_main\n\thlt\n"
        ".size _start, .-_start\n");
KEEP void nocfi_leaf(void) {
    struct timespec ts = {1000, 0};
    write(1, "ready\n", 6);
    nanosleep(&ts, 0);
    __asm__ volatile("" ::: "memory");
}
KEEP void entry_main(void) {
    nocfi_leaf();
    __asm__ volatile("" ::: "memory");
    _exit(0);
}
"#;

#[test]
fn an_entry_point_without_cfi_is_the_outermost_frame() {
    let (_dir, bin) = compile("nocfi", NO_CFI_START, &["-O2", "-nostartfiles"]);
    let mut patient = Patient::spawn(&bin);
    patient.expect_line("ready");
    let pid = patient.pid();
    patient.wait_in_syscall(pid, SLEEPING);
    let regs = patient.hold(pid);
    let process = Process::load(&patient);
    let frames = unwind(&regs, &patient.memory(), &process.tables, 64)
        .unwrap_or_else(|e| panic!("unwind failed: {e}"));
    let names = process.names(&frames);
    assert!(
        has_chain(&names, &["nocfi_leaf", "entry_main", "_start"]),
        "{names:?}"
    );
    assert_eq!(
        names.last().map(String::as_str),
        Some("_start"),
        "{names:?}"
    );
}
