//! Code outside every mapped file (a patch region): without a table, a pc
//! there is an error, never the end of the stack; with the table the doctor
//! adds for its patch, the walk goes through it.

mod unwind_support;

use doctor::unwind::{Tables, UnwindError, unwind};
use object::{Object, ObjectSection, ObjectSymbol};
use unwind_support::{Patient, Process, compile, has_chain};

/// Copies a position-independent function (a raw nanosleep syscall, no
/// calls) into an anonymous executable mapping and calls it there, as
/// applied patch code would be called. Without a red zone the function
/// moves rsp, so its CFI is more than the entry row.
const COPIED: &str = r#"
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#define KEEP __attribute__((noinline, noclone))
KEEP void region_sleep(void) {
    long secs = 1000, ret;
    __asm__("" : "+r"(secs)); /* no rip-relative constant: the copy must run anywhere */
    struct timespec ts = {secs, 0};
    __asm__ volatile("syscall" : "=a"(ret) : "0"(35L), "D"(&ts), "S"(0L) : "rcx", "r11", "memory");
}
KEEP void caller(void (*fn)(void)) { fn(); __asm__ volatile("" ::: "memory"); }
int main(void) {
    void *region = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memcpy(region, (void *)region_sleep, 256);
    printf("%lx %lx\n", (unsigned long)region, (unsigned long)region_sleep);
    fflush(stdout);
    caller((void (*)(void))region);
    return 0;
}
"#;

#[test]
fn patch_region_is_an_error_without_its_table_and_unwinds_with_it() {
    let (_dir, bin) = compile("copied", COPIED, &["-O2", "-mno-red-zone"]);
    let mut patient = Patient::spawn(&bin);
    let line = patient.read_line();
    let (region, original) = line
        .split_once(' ')
        .map(|(a, b)| {
            (
                u64::from_str_radix(a, 16).unwrap(),
                u64::from_str_radix(b, 16).unwrap(),
            )
        })
        .expect("two addresses");
    let pid = patient.pid();
    patient.wait_in_syscall(pid, &[35]);
    let regs = patient.hold(pid);
    assert!(
        (region..region + 256).contains(&regs.rip),
        "{:#x}",
        regs.rip
    );

    let mut process = Process::load(&patient);
    let memory = patient.memory();
    let err = unwind(&regs, &memory, &process.tables, 64).unwrap_err();
    assert!(
        matches!(err, UnwindError::UnknownCode { frame: 0, pc } if pc == regs.rip),
        "{err}"
    );

    // The executable's own .eh_frame, relocated to the copy: every
    // pc-relative FDE address moves by the same distance as the code.
    let elf = std::fs::read(&bin).unwrap();
    let file = object::File::parse(&*elf).unwrap();
    let symbol = file
        .symbols()
        .find(|s| s.name() == Ok("region_sleep"))
        .unwrap();
    let bias = original - symbol.address();
    let eh_frame = file.section_by_name(".eh_frame").unwrap();
    let delta = region.wrapping_sub(original);
    add_patch(
        &mut process.tables,
        region,
        eh_frame.data().unwrap().to_vec(),
        (eh_frame.address() + bias).wrapping_add(delta),
    );
    let frames = unwind(&regs, &memory, &process.tables, 64).expect("unwind through the region");
    assert_eq!(frames[0].object.as_deref(), Some("patch"));
    let names = process.names(&frames);
    assert!(has_chain(&names[1..], &["caller", "main"]), "{names:?}");
    assert_eq!(
        names.last().map(String::as_str),
        Some("_start"),
        "{names:?}"
    );
}

fn add_patch(tables: &mut Tables, region: u64, eh_frame: Vec<u8>, eh_frame_addr: u64) {
    tables
        .add_code("patch", region..region + 256, eh_frame, eh_frame_addr)
        .expect("patch tables");
}
