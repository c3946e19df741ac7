//! Fixed VHD (Hyper-V, Azure): the raw disk followed by a 512-byte footer (Microsoft's
//! "Virtual Hard Disk Image Format Specification" 1.0). Written here because `qemu-img
//! convert -O vpc` stamps the footer with the clock and a random unique id; ours come from
//! SOURCE_DATE_EPOCH and from the disk's content.

use std::io::{Read, Write};

/// Seconds from the Unix epoch to the VHD epoch (2000-01-01T00:00:00Z).
const VHD_EPOCH: u64 = 946_684_800;

/// Bytes per cylinder of the geometry with 16 heads and 63 sectors per track.
pub(crate) const CYLINDER_16_63: u64 = 16 * 63 * 512;

/// The disk geometry of a footer: (cylinders, heads, sectors per track). Readers that size a
/// disk by its geometry (QEMU's vpc driver for any creator but Hyper-V's and a few others;
/// Virtual PC) see cylinders × heads × sectors × 512 bytes, so a disk that is a whole number
/// of 16-head, 63-sector cylinders gets that exact geometry, and every reader the same size
/// (the media code sizes its disks so); other sizes get the specification's algorithm.
pub(crate) fn geometry(size: u64) -> (u16, u8, u8) {
    if size.is_multiple_of(CYLINDER_16_63) && size / CYLINDER_16_63 <= 65535 {
        return ((size / CYLINDER_16_63) as u16, 16, 63);
    }
    spec_geometry(size)
}

/// The specification's algorithm (appendix "CHS Calculation").
fn spec_geometry(size: u64) -> (u16, u8, u8) {
    let mut total = size / 512;
    if total > 65535 * 16 * 255 {
        total = 65535 * 16 * 255;
    }
    let (spt, heads, cth);
    if total >= 65535 * 16 * 63 {
        spt = 255;
        heads = 16;
        cth = total / spt;
    } else {
        let mut s = 17;
        let mut c = total / s;
        let mut h = c.div_ceil(1024);
        if h < 4 {
            h = 4;
        }
        if c >= h * 1024 || h > 16 {
            s = 31;
            h = 16;
            c = total / s;
        }
        if c >= h * 1024 {
            s = 63;
            h = 16;
            c = total / s;
        }
        spt = s;
        heads = h;
        cth = c;
    }
    ((cth / heads) as u16, heads as u8, spt as u8)
}

/// The footer of a fixed disk of `size` bytes.
pub(crate) fn footer(size: u64, epoch: u64, unique_id: [u8; 16]) -> [u8; 512] {
    let mut f = [0u8; 512];
    f[0..8].copy_from_slice(b"conectix");
    f[8..12].copy_from_slice(&2u32.to_be_bytes()); // features: reserved bit set
    f[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    f[16..24].copy_from_slice(&u64::MAX.to_be_bytes()); // data offset: none (fixed disk)
    let stamp = epoch.saturating_sub(VHD_EPOCH).min(u32::MAX as u64) as u32;
    f[24..28].copy_from_slice(&stamp.to_be_bytes());
    f[28..32].copy_from_slice(b"rvm ");
    f[32..36].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    f[36..40].copy_from_slice(b"Wi2k");
    f[40..48].copy_from_slice(&size.to_be_bytes());
    f[48..56].copy_from_slice(&size.to_be_bytes());
    let (c, h, s) = geometry(size);
    f[56..58].copy_from_slice(&c.to_be_bytes());
    f[58] = h;
    f[59] = s;
    f[60..64].copy_from_slice(&2u32.to_be_bytes()); // fixed
    f[68..84].copy_from_slice(&unique_id);
    let sum: u32 = f.iter().map(|&b| b as u32).sum();
    f[64..68].copy_from_slice(&(!sum).to_be_bytes());
    f
}

/// Copy the raw disk `raw` to `out` and append the footer.
pub(crate) fn write(
    raw: &mut dyn Read,
    size: u64,
    epoch: u64,
    unique_id: [u8; 16],
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let copied = std::io::copy(raw, out)?;
    anyhow::ensure!(copied == size, "the raw disk is {copied} bytes, not {size}");
    out.write_all(&footer(size, epoch, unique_id))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_fields_and_checksum() {
        let f = footer(128 << 20, 1_704_067_200, [7; 16]);
        assert_eq!(&f[0..8], b"conectix");
        assert_eq!(u32::from_be_bytes(f[24..28].try_into().unwrap()), 1_704_067_200 - 946_684_800);
        assert_eq!(u64::from_be_bytes(f[48..56].try_into().unwrap()), 128 << 20);
        assert_eq!(u32::from_be_bytes(f[60..64].try_into().unwrap()), 2);
        let mut zeroed = f;
        zeroed[64..68].fill(0);
        let sum: u32 = zeroed.iter().map(|&b| b as u32).sum();
        assert_eq!(u32::from_be_bytes(f[64..68].try_into().unwrap()), !sum);
        // The specification's algorithm for 128 MiB, which no geometry covers exactly (qemu-img
        // instead grows such a disk to 964 cylinders); 189 MiB is 384 cylinders of 16 × 63.
        assert_eq!(geometry(128 << 20), (963, 16, 17));
        assert_eq!(geometry(189 << 20), (384, 16, 63));
        assert_eq!(384 * CYLINDER_16_63, 189 << 20);
        assert_eq!(footer(128 << 20, 1_704_067_200, [7; 16]), f);
    }
}
