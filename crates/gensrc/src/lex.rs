//! Lines of GNU as text turned into classified statements.
//!
//! The lexer never copies: every statement borrows from the input. A line
//! `label: insn` yields two statements with the same line number, so later
//! passes see one label or one directive or one instruction at a time.

use crate::error::Error;

/// What one statement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind<'a> {
    /// A label definition, `name:`.
    Label(&'a str),
    /// `.name args`; `args` is trimmed and has its trailing comment removed.
    Directive { name: &'a str, args: &'a str },
    /// `mnemonic operands`; operands trimmed, comment removed.
    Instruction {
        mnemonic: &'a str,
        operands: &'a str,
    },
}

/// One statement with the number (1-based) and index (0-based) of its line.
#[derive(Debug, Clone, Copy)]
pub struct Stmt<'a> {
    pub line: u32,
    pub kind: Kind<'a>,
}

impl Stmt<'_> {
    pub fn line_index(&self) -> usize {
        self.line as usize - 1
    }
}

/// A statement as stored: offsets into the text instead of slices, 16
/// bytes instead of 48 (a 40 MB file keeps about 700 000 of them).
#[derive(Debug, Clone, Copy)]
pub struct Packed {
    line: u32,
    head: u32,
    args_len: u32,
    head_len: u16,
    /// Bytes between head and arguments; 255 means "at least 255, trim".
    gap: u8,
    tag: u8,
}

const TAG_LABEL: u8 = 0;
const TAG_DIRECTIVE: u8 = 1;
const TAG_INSTRUCTION: u8 = 2;

/// The statements of a file that the model keeps.
pub struct Lexed<'a> {
    text: &'a str,
    packed: Vec<Packed>,
}

impl<'a> Lexed<'a> {
    pub fn new(text: &'a str) -> Self {
        // Generous: capacity that is never touched costs no memory, and
        // growing by doubling would zero and copy pages again and again.
        Lexed {
            text,
            packed: Vec::with_capacity(text.len() / 24),
        }
    }

    pub fn shrink_to_fit(&mut self) {
        self.packed.shrink_to_fit();
    }

    /// Stores `st`, which must borrow from this file's text.
    pub fn push(&mut self, st: Stmt<'a>) -> Result<(), &'static str> {
        let base = self.text.as_ptr() as usize;
        let off = |s: &str| s.as_ptr() as usize - base;
        let (tag, head, args) = match st.kind {
            Kind::Label(l) => (TAG_LABEL, l, ""),
            Kind::Directive { name, args } => (TAG_DIRECTIVE, name, args),
            Kind::Instruction { mnemonic, operands } => (TAG_INSTRUCTION, mnemonic, operands),
        };
        let h = off(head);
        let head_len = u16::try_from(head.len()).map_err(|_| "name longer than 65535 bytes")?;
        let after = h + head.len();
        let (gap, args_len) = if args.is_empty() {
            (0u8, 0u32)
        } else {
            let real_gap = off(args) - after;
            let gap = real_gap.min(255);
            let len = off(args) + args.len() - (after + gap);
            (
                gap as u8,
                u32::try_from(len).map_err(|_| "statement longer than 4 GiB")?,
            )
        };
        self.packed.push(Packed {
            line: st.line,
            head: u32::try_from(h).map_err(|_| "input larger than 4 GiB")?,
            args_len,
            head_len,
            gap,
            tag,
        });
        Ok(())
    }

    /// Statement `i`.
    pub fn get(&self, i: usize) -> Stmt<'a> {
        let p = self.packed[i];
        let h = p.head as usize;
        let head = &self.text[h..h + p.head_len as usize];
        let a = h + p.head_len as usize + p.gap as usize;
        let mut args = &self.text[a..a + p.args_len as usize];
        if p.gap == 255 {
            args = args.trim_start();
        }
        let kind = match p.tag {
            TAG_LABEL => Kind::Label(head),
            TAG_DIRECTIVE => Kind::Directive { name: head, args },
            _ => Kind::Instruction {
                mnemonic: head,
                operands: args,
            },
        };
        Stmt { line: p.line, kind }
    }

    /// Statements `range`, in order.
    pub fn range(
        &self,
        range: impl std::ops::RangeBounds<usize>,
    ) -> impl Iterator<Item = Stmt<'a>> + '_ {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e + 1,
            Bound::Excluded(&e) => e,
            Bound::Unbounded => self.packed.len(),
        };
        (start..end).map(move |i| self.get(i))
    }
}

/// Calls `each` for every statement of `text`, in order. `file` only names
/// the input in errors.
pub fn lex_each<'a>(
    file: &str,
    text: &'a str,
    mut each: impl FnMut(Stmt<'a>) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut in_block_comment = false;
    let mut segments: Vec<&'a str> = Vec::new();
    let mut line = 0u32;
    for raw in text.lines() {
        line += 1;
        // Fast path: most lines have no comment, string or separator.
        if !in_block_comment && !raw.bytes().any(|b| matches!(b, b'#' | b';' | b'"' | b'/')) {
            lex_segment(file, line, raw, &mut each)?;
            continue;
        }
        segments.clear();
        split_segments(raw, &mut in_block_comment, &mut segments).map_err(|m| Error::Parse {
            file: file.to_string(),
            line,
            msg: m.to_string(),
        })?;
        for seg in &segments {
            lex_segment(file, line, seg, &mut each)?;
        }
    }
    if in_block_comment {
        return Err(Error::Parse {
            file: file.to_string(),
            line,
            msg: "unterminated /* comment".to_string(),
        });
    }
    Ok(())
}

/// Every statement of `text`.
#[cfg(test)]
pub fn lex<'a>(file: &str, text: &'a str) -> Result<Vec<Stmt<'a>>, Error> {
    let mut stmts = Vec::new();
    lex_each(file, text, |s| {
        stmts.push(s);
        Ok(())
    })?;
    Ok(stmts)
}

fn lex_segment<'a>(
    file: &str,
    line: u32,
    seg: &'a str,
    each: &mut impl FnMut(Stmt<'a>) -> Result<(), Error>,
) -> Result<(), Error> {
    let err = |msg: String| Error::Parse {
        file: file.to_string(),
        line,
        msg,
    };
    let mut rest = seg.trim();
    // Leading labels; gas allows several on one line.
    while let Some((name, after)) = split_label(rest) {
        each(Stmt {
            line,
            kind: Kind::Label(name),
        })?;
        rest = after.trim_start();
    }
    if rest.is_empty() {
        return Ok(());
    }
    if rest.bytes().any(|b| b < 0x20 && b != b'\t') {
        return Err(err("control character in statement".into()));
    }
    let (head, tail) = split_word(rest);
    let kind = if head.starts_with('.') {
        Kind::Directive {
            name: head,
            args: tail,
        }
    } else if head
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'{')
    {
        Kind::Instruction {
            mnemonic: head,
            operands: tail,
        }
    } else {
        return Err(err(format!("cannot parse statement `{rest}`")));
    };
    each(Stmt { line, kind })
}

/// Cuts one line into code segments: `;` separates statements, `#` ends
/// the line, `/* */` is skipped, all only outside string literals.
/// `in_block` carries an open `/*` across lines.
fn split_segments<'a>(
    s: &'a str,
    in_block: &mut bool,
    out: &mut Vec<&'a str>,
) -> Result<(), &'static str> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut start = 0;
    if *in_block {
        match s.find("*/") {
            Some(end) => {
                *in_block = false;
                i = end + 2;
                start = i;
            }
            None => return Ok(()),
        }
    }
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            match c {
                b'\\' => i += 1,
                b'"' => in_str = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'#' => {
                out.push(&s[start..i]);
                return Ok(());
            }
            b';' => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                out.push(&s[start..i]);
                match s[i + 2..].find("*/") {
                    Some(end) => {
                        i = i + 2 + end + 2;
                        start = i;
                        continue;
                    }
                    None => {
                        *in_block = true;
                        return Ok(());
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    if in_str {
        return Err("unterminated string literal");
    }
    out.push(&s[start..]);
    Ok(())
}

/// `name: rest` -> (name, rest) when the line starts with a label.
fn split_label(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    if b.first() == Some(&b'"') {
        let end = s[1..].find('"')? + 1;
        return s[end + 1..]
            .strip_prefix(':')
            .map(|rest| (&s[..=end], rest));
    }
    let n = b.iter().take_while(|&&c| is_symbol_char(c)).count();
    if n == 0 || b[0].is_ascii_digit() && !b[..n].iter().all(u8::is_ascii_digit) {
        return None;
    }
    if b.get(n) == Some(&b':') && b.get(n + 1) != Some(&b':') {
        Some((&s[..n], &s[n + 1..]))
    } else {
        None
    }
}

fn split_word(s: &str) -> (&str, &str) {
    match s.find([' ', '\t']) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    }
}

/// Characters gas accepts inside a symbol name.
pub fn is_symbol_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'$'
}

/// Is `name` an assembler-local label (never reaches the symbol table)?
pub fn is_local_label(name: &str) -> bool {
    name.starts_with(".L")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_then_instruction_gives_two_statements() {
        let l = lex("t.s", "foo:\tret # c\n").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].kind, Kind::Label("foo"));
        assert_eq!(
            l[1].kind,
            Kind::Instruction {
                mnemonic: "ret",
                operands: ""
            }
        );
    }

    #[test]
    fn hash_inside_string_is_not_a_comment() {
        let l = lex("t.s", "\t.string \"a#b\" # real\n").unwrap();
        assert_eq!(
            l[0].kind,
            Kind::Directive {
                name: ".string",
                args: "\"a#b\""
            }
        );
    }

    #[test]
    fn garbage_names_file_and_line() {
        let e = lex("x.s", "\tret\n@@@ nope\n").err().unwrap().to_string();
        assert!(e.contains("x.s:2"), "{e}");
    }

    #[test]
    fn unterminated_string_is_an_error() {
        let e = lex("y.s", "\t.string \"abc\n").err().unwrap().to_string();
        assert!(e.contains("y.s:1") && e.contains("unterminated"), "{e}");
    }

    #[test]
    fn packed_statements_read_back_the_same() {
        let text = "f:\tmovl\t$1, %eax\n\t.section .text.x,\"ax\"\nlabel:\n\tret\n";
        let all = lex("t.s", text).unwrap();
        let mut packed = Lexed::new(text);
        for st in &all {
            packed.push(*st).unwrap();
        }
        for (i, st) in all.iter().enumerate() {
            let back = packed.get(i);
            assert_eq!((back.line, back.kind), (st.line, st.kind));
        }
    }

    #[test]
    fn block_comments_span_lines() {
        let l = lex("t.s", "nop /* a\nb */ ret\n").unwrap();
        assert_eq!(l.len(), 2);
    }
}
