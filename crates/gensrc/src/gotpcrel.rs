//! `--force-gotpcrel`: patch code reaches data outside the patch through
//! GOT entries, because a variable the original imports may lie more than
//! 2 GiB away from where the patch is loaded (seed: "EVERY reference to a
//! non-patch variable"). `kpatch_strip --rel-fixup` relaxes the entries of
//! symbols the original object defines back to direct references.
//!
//! Every instruction with a `sym(%rip)` operand is rewritten so that the
//! address comes from `sym@GOTPCREL(%rip)`, without changing what the
//! instruction computes, the flags it reads or writes, or any memory the
//! surrounding code owns:
//!
//! - `lea sym(%rip), %r64` becomes the GOT load itself;
//! - a load into a 32/64-bit general register uses that register for the
//!   address first (the load overwrites it anyway);
//! - `call`/`jmp *sym(%rip)` use `%r11`, which the SysV ABI leaves free at
//!   every call site (not an argument, not preserved);
//! - everything else (stores, read-modify-write, compares, SSE/AVX, 8/16-bit
//!   loads) borrows a scratch register among `%r11..%r8` that the
//!   instruction does not name: the stack pointer first steps over the
//!   128-byte red zone (leaf functions keep live data there), the scratch
//!   is pushed, used and popped, and the stack pointer steps back. `lea`,
//!   `push`, `pop` and `mov` leave the flags alone, so flags set before are
//!   still seen by the instruction and flags it sets are still seen after.
//!   When the CFA is computed from `%rsp`, `.cfi_adjust_cfa_offset` keeps
//!   the unwind info exact at every instruction.
//!
//! Left as they are: `%fs:` thread-local forms (their offsets are fixed up
//! by `kpatch_strip`, and a GOT entry the original does not have could not
//! be filled), instructions that name `%rsp` or move it (`push`/`pop`),
//! local labels (`.LC0`: constants of the object itself or of the patch),
//! symbols the patch defines, and operands already carrying `@`.

/// Whether the CFA is currently computed from `%rsp`, tracked through the
/// `.cfi_*` directives of one function (they are positional, so a linear
/// walk gives the exact state at every instruction).
/// Outside `.cfi_startproc`/`.cfi_endproc` (code built without unwind
/// tables) there is nothing to adjust.
#[derive(Debug, Clone, Default)]
pub struct Cfa {
    in_proc: bool,
    on_rsp: bool,
    saved: Vec<bool>,
}

impl Cfa {
    pub fn directive(&mut self, name: &str, args: &str) {
        let reg_is_rsp = |r: &str| matches!(r.trim(), "7" | "%rsp" | "rsp");
        match name {
            ".cfi_startproc" => {
                *self = Cfa {
                    in_proc: true,
                    on_rsp: true,
                    saved: Vec::new(),
                }
            }
            ".cfi_endproc" => *self = Cfa::default(),
            ".cfi_def_cfa_register" => self.on_rsp = reg_is_rsp(args),
            ".cfi_def_cfa" => self.on_rsp = reg_is_rsp(args.split(',').next().unwrap_or("")),
            ".cfi_remember_state" => self.saved.push(self.on_rsp),
            ".cfi_restore_state" => {
                if let Some(s) = self.saved.pop() {
                    self.on_rsp = s;
                }
            }
            _ => {}
        }
    }
}

const RED_ZONE: u32 = 128;

/// Rewrites one instruction; `None` when it stays as it is.
/// `is_patch_symbol` says whether a name is defined by the patch itself.
pub fn rewrite(
    mnemonic: &str,
    operands: &str,
    cfa: &Cfa,
    is_patch_symbol: impl Fn(&str) -> bool,
) -> Option<Vec<String>> {
    let ops = split_operands(operands);
    let (idx, sym, offset) = ops.iter().enumerate().find_map(|(i, op)| {
        let (sym, off) = rip_operand(op)?;
        Some((i, sym, off))
    })?;
    if sym.starts_with(".L") || sym.contains('@') || is_patch_symbol(sym) {
        return None;
    }
    let got = |reg: &str| format!("\tmovq\t{sym}@GOTPCREL(%rip), {reg}");
    let with_base = |reg: &str| -> String {
        let mut o: Vec<String> = ops.iter().map(|s| s.to_string()).collect();
        o[idx] = format!("{offset}({reg})");
        if let Some(star) = ops[idx].strip_prefix('*') {
            let _ = star;
            o[idx] = format!("*{offset}({reg})");
        }
        format!("\t{mnemonic}\t{}", o.join(", "))
    };
    let m = mnemonic;

    // `lea sym(%rip), %r64`: the GOT entry holds exactly that address.
    if (m == "leaq" || m == "lea") && ops.len() == 2 && idx == 0 {
        let reg = full_register(ops[1]).filter(|r| r == ops[1])?;
        let mut v = vec![got(&reg)];
        if !offset.is_empty() {
            v.push(format!("\tleaq\t{offset}({reg}), {reg}"));
        }
        return Some(v);
    }
    if m.starts_with("lea") {
        return None;
    }
    // A load that overwrites a whole 64-bit register (32-bit writes clear
    // the upper half) can use it for the address.
    const WHOLE_LOADS: &[&str] = &[
        "mov", "movl", "movq", "movzbl", "movzwl", "movsbl", "movswl", "movzbq", "movzwq",
        "movsbq", "movswq", "movslq",
    ];
    if WHOLE_LOADS.contains(&m)
        && ops.len() == 2
        && idx == 0
        && let Some(reg) = full_register(ops[1])
    {
        return Some(vec![got(&reg), with_base(&reg)]);
    }
    // Indirect calls and jumps: %r11 is free at every call site.
    if matches!(m, "call" | "callq" | "jmp" | "jmpq") && ops[idx].starts_with('*') {
        return Some(vec![got("%r11"), with_base("%r11")]);
    }
    if m.starts_with("push") || m.starts_with("pop") || mentions_rsp(operands) {
        return None;
    }
    let adjust = cfa.in_proc && cfa.on_rsp;
    let scratch = ["%r11", "%r10", "%r9", "%r8"]
        .into_iter()
        .find(|r| !operands.contains(r))?;
    let mut v = vec![format!("\tleaq\t-{RED_ZONE}(%rsp), %rsp")];
    if adjust {
        v.push(format!("\t.cfi_adjust_cfa_offset {RED_ZONE}"));
    }
    v.push(format!("\tpushq\t{scratch}"));
    if adjust {
        v.push("\t.cfi_adjust_cfa_offset 8".into());
    }
    v.push(got(scratch));
    v.push(with_base(scratch));
    v.push(format!("\tpopq\t{scratch}"));
    v.push(format!("\tleaq\t{RED_ZONE}(%rsp), %rsp"));
    if adjust {
        v.push(format!("\t.cfi_adjust_cfa_offset -{}", RED_ZONE + 8));
    }
    Some(v)
}

fn mentions_rsp(ops: &str) -> bool {
    ["%rsp", "%esp", "%sp", "%spl"].iter().any(|r| {
        ops.match_indices(r).any(|(i, _)| {
            !ops[i + r.len()..]
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
        })
    })
}

/// Top-level comma split (commas inside parentheses stay).
fn split_operands(ops: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in ops.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(ops[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    let last = ops[start..].trim();
    if !last.is_empty() || !out.is_empty() {
        out.push(last);
    }
    out
}

/// `sym+8(%rip)` or `*sym(%rip)` -> ("sym", "+8" without the sign if
/// positive). `%fs:` forms and numeric displacements are not ours.
fn rip_operand(op: &str) -> Option<(&str, &str)> {
    let op = op.strip_prefix('*').unwrap_or(op);
    let inner = op.strip_suffix("(%rip)")?;
    if inner.contains(':') || inner.starts_with('$') {
        return None;
    }
    let end = inner.find(['+', '-']).unwrap_or(inner.len());
    let (sym, off) = inner.split_at(end);
    if sym.is_empty()
        || sym.starts_with(|c: char| c.is_ascii_digit())
        || !sym.bytes().all(crate::lex::is_symbol_char)
    {
        // Not a plain symbol: `data16 leaq x@tlsgd(%rip)` puts the prefix
        // word in front, `"quoted names"` are left alone.
        return None;
    }
    Some((sym, off.strip_prefix('+').unwrap_or(off)))
}

/// The 64-bit register holding a 32- or 64-bit destination.
fn full_register(dst: &str) -> Option<String> {
    const R64: [&str; 15] = [
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13",
        "r14", "r15",
    ];
    const R32: [&str; 15] = [
        "eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "r8d", "r9d", "r10d", "r11d", "r12d",
        "r13d", "r14d", "r15d",
    ];
    let r = dst.strip_prefix('%')?;
    if let Some(i) = R64.iter().position(|&x| x == r) {
        return Some(format!("%{}", R64[i]));
    }
    R32.iter()
        .position(|&x| x == r)
        .map(|i| format!("%{}", R64[i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_proc() -> Cfa {
        let mut c = Cfa::default();
        c.directive(".cfi_startproc", "");
        c
    }

    fn rw(m: &str, o: &str) -> Option<Vec<String>> {
        rewrite(m, o, &in_proc(), |s| s == "newvar")
    }

    #[test]
    fn loads_use_their_destination() {
        assert_eq!(
            rw("movl", "counter(%rip), %eax").unwrap(),
            [
                "\tmovq\tcounter@GOTPCREL(%rip), %rax",
                "\tmovl\t(%rax), %eax"
            ]
        );
        assert_eq!(
            rw("movq", "tab+16(%rip), %r9").unwrap(),
            ["\tmovq\ttab@GOTPCREL(%rip), %r9", "\tmovq\t16(%r9), %r9"]
        );
        assert_eq!(
            rw("leaq", "tab(%rip), %rdi").unwrap(),
            ["\tmovq\ttab@GOTPCREL(%rip), %rdi"]
        );
    }

    #[test]
    fn stores_and_rmw_borrow_a_scratch_below_the_red_zone() {
        let v = rw("addl", "$1, counter(%rip)").unwrap();
        assert_eq!(
            v,
            [
                "\tleaq\t-128(%rsp), %rsp",
                "\t.cfi_adjust_cfa_offset 128",
                "\tpushq\t%r11",
                "\t.cfi_adjust_cfa_offset 8",
                "\tmovq\tcounter@GOTPCREL(%rip), %r11",
                "\taddl\t$1, (%r11)",
                "\tpopq\t%r11",
                "\tleaq\t128(%rsp), %rsp",
                "\t.cfi_adjust_cfa_offset -136",
            ]
        );
        // The scratch is never a register the instruction uses.
        let v = rw("movq", "%r11, big(%rip)").unwrap();
        assert!(v.contains(&"\tpushq\t%r10".to_string()), "{v:?}");
        // Without unwind tables there is nothing to adjust.
        let v = rewrite("addl", "$1, counter(%rip)", &Cfa::default(), |_| false).unwrap();
        assert!(!v.iter().any(|l| l.contains(".cfi")), "{v:?}");
        // A frame-pointer CFA needs no adjustment.
        let mut cfa = in_proc();
        cfa.directive(".cfi_def_cfa_register", "6");
        let v = rewrite("movb", "%dl, flag(%rip)", &cfa, |_| false).unwrap();
        assert!(!v.iter().any(|l| l.contains(".cfi")), "{v:?}");
        cfa.directive(".cfi_remember_state", "");
        cfa.directive(".cfi_def_cfa", "7, 8");
        assert!(cfa.on_rsp);
        cfa.directive(".cfi_restore_state", "");
        assert!(!cfa.on_rsp);
    }

    #[test]
    fn calls_through_pointers_use_r11() {
        assert_eq!(
            rw("call", "*hook(%rip)").unwrap(),
            ["\tmovq\thook@GOTPCREL(%rip), %r11", "\tcall\t*(%r11)"]
        );
    }

    #[test]
    fn forms_left_alone() {
        assert!(rw("movl", ".LC0(%rip), %eax").is_none());
        assert!(rw("movl", "newvar(%rip), %eax").is_none());
        assert!(rw("movq", "stderr@GOTPCREL(%rip), %rax").is_none());
        assert!(rw("movl", "%fs:tls@tpoff, %eax").is_none());
        assert!(rw("pushq", "big(%rip)").is_none());
        assert!(rw("movq", "%rsp, big(%rip)").is_none());
        assert!(rw("addl", "$1, %eax").is_none());
        assert!(rw("data16", "leaq x@tlsgd(%rip), %rdi").is_none());
        assert!(rw("data16", "leaq x(%rip), %rdi").is_none());
    }
}
