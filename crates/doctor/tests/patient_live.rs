//! Live tests of holding a process and running syscalls in it. Each test
//! starts its own child and kills it by PID when done.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use doctor::layout::PAGE;
use doctor::patient::{self, Held};
use doctor::safety::{Busy, Checker};
use doctor::{maps, object, region};

struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sleeper() -> Kid {
    let k = Kid(Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sleep"));
    // Let the dynamic linker finish.
    std::thread::sleep(Duration::from_millis(100));
    k
}

fn state(pid: i32) -> char {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    s.rsplit(')').next().unwrap().trim().chars().next().unwrap()
}

#[test]
fn remote_mmap_write_read_munmap_and_release() {
    let kid = sleeper();
    let pid = kid.0.id() as i32;
    let m = maps::read(pid).unwrap();
    let objs = object::loaded_objects(pid, &m).unwrap();
    let main = objs.iter().find(|o| o.is_main).expect("main object");
    assert_eq!(main.build_id.len(), 40, "sleep has a BuildID");
    let base = region::candidates(&m, main.start, main.end, 2 * PAGE)[0];
    {
        let mut held = Held::hold(pid).unwrap();
        let regs_before = held.threads()[0].regs;
        assert_eq!(held.mmap_fixed(base, 2 * PAGE).unwrap(), base);
        held.write(base + 100, b"hello patient").unwrap();
        let mut back = [0u8; 13];
        held.read(base + 100, &mut back).unwrap();
        assert_eq!(&back, b"hello patient");
        let after = maps::read(pid).unwrap();
        assert!(
            after
                .iter()
                .any(|x| x.start == base && x.perms.starts_with("rwx"))
        );
        // Mapping the same spot again must fail, not clobber.
        assert!(held.mmap_fixed(base, PAGE).is_err());
        held.munmap(base, 2 * PAGE).unwrap();
        assert!(!maps::read(pid).unwrap().iter().any(|x| x.start == base));
        let now = nix::sys::ptrace::getregs(nix::unistd::Pid::from_raw(pid)).unwrap();
        assert_eq!(now.rip, regs_before.rip);
        assert_eq!(now.orig_rax, regs_before.orig_rax);
        assert!(held.stopped_for() > Duration::ZERO);
    }
    std::thread::sleep(Duration::from_millis(50));
    assert!(patient::exists(pid));
    assert!(
        matches!(state(pid), 'S' | 'R'),
        "patient runs again: {}",
        state(pid)
    );
}

#[test]
fn stacks_of_a_sleeping_process_walk_cleanly() {
    let kid = sleeper();
    let pid = kid.0.id() as i32;
    let m = maps::read(pid).unwrap();
    let objs = object::loaded_objects(pid, &m).unwrap();
    let checker = Checker::new(pid, &objs, &m);
    let held = Held::hold(pid).unwrap();
    assert_eq!(checker.find_unsafe(&held, &[]), None);
    // The thread sits in libc's nanosleep: libc's code is busy.
    let libc = objs.iter().find(|o| o.name.contains("libc.so")).unwrap();
    let busy = [Busy {
        function: "all of libc".into(),
        start: libc.start,
        end: libc.end,
    }];
    let (tid, f, _) = checker.find_unsafe(&held, &busy).expect("unsafe");
    assert_eq!(tid, pid);
    assert_eq!(f, "all of libc");
}

/// Symbol lookup follows the dynamic linker's order: a preloaded library's
/// definition wins over libc's, as it does in the process itself.
#[test]
fn lookup_follows_the_link_map_so_preloads_interpose() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("fastsleep.so");
    let src = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/support/fastsleep.c"
    );
    let ok = Command::new("gcc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&lib)
        .arg(src)
        .status()
        .unwrap();
    assert!(ok.success());
    let kid = Kid(Command::new("sleep")
        .arg("60")
        .env("LD_PRELOAD", &lib)
        .spawn()
        .unwrap());
    std::thread::sleep(Duration::from_millis(100));
    let pid = kid.0.id() as i32;
    let m = maps::read(pid).unwrap();
    let objs = object::loaded_objects(pid, &m).unwrap();
    let order: Vec<&str> = doctor::resolve::search_order(&objs)
        .iter()
        .map(|o| o.short_name())
        .collect();
    assert_eq!(order[0], "sleep", "{order:?}");
    assert_eq!(order[1], "fastsleep.so", "{order:?}");
    let (o, _) = doctor::resolve::lookup(&objs, "sleep", None).unwrap();
    assert_eq!(o.short_name(), "fastsleep.so");
    let (o, _) = doctor::resolve::lookup(&objs, "printf", None).unwrap();
    assert!(o.short_name().starts_with("libc.so"));
}

#[test]
fn holding_a_missing_process_says_so() {
    let e = Held::hold(999_999_999).err().expect("no such process");
    assert!(e.to_string().contains("does not exist"), "{e}");
}

/// A function injected into a thread that was stopped in the middle of its
/// own work (not at a call boundary, not in a syscall) leaves its vector
/// registers as they were: the patient keeps a value in %xmm0 across a
/// spin loop and checks it; the called function zeroes %xmm0.
#[test]
fn an_injected_call_leaves_vector_registers_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("spin.c");
    std::fs::write(
        &src,
        r#"
#include <stdio.h>
__attribute__((noipa)) long clobber(void)
{
	__asm__ volatile("pxor %%xmm0, %%xmm0" ::: "xmm0");
	return 7;
}
int main(void)
{
	for (;;) {
		long seen;
		/* %xmm0 holds the value for about a second of spinning. */
		__asm__ volatile(
			"movabs $0x1122334455667788, %%rax\n\t"
			"movq %%rax, %%xmm0\n\t"
			"mov $600000000, %%rcx\n"
			"1:\tdec %%rcx\n\t"
			"jnz 1b\n\t"
			"movq %%xmm0, %0"
			: "=r"(seen) : : "rax", "rcx", "xmm0");
		printf(seen == 0x1122334455667788L ? "intact\n" : "clobbered\n");
		fflush(stdout);
	}
}
"#,
    )
    .unwrap();
    let exe = dir.path().join("spin");
    let ok = Command::new("gcc")
        .args(["-O1", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .unwrap();
    assert!(ok.success());
    let mut kid = Kid(Command::new(&exe)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap());
    let pid = kid.0.id() as i32;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(kid.0.stdout.take().unwrap()));
    assert_eq!(lines.next().unwrap().unwrap(), "intact");
    let m = maps::read(pid).unwrap();
    let objs = object::loaded_objects(pid, &m).unwrap();
    let main = objs.iter().find(|o| o.is_main).unwrap();
    let clobber = main.lookup_any("clobber").expect("clobber in .symtab").addr;
    {
        let mut held = Held::hold(pid).unwrap();
        // Only the spinning thread exists: it runs the call.
        let in_loop = held.threads()[0].regs.rip;
        assert!(!(in_loop >= clobber && in_loop < clobber + 16));
        assert_eq!(held.call(clobber, [0; 6]).unwrap(), 7);
    }
    // The loop in progress when we called finishes with what it holds.
    assert_eq!(lines.next().unwrap().unwrap(), "intact");
}
