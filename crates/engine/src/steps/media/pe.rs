//! The two fields of a PE image (the unified kernel image) that binutils fills from the host:
//! objcopy writes the COFF header's TimeDateStamp from the clock when it rewrites a PE file
//! (Debian 12's binutils 2.40 ignores SOURCE_DATE_EPOCH there), and the optional header's
//! CheckSum covers it. Both are set here, after objcopy, from SOURCE_DATE_EPOCH: a few bytes at
//! offsets the PE/COFF specification fixes, which no crate exposes for writing in place.

use anyhow::{ensure, Result};
use reprovm_fs::fields;

/// Offset of the COFF header's TimeDateStamp from the "PE\0\0" signature.
const TIMESTAMP: usize = 4 + 4;
/// Offset of the optional header's CheckSum from the signature (same for PE32 and PE32+).
const CHECKSUM: usize = 4 + 20 + 64;

/// The offset of the "PE\0\0" signature.
fn signature(image: &[u8]) -> Result<usize> {
    ensure!(image.len() >= 0x40 && image.starts_with(b"MZ"), "not a PE image (no MZ header)");
    let at = fields::le_u32(image, 0x3c)? as usize;
    ensure!(
        image.len() >= at + CHECKSUM + 4 && image[at..at + 4] == *b"PE\0\0",
        "not a PE image (no PE signature at {at:#x})"
    );
    Ok(at)
}

/// The PE checksum (as Windows' CheckSumMappedFile computes it): the 16-bit one's-complement
/// style sum of the file with the CheckSum field taken as zero, plus the file's length.
pub(crate) fn checksum(image: &[u8], checksum_at: usize) -> u32 {
    let mut sum: u64 = 0;
    for (i, chunk) in image.chunks(2).enumerate() {
        let offset = i * 2;
        if offset >= checksum_at && offset < checksum_at + 4 {
            continue;
        }
        let word = u16::from_le_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u64::from(word);
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    (sum as u32).wrapping_add(image.len() as u32)
}

/// Set TimeDateStamp to `epoch` and, when the image carries a checksum (non-zero), recompute it.
pub(crate) fn set_timestamp(image: &mut [u8], epoch: u32) -> Result<()> {
    let at = signature(image)?;
    image[at + TIMESTAMP..at + TIMESTAMP + 4].copy_from_slice(&epoch.to_le_bytes());
    let field = at + CHECKSUM;
    if image[field..field + 4] != [0; 4] {
        let sum = checksum(image, field);
        image[field..field + 4].copy_from_slice(&sum.to_le_bytes());
    }
    Ok(())
}

/// Refuse a unified kernel image whose sections overlap in memory: objcopy places the added
/// sections at the fixed addresses it is given and does not check them against each other, so
/// a kernel larger than the gap before .initrd (or a stub reaching past .osrel) would give an
/// image the stub loads wrongly. The section table is read by goblin.
pub(crate) fn check_sections_disjoint(image: &[u8]) -> Result<()> {
    let pe = goblin::pe::PE::parse(image)
        .map_err(|e| anyhow::anyhow!("not a PE image goblin can read: {e}"))?;
    let mut ranges: Vec<(u64, u64, String)> = pe
        .sections
        .iter()
        .map(|s| {
            let name = String::from_utf8_lossy(&s.name).trim_end_matches('\0').to_string();
            // What the loader maps: VirtualSize (objcopy's added sections have it; the raw
            // size, padded to the file alignment, stands in where it is zero).
            let size = if s.virtual_size == 0 { s.size_of_raw_data } else { s.virtual_size };
            let start = u64::from(s.virtual_address);
            (start, start + u64::from(size), name)
        })
        .collect();
    ranges.sort();
    for pair in ranges.windows(2) {
        let ((_, end, first), (start, _, second)) = (&pair[0], &pair[1]);
        ensure!(
            end <= start,
            "sections {first} and {second} overlap ({first} ends at {end:#x}, {second} starts at {start:#x}): {first} is too large for the fixed section addresses of steps::media::uki_script; move {second} up there (or use a smaller kernel)"
        );
    }
    Ok(())
}

/// TimeDateStamp and CheckSum, for explanations.
pub(crate) fn header_fields(image: &[u8]) -> Option<(u32, u32)> {
    let at = signature(image).ok()?;
    let read = |o: usize| fields::le_u32(image, o).ok();
    Some((read(at + TIMESTAMP)?, read(at + CHECKSUM)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Vec<u8> {
        let mut d = vec![0u8; 0x200];
        d[..2].copy_from_slice(b"MZ");
        d[0x3c] = 0x80;
        d[0x80..0x84].copy_from_slice(b"PE\0\0");
        for (i, b) in d.iter_mut().enumerate().skip(0x100) {
            *b = (i * 7) as u8;
        }
        d
    }

    #[test]
    fn timestamp_is_set_and_the_checksum_follows_it() {
        let mut d = image();
        d[0x80 + CHECKSUM] = 1;
        set_timestamp(&mut d, 1_704_067_200).unwrap();
        let (time, sum) = header_fields(&d).unwrap();
        assert_eq!(time, 1_704_067_200);
        assert_eq!(sum, checksum(&d, 0x80 + CHECKSUM));
        let mut e = d.clone();
        set_timestamp(&mut e, 1_704_067_201).unwrap();
        assert_ne!(header_fields(&e).unwrap().1, sum, "the checksum does not cover the time");
    }

    /// A PE image with no optional header and these (name, virtual address, virtual size)
    /// sections.
    fn with_sections(sections: &[(&str, u32, u32)]) -> Vec<u8> {
        let mut d = vec![0u8; 0x80];
        d[..2].copy_from_slice(b"MZ");
        d[0x3c] = 0x80;
        d.extend_from_slice(b"PE\0\0");
        d.extend_from_slice(&0xaa64u16.to_le_bytes());
        d.extend_from_slice(&(sections.len() as u16).to_le_bytes());
        d.extend_from_slice(&[0u8; 12]); // time, symbol table, symbol count
        d.extend_from_slice(&[0u8; 4]); // no optional header, characteristics
        for (name, va, size) in sections {
            let mut n = [0u8; 8];
            n[..name.len()].copy_from_slice(name.as_bytes());
            d.extend_from_slice(&n);
            d.extend_from_slice(&size.to_le_bytes());
            d.extend_from_slice(&va.to_le_bytes());
            d.extend_from_slice(&[0u8; 24]);
        }
        d
    }

    #[test]
    fn overlapping_sections_are_refused() {
        let fits = [
            (".text", 0x1000, 0xe000),
            (".osrel", 0x20000, 0x100),
            (".linux", 0x2000000, 0xff_0000),
        ];
        check_sections_disjoint(&with_sections(&fits)).unwrap();
        let big_kernel = [(".linux", 0x2000000, 0x100_0001), (".initrd", 0x3000000, 0x10)];
        let e = check_sections_disjoint(&with_sections(&big_kernel)).unwrap_err().to_string();
        assert!(e.contains("sections .linux and .initrd overlap"), "{e}");
    }

    #[test]
    fn checksum_matches_a_hand_sum() {
        // Words 0x0201, 0x0403 and (odd tail) 0x0005; field at 6..10 skipped; plus length 5.
        let d = [1u8, 2, 3, 4, 5];
        assert_eq!(checksum(&d, 6), 0x0201 + 0x0403 + 0x0005 + 5);
    }

    #[test]
    fn zero_checksum_stays_zero_and_non_pe_is_refused() {
        let mut d = image();
        set_timestamp(&mut d, 7).unwrap();
        assert_eq!(header_fields(&d), Some((7, 0)));
        assert!(set_timestamp(&mut [0u8; 64], 7).is_err());
    }
}
