//! Return-address hints for a thread whose stack cannot be walked with
//! unwind tables (typically: it is in patch code, which carries none).
//!
//! Only a hint for where to put a return breakpoint: the safety verdict is
//! always made again by a real walk once the breakpoint is hit, so a wrong
//! hint costs time, never safety. A value on the stack counts as a return
//! address when it points into executable memory right after a call
//! instruction.

use iced_x86::{Decoder, DecoderOptions, FlowControl};

use crate::maps::Mapping;
use crate::patient::Held;
use crate::safety::Busy;

/// How far above the stack pointer to look.
const SCAN: u64 = 64 * 1024;

fn executable(maps: &[Mapping], a: u64) -> bool {
    maps.iter()
        .any(|m| m.executable() && m.readable() && a >= m.start && a < m.end)
}

/// Whether the bytes before `ret` end with a call instruction, reading
/// them with `read` (false when they cannot be read).
pub(crate) fn after_call(read: impl Fn(u64, &mut [u8]) -> bool, ret: u64) -> bool {
    let mut code = [0u8; 7];
    if ret < 7 || !read(ret - 7, &mut code) {
        return false;
    }
    [2usize, 3, 5, 6, 7].iter().any(|&len| {
        let mut d = Decoder::with_ip(64, &code[7 - len..], ret - len as u64, DecoderOptions::NONE);
        let insn = d.decode();
        !insn.is_invalid()
            && insn.len() == len
            && matches!(
                insn.flow_control(),
                FlowControl::Call | FlowControl::IndirectCall
            )
    })
}

/// The first plausible return address above `sp` that leads out of the
/// busy ranges: past at least one return address into a busy range, the
/// next one outside all of them.
pub fn return_out_of_busy(held: &Held, maps: &[Mapping], sp: u64, busy: &[Busy]) -> Option<u64> {
    let stack = maps.iter().find(|m| sp >= m.start && sp < m.end)?;
    let end = stack.end.min(sp + SCAN);
    let mut words = vec![0u8; (end - sp) as usize & !7];
    held.read(sp, &mut words).ok()?;
    let inside = |a: u64| busy.iter().any(|b| a >= b.start && a < b.end);
    let mut seen_busy = false;
    for w in words.chunks_exact(8) {
        let v = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        if !executable(maps, v) || !after_call(|a, b| held.read(a, b).is_ok(), v) {
            continue;
        }
        if inside(v) {
            seen_busy = true;
        } else if seen_busy {
            return Some(v);
        }
    }
    None
}
