//! Signal frames: the kernel's `rt_sigframe` below a handler, recognised by
//! the sigreturn trampoline the handler returns into.
//!
//! x86-64 layout (kernel `struct rt_sigframe`, glibc `ucontext_t`): the
//! handler's return address `pretcode` points at the trampoline; right
//! above it sits `struct ucontext` {uc_flags 8, uc_link 8, uc_stack 24,
//! uc_mcontext ...}, and uc_mcontext begins with the saved general registers
//! in the order r8..r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip. When the
//! handler returns, `ret` pops `pretcode`, so at the trampoline rsp points at
//! the ucontext.

use super::memory::{Memory, MemoryError, PageCache};
use super::registers::RegisterFile;

/// glibc's `__restore_rt`: `mov $0xf,%rax; syscall` (rt_sigreturn).
pub const RESTORE_RT: [u8; 9] = [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05];

/// Offset of uc_mcontext's first register inside `struct ucontext`.
const MCONTEXT: u64 = 40;

/// DWARF column of each saved register, in sigcontext order.
const SIGCONTEXT_COLUMNS: [u16; 17] = [
    8,  // r8
    9,  // r9
    10, // r10
    11, // r11
    12, // r12
    13, // r13
    14, // r14
    15, // r15
    5,  // rdi
    4,  // rsi
    6,  // rbp
    3,  // rbx
    1,  // rdx
    0,  // rax
    2,  // rcx
    7,  // rsp
    16, // rip
];

/// Whether `pc` is in the sigreturn trampoline. A return address can only
/// point at its start; an exact pc (a stopped thread, or one interrupted by a
/// nested signal) may also be past the `mov` or past the `syscall`.
pub(crate) fn trampoline_at(memory: &PageCache<'_>, pc: u64, exact: bool) -> bool {
    let starts: &[u64] = if exact { &[0, 7, 9] } else { &[0] };
    starts.iter().any(|back| {
        let mut code = [0u8; RESTORE_RT.len()];
        pc.checked_sub(*back)
            .is_some_and(|start| memory.read(start, &mut code).is_ok() && code == RESTORE_RT)
    })
}

/// The interrupted registers saved in the ucontext at `ucontext`.
pub(crate) fn interrupted(
    memory: &PageCache<'_>,
    ucontext: u64,
) -> Result<RegisterFile, MemoryError> {
    let mut saved = [0u8; 8 * SIGCONTEXT_COLUMNS.len()];
    memory.read(ucontext + MCONTEXT, &mut saved)?;
    let mut regs = RegisterFile::from(&super::Registers::default());
    for (column, word) in SIGCONTEXT_COLUMNS.iter().zip(saved.chunks_exact(8)) {
        let mut value = [0u8; 8];
        value.copy_from_slice(word);
        regs.set(*column, Some(u64::from_le_bytes(value)));
    }
    Ok(regs)
}
