//! Turning a GOT-indirect reference into a direct PC-relative one by
//! rewriting the instruction in the patch's own code, so that the doctor
//! need not provide a GOT slot for something it can reach within ±2 GiB.
//! The forms are the ones the x86-64 psABI lists for GOTPCRELX relaxation.

/// What the rewrite did to the relocation's place.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Relaxed {
    /// `mov foo@GOTPCREL(%rip), %reg` became `lea foo(%rip), %reg`
    /// (or was already a `lea`, relaxed by the linker).
    Lea,
    /// `call *foo@GOTPCREL(%rip)` became `addr32 call foo`.
    Call,
    /// `jmp *foo@GOTPCREL(%rip)` became `jmp foo; nop`: the displacement
    /// moved one byte back.
    Jmp,
}

/// Rewrites the instruction whose 32-bit displacement starts at `pos` in
/// `code`. Returns `None` (code unchanged) for forms it cannot relax.
pub(crate) fn relax(code: &mut [u8], pos: usize) -> Option<Relaxed> {
    if pos < 2 || pos + 4 > code.len() {
        return None;
    }
    let (op, modrm) = (code[pos - 2], code[pos - 1]);
    let rip_relative = modrm & 0xc7 == 0x05;
    match (op, modrm) {
        (0x8b, _) if rip_relative => {
            code[pos - 2] = 0x8d;
            Some(Relaxed::Lea)
        }
        (0x8d, _) if rip_relative => Some(Relaxed::Lea),
        (0xff, 0x15) => {
            code[pos - 2] = 0x67;
            code[pos - 1] = 0xe8;
            Some(Relaxed::Call)
        }
        (0xff, 0x25) => {
            let disp = [code[pos], code[pos + 1], code[pos + 2], code[pos + 3]];
            code[pos - 2] = 0xe9;
            code[pos - 1..pos + 3].copy_from_slice(&disp);
            code[pos + 3] = 0x90;
            Some(Relaxed::Jmp)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mov_becomes_lea_and_lea_stays() {
        // mov 0x0(%rip),%rax ; lea 0x0(%rip),%rcx
        let mut code = vec![0x48, 0x8b, 0x05, 1, 2, 3, 4, 0x48, 0x8d, 0x0d, 5, 6, 7, 8];
        assert_eq!(relax(&mut code, 3), Some(Relaxed::Lea));
        assert_eq!(relax(&mut code, 10), Some(Relaxed::Lea));
        assert_eq!(
            code,
            [0x48, 0x8d, 0x05, 1, 2, 3, 4, 0x48, 0x8d, 0x0d, 5, 6, 7, 8]
        );
    }

    #[test]
    fn call_and_jmp_through_got_become_direct() {
        let mut call = vec![0xff, 0x15, 1, 2, 3, 4];
        assert_eq!(relax(&mut call, 2), Some(Relaxed::Call));
        assert_eq!(call, [0x67, 0xe8, 1, 2, 3, 4]);
        let mut jmp = vec![0xff, 0x25, 1, 2, 3, 4];
        assert_eq!(relax(&mut jmp, 2), Some(Relaxed::Jmp));
        assert_eq!(jmp, [0xe9, 1, 2, 3, 4, 0x90]);
    }

    #[test]
    fn other_forms_are_left_alone() {
        // add foo@GOTPCREL(%rip),%rax: 48 03 05 disp32
        let mut add = vec![0x48, 0x03, 0x05, 1, 2, 3, 4];
        assert_eq!(relax(&mut add, 3), None);
        assert_eq!(add, [0x48, 0x03, 0x05, 1, 2, 3, 4]);
        // mov (%rax),%rax is not RIP-relative.
        let mut indirect = vec![0x48, 0x8b, 0x00, 1, 2, 3, 4];
        assert_eq!(relax(&mut indirect, 3), None);
        assert_eq!(relax(&mut [0u8; 3], 1), None);
    }
}
