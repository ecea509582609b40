//! Live tests of holding a patient whose threads come and go and block:
//! each test compiles a small C program, starts it, and kills it by PID.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use doctor::patient::Held;

struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn build(dir: &Path, name: &str, src: &str) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, src).unwrap();
    let exe = dir.join(name);
    let ok = Command::new("gcc")
        .args(["-O2", "-pthread", "-o"])
        .arg(&exe)
        .arg(&c)
        .status()
        .unwrap();
    assert!(ok.success(), "gcc {name}");
    exe
}

fn start(exe: &Path) -> Kid {
    let k = Kid(Command::new(exe)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap());
    std::thread::sleep(Duration::from_millis(100));
    k
}

/// Runs `f` on another thread; a hang fails the test instead of freezing it.
fn within(secs: u64, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) => {}
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("hung for {secs} s"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("failed (see above)"),
    }
}

const SPAWNER: &str = r#"
#include <pthread.h>
static void *nothing(void *a) { return a; }
int main(void)
{
	for (;;) {
		pthread_t t;
		pthread_create(&t, 0, nothing, 0);
		pthread_join(t, 0);
	}
}
"#;

/// A patient that creates a thread, joins it, and again, without pause. A
/// PTRACE_INTERRUPT sent while its main thread is in clone is used up by
/// the clone event stop; unless it is sent again, the main thread goes on
/// into pthread_join and never stops, and the hold waits for ever.
#[test]
fn hold_a_patient_that_creates_threads_all_the_time() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path(), "spawner", SPAWNER);
    let kid = start(&exe);
    let pid = kid.0.id() as i32;
    within(60, move || {
        for _ in 0..1000 {
            let mut held = Held::hold(pid).unwrap();
            assert!(!held.threads().is_empty());
            held.resume_for(Duration::from_micros(200)).unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(doctor::patient::exists(pid));
    assert!(kid.0.id() as i32 == pid);
}

const EPOLLER: &str = r#"
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>
static int fds[2];
static void *waiter(void *a)
{
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN };
	epoll_ctl(ep, EPOLL_CTL_ADD, fds[0], &ev);
	for (;;)
		if (epoll_wait(ep, &ev, 1, 600000) < 0)
			exit(3);
	return a;
}
int main(void)
{
	pthread_t t;
	pipe(fds);
	pthread_create(&t, 0, waiter, 0);
	for (;;)
		pause();
}
"#;

/// A thread blocked in epoll_wait (which the kernel never restarts after a
/// stop) is held, run briefly and released 50 times: its call is rewound
/// each time, so it never sees EINTR (it would exit 3).
#[test]
fn epoll_wait_is_rewound_after_our_stop() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path(), "epoller", EPOLLER);
    let mut kid = start(&exe);
    let pid = kid.0.id() as i32;
    within(60, move || {
        for _ in 0..50 {
            let mut held = Held::hold(pid).unwrap();
            held.resume_for(Duration::from_millis(1)).unwrap();
            drop(held);
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(kid.0.try_wait().unwrap(), None, "the patient ended");
}

const JIT_LOOP: &str = r#"
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
static void *spin(void *a)
{
	unsigned char *code = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memcpy(code, "\xeb\xfe", 2);	/* jmp . */
	((void (*)(void))code)();
	return a;
}
__attribute__((noipa)) void handle(void) { }
int main(void)
{
	pthread_t t;
	pthread_create(&t, 0, spin, 0);
	for (;;)
		pause();
}
"#;

/// A thread spinning in anonymous code (no unwind tables) never becomes
/// walkable: the check keeps re-checking until its timeout, then refuses
/// naming the thread, the pc and where it is, not a busy function the
/// thread is not in.
#[test]
fn unwalkable_stack_is_refused_with_the_real_reason() {
    use doctor::safety::{Busy, Checker};
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path(), "jit", JIT_LOOP);
    let kid = start(&exe);
    let pid = kid.0.id() as i32;
    let maps = doctor::maps::read(pid).unwrap();
    let objects = doctor::object::loaded_objects(pid, &maps).unwrap();
    let checker = Checker::new(pid, &objects, &maps);
    let main = objects.iter().find(|o| o.is_main).unwrap();
    let busy = [Busy {
        function: "handle".into(),
        start: main.start,
        end: main.start + 1,
    }];
    let mut held = Held::hold(pid).unwrap();
    let t = std::time::Instant::now();
    let err = checker
        .wait_until_safe(&mut held, &busy, Duration::from_millis(300))
        .unwrap_err()
        .to_string();
    assert!(t.elapsed() >= Duration::from_millis(300), "gave up early");
    assert!(
        err.contains("stack walk of thread") && err.contains("anonymous memory"),
        "{err}"
    );
    assert!(!err.contains("`handle`"), "{err}");
    drop(held);
    assert!(doctor::patient::exists(pid));
}
