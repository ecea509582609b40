//! The register file the unwinder carries from frame to frame.

/// The x86-64 general-purpose registers and `rip` of one frame.
///
/// Our own type, so that the unwinder does not depend on how the caller
/// obtained the registers (ptrace, a core file, a test's fake stack).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Registers {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub rsp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
}

impl From<libc::user_regs_struct> for Registers {
    fn from(r: libc::user_regs_struct) -> Self {
        Registers {
            rax: r.rax,
            rbx: r.rbx,
            rcx: r.rcx,
            rdx: r.rdx,
            rsi: r.rsi,
            rdi: r.rdi,
            rbp: r.rbp,
            rsp: r.rsp,
            r8: r.r8,
            r9: r.r9,
            r10: r.r10,
            r11: r.r11,
            r12: r.r12,
            r13: r.r13,
            r14: r.r14,
            r15: r.r15,
            rip: r.rip,
        }
    }
}

/// DWARF register numbers of `rax` and `rsp` in the x86-64 psABI numbering.
pub(crate) const RAX: u16 = 0;
pub(crate) const RSP: u16 = 7;
/// DWARF column of the return address (`rip`) in the x86-64 psABI numbering.
pub(crate) const RIP: u16 = 16;
/// Columns 0..=16: the sixteen GPRs and the return address.
pub(crate) const COLUMNS: usize = 17;

/// Register values as the unwinder knows them: `None` once a CFI rule made a
/// register unrecoverable, so that a rule depending on it fails loudly
/// instead of computing with a stale value.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RegisterFile([Option<u64>; COLUMNS]);

impl RegisterFile {
    pub(crate) fn get(&self, column: u16) -> Option<u64> {
        self.0.get(usize::from(column)).copied().flatten()
    }

    pub(crate) fn set(&mut self, column: u16, value: Option<u64>) {
        if let Some(slot) = self.0.get_mut(usize::from(column)) {
            *slot = value;
        }
    }

    pub(crate) fn pc(&self) -> Option<u64> {
        self.get(RIP)
    }

    pub(crate) fn sp(&self) -> Option<u64> {
        self.get(RSP)
    }
}

impl From<&Registers> for RegisterFile {
    fn from(r: &Registers) -> Self {
        // Index = DWARF register number (psABI figure 3.36).
        RegisterFile([
            Some(r.rax),
            Some(r.rdx),
            Some(r.rcx),
            Some(r.rbx),
            Some(r.rsi),
            Some(r.rdi),
            Some(r.rbp),
            Some(r.rsp),
            Some(r.r8),
            Some(r.r9),
            Some(r.r10),
            Some(r.r11),
            Some(r.r12),
            Some(r.r13),
            Some(r.r14),
            Some(r.r15),
            Some(r.rip),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dwarf_numbering_follows_the_psabi() {
        let regs = Registers {
            rax: 0,
            rdx: 1,
            rcx: 2,
            rbx: 3,
            rsi: 4,
            rdi: 5,
            rbp: 6,
            rsp: 7,
            r8: 8,
            r9: 9,
            r10: 10,
            r11: 11,
            r12: 12,
            r13: 13,
            r14: 14,
            r15: 15,
            rip: 16,
        };
        let file = RegisterFile::from(&regs);
        for column in 0..COLUMNS as u16 {
            assert_eq!(file.get(column), Some(u64::from(column)));
        }
        assert_eq!(file.get(17), None);
    }
}
