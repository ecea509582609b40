//! Functions whose only difference is source line numbers (`__LINE__`).
//!
//! Adding one line near the top of a file shifts every line below it; code
//! that embeds `__LINE__` (assertions, corruption reports) then differs in
//! integer immediates only. Such a function is not patched when every
//! differing number `x -> y` is a line shift the `.loc` directives of the
//! same function confirm: some statement sits at source line `x` in the
//! original and at line `y` at the same position in the patched version.
//! A real constant change would need that coincidence at every differing
//! number, on top of identical code everywhere else.

use std::collections::HashSet;

use crate::model::Model;

use crate::canon::CanonLine;

/// Source line pairs (original, patched) seen at aligned statements.
fn line_pairs(a: &[CanonLine], b: &[CanonLine]) -> HashSet<(u32, u32)> {
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.src_line != 0 && y.src_line != 0 && x.src_line != y.src_line)
        .map(|(x, y)| (x.src_line, y.src_line))
        .collect()
}

/// `Some(shifts)` when `a` and `b` differ only in line-number immediates;
/// `shifts` lists the (original, patched) numbers that differ.
/// `moved(x, y)` tells other evidence that line `x` moved to `y` (the
/// `.loc` sequences of the two functions, line moves of the whole file).
pub fn only_line_numbers(
    a: &[CanonLine],
    b: &[CanonLine],
    moved: &dyn Fn(u64, u64) -> bool,
) -> Option<Vec<(u64, u64)>> {
    if a.len() != b.len() {
        return None;
    }
    let pairs = line_pairs(a, b);
    let mut shifts = Vec::new();
    for (x, y) in a.iter().zip(b) {
        if x.text == y.text {
            continue;
        }
        let (sx, nx) = split_numbers(&x.text);
        let (sy, ny) = split_numbers(&y.text);
        if sx != sy || nx.len() != ny.len() {
            return None;
        }
        for (p, q) in nx.into_iter().zip(ny) {
            if p == q {
                continue;
            }
            let (Ok(p32), Ok(q32)) = (u32::try_from(p), u32::try_from(q)) else {
                return None;
            };
            if !pairs.contains(&(p32, q32)) && !moved(p, q) {
                return None;
            }
            shifts.push((p, q));
        }
    }
    (!shifts.is_empty()).then_some(shifts)
}

/// The `.loc` (file, line) sequence of group `gi`, in order.
pub fn loc_seq(m: &Model<'_>, gi: usize) -> Vec<(u32, u32)> {
    let g = &m.groups[gi];
    m.lexed
        .range(g.start..=g.end)
        .filter_map(|st| match st.kind {
            crate::lex::Kind::Directive { name: ".loc", args } => {
                let mut it = args
                    .split_whitespace()
                    .map(|t| t.parse::<u32>().unwrap_or(0));
                Some((it.next().unwrap_or(0), it.next().unwrap_or(0)))
            }
            _ => None,
        })
        .collect()
}

/// (file, original line, patched line) told by two `.loc` sequences of
/// equal length, aligned one to one.
pub fn loc_pairs(
    orig: &Model<'_>,
    ogi: usize,
    patched: &Model<'_>,
    pgi: usize,
) -> Vec<(u32, u32, u32)> {
    let a = loc_seq(orig, ogi);
    let b = loc_seq(patched, pgi);
    if a.len() != b.len() {
        return Vec::new();
    }
    a.iter()
        .zip(&b)
        .filter(|(x, y)| x.0 == y.0 && x.1 != 0 && y.1 != 0)
        .map(|(x, y)| (x.0, x.1, y.1))
        .collect()
}

/// Line moves of the whole file, (file, original line, patched line),
/// from statements of the two versions that line up.
pub struct LineMoves {
    moves: Vec<(u32, u32, u32)>,
}

impl LineMoves {
    pub fn new(mut moves: Vec<(u32, u32, u32)>) -> Self {
        moves.sort_unstable();
        moves.dedup_by_key(|m| (m.0, m.1));
        LineMoves { moves }
    }

    /// Did line `p` move to `q`? For numbers that are not themselves
    /// `.loc` lines (`x = CORRUPT(__LINE__);` under an `if` line): a line
    /// between two moved lines with the same shift moved by that shift too.
    pub fn between(&self, p: u64, q: u64) -> bool {
        let (Ok(p), Ok(q)) = (u32::try_from(p), u32::try_from(q)) else {
            return false;
        };
        let moves = &self.moves;
        // Any file whose moves around `p` agree on the shift `q - p`.
        let mut start = 0;
        while start < moves.len() {
            let f = moves[start].0;
            let end = start + moves[start..].partition_point(|m| m.0 == f);
            let file = &moves[start..end];
            let i = file.partition_point(|&(_, x, _)| x < p);
            let shift = |&(_, x, y): &(u32, u32, u32)| i64::from(y) - i64::from(x);
            let want = i64::from(q) - i64::from(p);
            let hit = match (i.checked_sub(1).map(|j| &file[j]), file.get(i)) {
                (_, Some(&(_, x, y))) if x == p => y == q,
                (Some(b), Some(a)) => shift(b) == want && shift(a) == want,
                _ => false,
            };
            if hit {
                return true;
            }
            start = end;
        }
        false
    }

    /// Where original line `l` of file `f` is in the patched file: shifted
    /// like the nearest line at or above it whose move is known.
    pub fn map_line(&self, f: u32, l: u32) -> u32 {
        let i = self.moves.partition_point(|&(mf, x, _)| (mf, x) <= (f, l));
        match i.checked_sub(1).map(|j| self.moves[j]) {
            Some((mf, x, y)) if mf == f => {
                u32::try_from(i64::from(l) + i64::from(y) - i64::from(x)).unwrap_or(l)
            }
            _ => l,
        }
    }
}

/// Text with every decimal number replaced by `#`, and the numbers.
/// Digits that are part of a name (`.L12`, `%r8`) are not numbers.
fn split_numbers(s: &str) -> (String, Vec<u64>) {
    let b = s.as_bytes();
    let mut skel = String::with_capacity(s.len());
    let mut nums = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let prev_is_name = i > 0
            && (b[i - 1].is_ascii_alphanumeric() || matches!(b[i - 1], b'_' | b'.' | b'%' | b'$'));
        let after_dollar = i > 0 && b[i - 1] == b'$';
        if c.is_ascii_digit() && (!prev_is_name || after_dollar) {
            let start = i;
            while i < b.len() && b[i].is_ascii_alphanumeric() {
                i += 1;
            }
            let tok = &s[start..i];
            match tok.parse::<u64>() {
                Ok(n) => {
                    skel.push('#');
                    nums.push(n);
                }
                Err(_) => skel.push_str(tok),
            }
            continue;
        }
        skel.push(c as char);
        i += 1;
    }
    (skel, nums)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cl(src_line: u32, text: &str) -> CanonLine {
        CanonLine {
            line: 1,
            src_file: 1,
            src_line,
            text: text.into(),
        }
    }

    #[test]
    fn lines_between_equal_shifts_moved_too() {
        // Lines up to 10 stay, lines from 20 on move down by one.
        let m = LineMoves::new(vec![(1, 5, 5), (1, 10, 10), (1, 20, 21), (1, 30, 31)]);
        assert!(m.between(25, 26));
        assert!(!m.between(25, 27));
        assert!(!m.between(15, 16)); // between a 0 and a +1 shift: unknown
        assert!(m.between(20, 21));
        assert_eq!(m.map_line(1, 25), 26);
        assert_eq!(m.map_line(1, 7), 7);
        assert_eq!(m.map_line(2, 25), 25);
    }

    #[test]
    fn numbers_are_split_from_names() {
        let (s, n) = split_numbers("movl $1234, %r8d");
        assert_eq!((s.as_str(), n), ("movl $#, %r8d", vec![1234]));
        let (s, n) = split_numbers("jmp %L12");
        assert_eq!((s.as_str(), n), ("jmp %L12", vec![]));
        let (_, n) = split_numbers(".long 77");
        assert_eq!(n, [77]);
    }

    #[test]
    fn shifted_line_immediate_is_line_only() {
        let a = [cl(40, "movl $40, %edi"), cl(40, "call report")];
        let b = [cl(41, "movl $41, %edi"), cl(41, "call report")];
        assert_eq!(
            only_line_numbers(&a, &b, &|_, _| false),
            Some(vec![(40, 41)])
        );
    }

    #[test]
    fn other_constants_or_code_are_real_changes() {
        // 7 -> 8 is not a line move of this function.
        let a = [cl(40, "movl $7, %edi")];
        let b = [cl(41, "movl $8, %edi")];
        assert_eq!(only_line_numbers(&a, &b, &|_, _| false), None);
        // Same shift plus a different instruction.
        let a = [cl(40, "movl $40, %edi"), cl(40, "call report")];
        let b = [cl(41, "movl $41, %edi"), cl(41, "call other")];
        assert_eq!(only_line_numbers(&a, &b, &|_, _| false), None);
        // No line moved at all.
        let a = [cl(40, "movl $40, %edi")];
        let b = [cl(40, "movl $41, %edi")];
        assert_eq!(only_line_numbers(&a, &b, &|_, _| false), None);
    }
}
