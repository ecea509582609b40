//! The unwinder on hand-built stacks and hand-assembled CFI: every rule the
//! walk depends on, checked without a live process.

use doctor::unwind::{
    FrameKind, Memory, MemoryError, RESTORE_RT, Registers, Tables, UnwindError, unwind,
};

/// Sparse fake address space.
struct FakeMemory(Vec<(u64, Vec<u8>)>);

impl FakeMemory {
    fn put_u64(&mut self, addr: u64, value: u64) {
        self.put(addr, &value.to_le_bytes());
    }

    fn put(&mut self, addr: u64, bytes: &[u8]) {
        for (base, data) in &mut self.0 {
            if addr >= *base && addr + bytes.len() as u64 <= *base + data.len() as u64 {
                let at = (addr - *base) as usize;
                data[at..at + bytes.len()].copy_from_slice(bytes);
                return;
            }
        }
        panic!("fake memory has no region for {addr:#x}");
    }
}

impl Memory for FakeMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        for (base, data) in &self.0 {
            if addr >= *base && addr + buf.len() as u64 <= *base + data.len() as u64 {
                let at = (addr - *base) as usize;
                buf.copy_from_slice(&data[at..at + buf.len()]);
                return Ok(());
            }
        }
        Err(MemoryError {
            addr,
            len: buf.len(),
            reason: "unmapped in the fake".into(),
        })
    }
}

// DWARF CFA opcodes used below.
const DEF_CFA: u8 = 0x0c;
const DEF_CFA_OFFSET: u8 = 0x0e;
const DEF_CFA_EXPRESSION: u8 = 0x0f;
const EXPRESSION: u8 = 0x10;
const UNDEFINED: u8 = 0x07;
const OFFSET_R16: u8 = 0x80 | 16;
const OFFSET_R6: u8 = 0x80 | 6;
const ADVANCE_1: u8 = 0x40 | 1;
const BREG7: u8 = 0x77;

/// An `.eh_frame` with one CIE (absolute 8-byte FDE addresses, CFA = rsp+8,
/// return address at CFA-8, like the psABI's) and one FDE per function.
fn eh_frame(functions: &[(u64, u64, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut cie = vec![0, 0, 0, 0, 1, b'z', b'R', 0, 1, 0x78, 16, 1, 0x00];
    cie.extend_from_slice(&[DEF_CFA, 7, 8, OFFSET_R16, 1]);
    push_entry(&mut out, cie);
    for (start, len, instructions) in functions {
        let cie_pointer = (out.len() + 4) as u32; // distance back to the CIE
        let mut fde = cie_pointer.to_le_bytes().to_vec();
        fde.extend_from_slice(&start.to_le_bytes());
        fde.extend_from_slice(&len.to_le_bytes());
        fde.push(0);
        fde.extend_from_slice(instructions);
        push_entry(&mut out, fde);
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

fn push_entry(out: &mut Vec<u8>, mut body: Vec<u8>) {
    while !(body.len() + 4).is_multiple_of(8) {
        body.push(0); // DW_CFA_nop
    }
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
}

const LEAF: u64 = 0x1000; // push %rbp at +0; CFA = rsp+16 from +1
const MAIN: u64 = 0x2000; // no frame: CFA = rsp+8
const OUTER: u64 = 0x3000; // outermost: return address undefined
const HANDLER: u64 = 0x4000;
const TRAMPOLINE: u64 = 0x5000;
const EXPR: u64 = 0x6000; // CFA and rbp given by expressions
const LOOP: u64 = 0x5800; // wrong CFI: CFA = rsp, return address at CFA
const STACK: u64 = 0x7000_0000;

fn tables() -> Tables {
    let leaf: &[u8] = &[ADVANCE_1, DEF_CFA_OFFSET, 16, OFFSET_R6, 2];
    let outer: &[u8] = &[UNDEFINED, 16];
    let looping: &[u8] = &[DEF_CFA, 7, 0, OFFSET_R16, 0];
    // CFA = rsp+32 (DW_OP_breg7 32); rbp saved at rsp+8.
    let expr: &[u8] = &[DEF_CFA_EXPRESSION, 2, BREG7, 32, EXPRESSION, 6, 2, BREG7, 8];
    let section = eh_frame(&[
        (LEAF, 0x100, leaf),
        (MAIN, 0x100, &[]),
        (OUTER, 0x100, outer),
        (HANDLER, 0x100, &[]),
        (LOOP, 0x100, looping),
        (EXPR, 0x100, expr),
    ]);
    let mut tables = Tables::new();
    // The code range is wider than the FDEs: 0x1100..0x1200 is known code
    // without unwind info.
    tables
        .add_code("fake.so", LEAF..0x6100, section, 0x9000)
        .unwrap();
    tables
}

fn memory() -> FakeMemory {
    let mut mem = FakeMemory(vec![(STACK, vec![0; 0x1000]), (TRAMPOLINE, vec![0; 16])]);
    mem.put(TRAMPOLINE, &RESTORE_RT);
    mem
}

fn regs(rip: u64, rsp: u64) -> Registers {
    Registers {
        rip,
        rsp,
        rbp: 0xdead,
        ..Registers::default()
    }
}

#[test]
fn walks_leaf_main_outer_and_stops_at_undefined_return_address() {
    let mut mem = memory();
    let sp = STACK + 0x100;
    mem.put_u64(sp, 0xbbbb); // leaf's saved rbp
    mem.put_u64(sp + 8, MAIN + 5); // return into main
    mem.put_u64(sp + 16, OUTER + 9); // main's return into outer
    let frames = unwind(&regs(LEAF + 0x10, sp), &mem, &tables(), 16).unwrap();
    let pcs: Vec<u64> = frames.iter().map(|f| f.pc).collect();
    assert_eq!(pcs, [LEAF + 0x10, MAIN + 5, OUTER + 9]);
    let kinds: Vec<FrameKind> = frames.iter().map(|f| f.kind).collect();
    assert_eq!(kinds, [FrameKind::Top, FrameKind::Call, FrameKind::Call]);
    assert_eq!(frames[0].cfa, Some(sp + 16));
    assert_eq!(frames[1].sp, sp + 16);
    assert_eq!(frames[2].sp, sp + 24);
    assert_eq!(frames[1].lookup_pc(), MAIN + 4);
    assert_eq!(frames[2].object.as_deref(), Some("fake.so"));
}

#[test]
fn top_frame_at_function_entry_uses_the_entry_row() {
    let mut mem = memory();
    let sp = STACK + 0x100;
    mem.put_u64(sp, OUTER + 1);
    let frames = unwind(&regs(LEAF, sp), &mem, &tables(), 16).unwrap();
    let pcs: Vec<u64> = frames.iter().map(|f| f.pc).collect();
    assert_eq!(pcs, [LEAF, OUTER + 1]);
}

#[test]
fn return_address_zero_ends_the_stack() {
    let mut mem = memory();
    let sp = STACK + 0x100;
    mem.put_u64(sp, 0);
    let frames = unwind(&regs(MAIN + 3, sp), &mem, &tables(), 16).unwrap();
    assert_eq!(frames.len(), 1);
}

#[test]
fn expression_rules_give_cfa_and_saved_register() {
    let mut mem = memory();
    let sp = STACK + 0x100;
    mem.put_u64(sp + 8, 0x1234); // rbp, by DW_CFA_expression rsp+8
    mem.put_u64(sp + 24, MAIN + 1); // return address at CFA-8 = rsp+24
    mem.put_u64(sp + 32, 0); // main returns to 0
    let frames = unwind(&regs(EXPR + 4, sp), &mem, &tables(), 16).unwrap();
    let pcs: Vec<u64> = frames.iter().map(|f| f.pc).collect();
    assert_eq!(pcs, [EXPR + 4, MAIN + 1]);
    assert_eq!(frames[0].cfa, Some(sp + 32));
    assert_eq!(frames[1].sp, sp + 32);
}

/// handler (returns into the trampoline) -> signal frame -> leaf interrupted
/// at its very first instruction -> main -> outer.
#[test]
fn signal_frame_resumes_at_the_interrupted_pc_without_decrement() {
    let mut mem = memory();
    let handler_sp = STACK + 0x100;
    let ucontext = handler_sp + 8;
    let interrupted_sp = STACK + 0x800;
    mem.put_u64(handler_sp, TRAMPOLINE); // pretcode
    mem.put_u64(ucontext + 40 + 10 * 8, 0x7777); // saved rbp
    mem.put_u64(ucontext + 40 + 15 * 8, interrupted_sp); // saved rsp
    mem.put_u64(ucontext + 40 + 16 * 8, LEAF); // saved rip
    mem.put_u64(interrupted_sp, MAIN + 7);
    mem.put_u64(interrupted_sp + 8, OUTER + 2);
    let frames = unwind(&regs(HANDLER + 8, handler_sp), &mem, &tables(), 16).unwrap();
    let summary: Vec<(u64, FrameKind)> = frames.iter().map(|f| (f.pc, f.kind)).collect();
    assert_eq!(
        summary,
        [
            (HANDLER + 8, FrameKind::Top),
            (TRAMPOLINE, FrameKind::SignalTrampoline),
            (LEAF, FrameKind::Interrupted),
            (MAIN + 7, FrameKind::Call),
            (OUTER + 2, FrameKind::Call),
        ]
    );
    assert_eq!(frames[1].cfa, Some(ucontext));
    assert_eq!(frames[2].sp, interrupted_sp);
    // LEAF is the first byte of known code: looking it up at pc-1 would
    // have failed with "unknown code".
    assert_eq!(frames[2].lookup_pc(), LEAF);
}

#[test]
fn pc_in_anonymous_memory_is_an_error_naming_it() {
    let mem = memory();
    let err = unwind(&regs(0x8000, STACK + 0x100), &mem, &tables(), 16).unwrap_err();
    assert!(
        matches!(
            err,
            UnwindError::UnknownCode {
                pc: 0x8000,
                frame: 0
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("0x8000"), "{err}");
}

#[test]
fn return_into_anonymous_memory_is_an_error_not_the_end() {
    let mut mem = memory();
    let sp = STACK + 0x100;
    mem.put_u64(sp, 0x8123);
    let err = unwind(&regs(MAIN + 1, sp), &mem, &tables(), 16).unwrap_err();
    assert!(
        matches!(
            err,
            UnwindError::UnknownCode {
                frame: 1,
                pc: 0x8122
            }
        ),
        "{err}"
    );
}

#[test]
fn known_code_without_fde_is_an_error_naming_the_object() {
    let mem = memory();
    let err = unwind(&regs(0x1150, STACK + 0x100), &mem, &tables(), 16).unwrap_err();
    assert!(
        matches!(err, UnwindError::NoFde { pc: 0x1150, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("fake.so"), "{err}");
}

#[test]
fn unreadable_stack_is_an_error() {
    let mem = memory();
    let err = unwind(&regs(MAIN + 1, STACK + 0x2000), &mem, &tables(), 16).unwrap_err();
    assert!(matches!(err, UnwindError::Cfi { frame: 0, .. }), "{err}");
    assert!(err.to_string().contains("0x70002000"), "{err}");
}

#[test]
fn a_frame_whose_caller_has_the_same_stack_is_no_progress() {
    // A corrupt or wrong CFA rule must not loop until max_frames.
    let mut mem = memory();
    let sp = STACK + 0x100;
    mem.put_u64(sp, LOOP + 1);
    let err = unwind(&regs(LOOP + 1, sp), &mem, &tables(), 16).unwrap_err();
    assert!(
        matches!(err, UnwindError::NoProgress { frame: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("fake.so"), "{err}");
}

#[test]
fn a_stack_deeper_than_max_frames_is_an_error() {
    // main's return address points back into main, one word further up
    // each time: endless but progressing, so only the limit stops it.
    let mut mem = memory();
    let sp = STACK + 0x100;
    for i in 0..64 {
        mem.put_u64(sp + 8 * i, MAIN + 1);
    }
    let err = unwind(&regs(MAIN + 1, sp), &mem, &tables(), 16).unwrap_err();
    assert!(matches!(err, UnwindError::TooDeep { max: 16, .. }), "{err}");
}

#[test]
fn tables_reject_overlapping_code_and_forget_removed_regions() {
    let mut tables = tables();
    let err = tables
        .add_code("patch", 0x6000..0x6800, Vec::new(), 0)
        .unwrap_err();
    assert!(err.to_string().contains("fake.so"), "{err}");
    tables
        .add_code(
            "patch",
            0x10000..0x10100,
            eh_frame(&[(0x10000, 0x100, &[])]),
            0,
        )
        .unwrap();
    assert_eq!(tables.object_at(0x10010), Some("patch"));
    assert_eq!(tables.remove("patch"), 1);
    assert_eq!(tables.object_at(0x10010), None);
}

#[test]
fn a_thread_stopped_inside_the_trampoline_unwinds_from_its_ucontext() {
    // Stopped in rt_sigreturn itself: rip is past the syscall, rsp still
    // points at the ucontext.
    let mut mem = memory();
    let ucontext = STACK + 0x100;
    let interrupted_sp = STACK + 0x800;
    mem.put_u64(ucontext + 40 + 15 * 8, interrupted_sp);
    mem.put_u64(ucontext + 40 + 16 * 8, MAIN + 3);
    mem.put_u64(interrupted_sp, OUTER + 2);
    for rip in [TRAMPOLINE, TRAMPOLINE + 7, TRAMPOLINE + 9] {
        let frames = unwind(&regs(rip, ucontext), &mem, &tables(), 16).unwrap();
        let summary: Vec<(u64, FrameKind)> = frames.iter().map(|f| (f.pc, f.kind)).collect();
        assert_eq!(
            summary,
            [
                (rip, FrameKind::SignalTrampoline),
                (MAIN + 3, FrameKind::Interrupted),
                (OUTER + 2, FrameKind::Call),
            ]
        );
    }
}

#[test]
fn a_return_address_just_past_the_trampoline_start_is_not_a_signal_frame() {
    // Only an exact pc may point into the trampoline's middle; a return
    // address there is looked up like any other (and here has no FDE).
    let mut mem = memory();
    let sp = STACK + 0x100;
    mem.put_u64(sp, TRAMPOLINE + 7);
    let err = unwind(&regs(MAIN + 1, sp), &mem, &tables(), 16).unwrap_err();
    assert!(matches!(err, UnwindError::NoFde { frame: 1, .. }), "{err}");
}

/// glibc's `__start_context`: where the entry function of a stack made by
/// makecontext returns. It has no unwind row before it (the usual lookup at
/// pc - 1), so it is recognised by its code and ends the walk; other code
/// there stays an error, and the frames up to it are kept for a caller
/// that must judge a stack it cannot walk to the end.
#[test]
fn a_coroutine_stack_ends_at_start_context() {
    const START: u64 = 0x1150;
    let code: [u8; 14] = [
        0x48, 0x89, 0xdc, 0x48, 0x8b, 0x3c, 0x24, 0x48, 0x85, 0xff, 0x74, 0x08, 0xe8, 0x00,
    ];
    let sp = STACK + 0x100;
    for (bytes, ends) in [(code, true), ([0x90; 14], false)] {
        let mut mem = memory();
        mem.0.push((START, bytes.to_vec()));
        mem.put_u64(sp, START); // main's return, as makecontext sets it
        let walked = unwind(&regs(MAIN + 3, sp), &mem, &tables(), 16);
        let (frames, failure) =
            doctor::unwind::unwind_partial(&regs(MAIN + 3, sp), &mem, &tables(), 16);
        assert_eq!(frames.iter().map(|f| f.pc).collect::<Vec<_>>()[0], MAIN + 3);
        if ends {
            let frames = walked.unwrap();
            assert_eq!(
                frames.iter().map(|f| f.pc).collect::<Vec<_>>(),
                [MAIN + 3, START]
            );
            assert!(failure.is_none());
        } else {
            assert!(
                matches!(walked, Err(UnwindError::NoFde { .. })),
                "{walked:?}"
            );
            assert!(failure.is_some());
            assert_eq!(frames.len(), 1, "main's frame kept");
        }
    }
}
