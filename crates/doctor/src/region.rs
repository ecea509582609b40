//! Choosing where the patch region goes: a free range close enough to its
//! target object that 32-bit PC-relative references both ways still reach
//! (the seed: look right after the object, then farther, then before it).

use crate::layout::PAGE;
use crate::maps::Mapping;

/// Farthest distance a rel32 reaches.
const REACH: u64 = (1 << 31) - 1;
const LOWEST: u64 = 0x10000;
const HIGHEST: u64 = 0x7fff_ffff_f000;

/// Free ranges of the address space, ascending.
fn gaps(maps: &[Mapping]) -> Vec<(u64, u64)> {
    let mut used: Vec<(u64, u64)> = maps.iter().map(|m| (m.start, m.end)).collect();
    used.sort_unstable();
    let mut out = Vec::new();
    let mut cursor = LOWEST;
    for (s, e) in used {
        if s > cursor {
            out.push((cursor, s));
        }
        cursor = cursor.max(e);
    }
    if cursor < HIGHEST {
        out.push((cursor, HIGHEST));
    }
    out
}

/// Candidate addresses for a `size`-byte region serving the object spanning
/// `obj_start..obj_end`, nearest first. Every byte of the region is within
/// rel32 reach of every byte of the object.
pub fn candidates(maps: &[Mapping], obj_start: u64, obj_end: u64, size: u64) -> Vec<u64> {
    let mut after = Vec::new();
    let mut before = Vec::new();
    for (gs, ge) in gaps(maps) {
        // Leave one unmapped page on each side: guard pages of stacks and
        // heaps stay guards.
        let lo = gs + PAGE;
        let hi = ge.saturating_sub(PAGE);
        if hi < lo || hi - lo < size {
            continue;
        }
        if lo >= obj_end {
            if lo + size - obj_start <= REACH {
                after.push(lo);
            }
        } else if hi <= obj_start {
            let a = (hi - size) / PAGE * PAGE;
            if obj_end - a <= REACH && a >= lo {
                before.push(a);
            }
        }
    }
    before.reverse();
    after.into_iter().chain(before).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(start: u64, end: u64) -> Mapping {
        Mapping {
            start,
            end,
            perms: "r--p".into(),
            offset: 0,
            inode: 1,
            path: "/x".into(),
        }
    }

    #[test]
    fn prefers_the_gap_right_after_the_object_then_before() {
        let maps = [
            m(0x5000_0000, 0x5000_4000), // target object
            m(0x5000_6000, 0x5001_0000), // something right after, gap too small
            m(0x5002_0000, 0x5003_0000),
        ];
        let c = candidates(&maps, 0x5000_0000, 0x5000_4000, 0x2000);
        assert_eq!(c[0], 0x5001_1000);
        assert_eq!(c[1], 0x5003_1000);
        // Before the object as a last resort.
        assert!(c.contains(&(0x5000_0000 - 0x1000 - 0x2000)));
        // Nothing beyond 2 GiB.
        assert!(
            c.iter()
                .all(|&a| a < 0x5000_0000 || a + 0x2000 - 0x5000_0000 <= REACH)
        );
    }

    #[test]
    fn nothing_out_of_reach() {
        let maps = [
            m(0x1_0000_0000, 0x1_0000_1000),
            m(0x1_0000_3000, 0x1_8000_0000),
        ];
        let c = candidates(&maps, 0x1_0000_0000, 0x1_0000_1000, 0x1000_0000);
        assert!(
            c.iter()
                .all(|&a| !(0x1_0000_0000..0x1_8000_1000).contains(&a))
        );
        for a in c {
            let far = if a > 0x1_0000_0000 {
                a + 0x1000_0000 - 0x1_0000_0000
            } else {
                0x1_0000_1000 - a
            };
            assert!(far <= REACH);
        }
    }
}
