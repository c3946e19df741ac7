//! VHDX (Hyper-V's current format, MS-VHDX 1.0): `qemu-img convert -O vhdx` from the pinned
//! toolchain writes it, then what qemu-img takes from randomness is replaced in place by
//! values derived from the disk's content, as for the VMDK's CID. Measured by converting the
//! same raw disk twice and comparing (qemu-img 7.2): both headers' sequence number (random,
//! the second header one more), FileWriteGuid and DataWriteGuid; the log region, which holds a
//! stale entry with a random log GUID although the headers say the log is empty (LogGuid
//! zero: nothing to replay); and the metadata's Page 83 VirtualDiskId. The two headers'
//! CRC-32C checksums are computed again.

use anyhow::{bail, Context, Result};

/// Offsets of the two headers (MS-VHDX 2.2: 64 KiB and 128 KiB), each 4 KiB.
const HEADERS: [usize; 2] = [64 << 10, 128 << 10];
const HEADER_SIZE: usize = 4 << 10;
/// The region table (192 KiB), which says where the metadata region is.
const REGION_TABLE: usize = 192 << 10;
/// Region and metadata item ids, as they are on disk (the first three fields little-endian).
const METADATA_REGION: [u8; 16] =
    guid(0x8B7CA206, 0x4790, 0x4B9A, [0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E]);
const PAGE_83_DATA: [u8; 16] =
    guid(0xBECA12AB, 0xB2E6, 0x4523, [0x93, 0xEF, 0xC3, 0x09, 0xE0, 0x00, 0xC7, 0x46]);

const fn guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    [a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]
}

/// The shell step converting the raw disk at `raw` to `vhdx` (paths as the script sees them,
/// `$OUT/` allowed). One coroutine, so that blocks are allocated in the disk's order.
pub(crate) fn convert_script(raw: &str, vhdx: &str) -> Result<String> {
    use crate::mechanisms::shell::path;
    Ok(format!("qemu-img convert -q -m 1 -f raw -O vhdx {} {}\n", path(raw)?, path(vhdx)?))
}

/// The identifiers a VHDX carries, to be set by [`normalize`].
pub(crate) struct Ids {
    /// The first header's sequence number (the other keeps its distance from it).
    pub sequence: u64,
    pub file_write: [u8; 16],
    /// DataWriteGuid of the first and the second header.
    pub data_write: [[u8; 16]; 2],
    pub virtual_disk: [u8; 16],
}

/// Set the random identifiers of a VHDX written by qemu-img to `ids`, clear its (inactive)
/// log and recompute the header checksums. Refuses a file that is not a VHDX with an empty
/// log.
pub(crate) fn normalize(v: &mut [u8], ids: &Ids) -> Result<()> {
    if v.len() < REGION_TABLE + (64 << 10) || &v[..8] != b"vhdxfile" {
        bail!("not a VHDX (no vhdxfile signature)");
    }
    use reprovm_fs::fields::{le_u16 as u16_at, le_u32 as u32_at, le_u64 as u64_at};
    let seqs = [u64_at(v, HEADERS[0] + 8)?, u64_at(v, HEADERS[1] + 8)?];
    let mut log = None;
    for (i, &h) in HEADERS.iter().enumerate() {
        if &v[h..h + 4] != b"head" {
            bail!("VHDX header {} has no `head` signature", i + 1);
        }
        if v[h + 48..h + 64] != [0u8; 16] {
            bail!("VHDX header {}: the log is active (LogGuid set); replay it first", i + 1);
        }
        let (length, offset) = (u32_at(v, h + 68)? as usize, u64_at(v, h + 72)? as usize);
        if log.is_some_and(|l| l != (offset, length)) {
            bail!("the VHDX headers disagree on where the log is");
        }
        log = Some((offset, length));
        let seq = ids.sequence.wrapping_add(seqs[i].wrapping_sub(seqs[0]));
        v[h + 8..h + 16].copy_from_slice(&seq.to_le_bytes());
        v[h + 16..h + 32].copy_from_slice(&ids.file_write);
        v[h + 32..h + 48].copy_from_slice(&ids.data_write[i]);
        v[h + 4..h + 8].fill(0);
        let sum = crc32c(&v[h..h + HEADER_SIZE]);
        v[h + 4..h + 8].copy_from_slice(&sum.to_le_bytes());
    }
    let (offset, length) = log.context("no VHDX header")?;
    let end =
        offset.checked_add(length).filter(|&e| e <= v.len()).context("log beyond the file")?;
    v[offset..end].fill(0);
    // The metadata region, from the region table; then Page 83's item in its table.
    if &v[REGION_TABLE..REGION_TABLE + 4] != b"regi" {
        bail!("the VHDX region table has no `regi` signature");
    }
    let entries = u32_at(v, REGION_TABLE + 8)? as usize;
    let metadata = (0..entries.min(2047))
        .map(|i| REGION_TABLE + 16 + i * 32)
        .find(|&e| v.get(e..e + 16) == Some(&METADATA_REGION[..]))
        .context("the VHDX region table lists no metadata region")?;
    let metadata = u64_at(v, metadata + 16)? as usize;
    if v.get(metadata..metadata.saturating_add(8)) != Some(&b"metadata"[..]) {
        bail!("the VHDX metadata region has no `metadata` signature");
    }
    let items = u16_at(v, metadata + 10)? as usize;
    let page83 = (0..items.min(2047))
        .map(|i| metadata + 32 + i * 32)
        .find(|&e| e + 32 <= v.len() && v[e..e + 16] == PAGE_83_DATA)
        .context("the VHDX metadata has no Page 83 data")?;
    let at = metadata.saturating_add(u32_at(v, page83 + 16)? as usize);
    let len = u32_at(v, page83 + 20)? as usize;
    if len != 16 || at.saturating_add(16) > v.len() {
        bail!("the VHDX Page 83 data is {len} bytes, not a GUID");
    }
    v[at..at + 16].copy_from_slice(&ids.virtual_disk);
    Ok(())
}

/// CRC-32C (Castagnoli, reflected, as MS-VHDX and iSCSI use it). Ten lines here rather than a
/// dependency: only two 4 KiB headers are summed.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        // The standard check: CRC-32C of "123456789".
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn what_is_not_a_vhdx_is_refused() {
        let ids = Ids {
            sequence: 1,
            file_write: [1; 16],
            data_write: [[2; 16]; 2],
            virtual_disk: [3; 16],
        };
        assert!(normalize(&mut vec![0u8; 1 << 20], &ids)
            .unwrap_err()
            .to_string()
            .contains("not a VHDX"));
        let mut v = vec![0u8; 1 << 20];
        v[..8].copy_from_slice(b"vhdxfile");
        assert!(normalize(&mut v, &ids).unwrap_err().to_string().contains("`head`"));
        for h in HEADERS {
            v[h..h + 4].copy_from_slice(b"head");
        }
        v[HEADERS[0] + 48] = 1;
        assert!(normalize(&mut v, &ids).unwrap_err().to_string().contains("log is active"));
    }
}
