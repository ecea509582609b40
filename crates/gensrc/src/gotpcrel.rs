//! `--force-gotpcrel`: patch code reaches data of other objects through
//! the GOT, because a variable the original imports (from libc, say) may be
//! more than 2 GiB away from where the patch is loaded.
//!
//! Only rewrites that need no extra register and keep the flags are done
//! here: a load into a 32- or 64-bit general register uses that register
//! to hold the address first (`mov` and `lea` do not touch the flags, and a
//! 32-bit write clears the upper half anyway, so nothing the code relies
//! on is lost). Every other form keeps its direct `sym(%rip)` operand,
//! which is still correct for data of the original object, where
//! `kpatch_strip --rel-fixup` would relax a GOT reference back to anyway.

/// Rewrites one instruction; `None` when it stays as it is.
/// `is_patch_symbol` says whether a name is defined by the patch itself.
pub fn rewrite(
    mnemonic: &str,
    operands: &str,
    is_patch_symbol: impl Fn(&str) -> bool,
) -> Option<Vec<String>> {
    let (src, dst) = split_two(operands)?;
    let (sym, offset) = rip_operand(src)?;
    if sym.starts_with(".L") || sym.contains('@') || is_patch_symbol(sym) {
        return None;
    }
    let reg64 = full_register(dst)?;
    let load = format!("\tmovq\t{sym}@GOTPCREL(%rip), {reg64}");
    let m = mnemonic;
    if (m == "leaq" || m == "lea") && dst.starts_with("%r") {
        let mut v = vec![load];
        if !offset.is_empty() {
            v.push(format!(
                "\tleaq\t{}({reg64}), {reg64}",
                offset.trim_start_matches('+')
            ));
        }
        return Some(v);
    }
    let loads = [
        "mov", "movl", "movq", "movzbl", "movzwl", "movsbl", "movswl", "movzbq", "movzwq",
        "movsbq", "movswq", "movslq",
    ];
    if !loads.contains(&m) {
        return None;
    }
    // A plain `mov` to a 32-bit register is a 32-bit load; fine either way.
    let off = offset.trim_start_matches('+');
    Some(vec![load, format!("\t{m}\t{off}({reg64}), {dst}")])
}

fn split_two(ops: &str) -> Option<(&str, &str)> {
    // `sym(%rip), %reg`: exactly one top-level comma.
    let mut depth = 0;
    let mut comma = None;
    for (i, c) in ops.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                if comma.is_some() {
                    return None;
                }
                comma = Some(i);
            }
            _ => {}
        }
    }
    let c = comma?;
    Some((ops[..c].trim(), ops[c + 1..].trim()))
}

/// `sym+8(%rip)` -> ("sym", "+8").
fn rip_operand(op: &str) -> Option<(&str, &str)> {
    let inner = op.strip_suffix("(%rip)")?;
    if inner.contains(':') || inner.starts_with('$') {
        return None;
    }
    let end = inner.find(['+', '-']).unwrap_or(inner.len());
    let (sym, off) = inner.split_at(end);
    if sym.is_empty() || sym.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    Some((sym, off))
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

    fn rw(m: &str, o: &str) -> Option<Vec<String>> {
        rewrite(m, o, |s| s == "newvar")
    }

    #[test]
    fn loads_go_through_the_got() {
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
    fn unsafe_or_local_forms_stay() {
        assert!(rw("movb", "flag(%rip), %al").is_none()); // partial register
        assert!(rw("movl", "%eax, counter(%rip)").is_none()); // store: phase 2
        assert!(rw("movl", ".LC0(%rip), %eax").is_none());
        assert!(rw("movl", "newvar(%rip), %eax").is_none());
        assert!(rw("movq", "stderr@GOTPCREL(%rip), %rax").is_none());
        assert!(rw("addl", "counter(%rip), %eax").is_none());
    }
}
