//! The jump table: 16-byte entries placed after the patch sections. Each
//! entry is `jmp *2(%rip); xchg %ax,%ax; .quad address`, so a call that cannot
//! reach its target with 32 bits calls the entry, and a GOT-style load uses
//! the 8-byte slot at entry + 8 (for TLS symbols that slot holds the
//! thread-pointer offset instead).

pub const ENTRY_SIZE: u64 = 16;
/// Offset of the 8-byte address slot inside an entry.
pub const SLOT_OFFSET: u64 = 8;

pub fn entry(value: u64) -> [u8; 16] {
    let mut e = [0u8; 16];
    // jmp *0x2(%rip): the slot is 2 bytes after the end of this 6-byte jump.
    e[..6].copy_from_slice(&[0xff, 0x25, 0x02, 0x00, 0x00, 0x00]);
    e[6..8].copy_from_slice(&[0x66, 0x90]);
    e[8..].copy_from_slice(&value.to_le_bytes());
    e
}

#[cfg(test)]
mod tests {
    #[test]
    fn entry_jumps_through_its_own_slot() {
        let e = super::entry(0x1122_3344_5566_7788);
        // rip after the jmp is entry+6; +2 is the slot.
        assert_eq!(i32::from_le_bytes(e[2..6].try_into().unwrap()) + 6, 8);
        assert_eq!(&e[8..], &0x1122_3344_5566_7788u64.to_le_bytes());
    }
}
