//! Symbol references inside operands and directive arguments.
//!
//! One scanner, used both to compare blocks modulo renaming and to rename
//! symbols when a block is copied into the patch: registers (`%rax`),
//! numbers (`0x1b`, `1f`), relocation modifiers (`@PLT`) and string
//! literals are never symbols.

use crate::lex::is_symbol_char;

/// Calls `f(start, end)` for every symbol reference in `s`.
pub fn for_each(s: &str, mut f: impl FnMut(usize, usize)) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            continue;
        }
        if c == b'$' {
            // An immediate: `$.LC0` refers to `.LC0`.
            i += 1;
            continue;
        }
        if is_symbol_char(c) {
            let start = i;
            while i < b.len() && is_symbol_char(b[i]) {
                i += 1;
            }
            let prev = if start > 0 { b[start - 1] } else { b' ' };
            let is_symbol = !c.is_ascii_digit() && prev != b'%' && prev != b'@';
            if is_symbol {
                f(start, i);
            }
            continue;
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idents(s: &str) -> Vec<&str> {
        let mut v = Vec::new();
        for_each(s, |a, b| v.push(&s[a..b]));
        v
    }

    #[test]
    fn registers_numbers_modifiers_and_strings_are_not_symbols() {
        assert_eq!(idents("puts@PLT"), ["puts"]);
        assert_eq!(idents(".LC0(%rip), %rax"), [".LC0"]);
        assert_eq!(idents("$.LC0, %edi"), [".LC0"]);
        assert_eq!(idents("0x1b,.LLSDA5"), [".LLSDA5"]);
        assert_eq!(idents("\"a b\" , count.0+4"), ["count.0"]);
        assert_eq!(idents(".L12-.L6"), [".L12", ".L6"]);
        assert_eq!(idents("1f"), Vec::<&str>::new());
    }
}
