//! Fixed-width integer fields of binary formats (PE, GPT, FAT, VHD, VHDX, VMDK, ISO), read
//! at an offset with the bounds checked: a short or hostile file is an error naming the
//! offset, never a panic. The one field reader every format's code uses.

use std::io::{Error, ErrorKind, Result};

/// The `N` bytes at `at`.
fn bytes<const N: usize>(b: &[u8], at: usize) -> Result<[u8; N]> {
    at.checked_add(N).and_then(|end| b.get(at..end)).and_then(|s| s.try_into().ok()).ok_or_else(
        || {
            Error::new(
                ErrorKind::UnexpectedEof,
                format!("a {N}-byte field at offset {at:#x} is past the end ({} bytes)", b.len()),
            )
        },
    )
}

pub fn le_u16(b: &[u8], at: usize) -> Result<u16> {
    Ok(u16::from_le_bytes(bytes(b, at)?))
}

pub fn le_u32(b: &[u8], at: usize) -> Result<u32> {
    Ok(u32::from_le_bytes(bytes(b, at)?))
}

pub fn le_u64(b: &[u8], at: usize) -> Result<u64> {
    Ok(u64::from_le_bytes(bytes(b, at)?))
}

pub fn be_u32(b: &[u8], at: usize) -> Result<u32> {
    Ok(u32::from_be_bytes(bytes(b, at)?))
}

pub fn be_u64(b: &[u8], at: usize) -> Result<u64> {
    Ok(u64::from_be_bytes(bytes(b, at)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_in_both_orders_and_past_the_end() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(le_u16(&b, 1).unwrap(), 0x0302);
        assert_eq!(le_u32(&b, 0).unwrap(), 0x0403_0201);
        assert_eq!(be_u32(&b, 0).unwrap(), 0x0102_0304);
        assert_eq!(le_u64(&b, 1).unwrap(), 0x0908_0706_0504_0302);
        assert_eq!(be_u64(&b, 0).unwrap(), 0x0102_0304_0506_0708);
        let e = le_u64(&b, 2).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("8-byte field at offset 0x2 is past the end (9 bytes)"));
        assert!(le_u32(&b, usize::MAX).is_err(), "an offset that overflows is past the end");
    }
}
