//! GUID partition tables, written here rather than with the `gpt` crate: that crate sizes the
//! partition entry array to the number of partitions (2 × 128 bytes), below the 16 KiB the
//! UEFI specification requires (§5.3.2), and generates partition GUIDs at random. A GPT is a
//! protective MBR, two 92-byte headers and two copies of a 128-entry array, each CRC32ed:
//! small enough to write exactly, with every GUID given by the caller.

use anyhow::{bail, Result};
use std::io::{Seek, SeekFrom, Write};
use uuid::Uuid;

pub(crate) const SECTOR: u64 = 512;
const ENTRIES: u64 = 128;
const ENTRY_SIZE: u64 = 128;
/// Sectors of the entry array: 128 × 128 bytes.
const ARRAY_SECTORS: u64 = ENTRIES * ENTRY_SIZE / SECTOR;

/// The EFI system partition type.
pub(crate) const ESP_TYPE: Uuid = uuid::uuid!("C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
/// The Linux x86-64 root partition type (Discoverable Partitions Specification).
pub(crate) const LINUX_ROOT_X86_64: Uuid = uuid::uuid!("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709");
/// The Linux arm64 root partition type (Discoverable Partitions Specification).
pub(crate) const LINUX_ROOT_ARM64: Uuid = uuid::uuid!("B921B045-1DF0-41C3-AF44-4C6F280D3FAE");

/// Attribute bit 2: legacy BIOS bootable, the partition an MBR boot loader such as SYSLINUX's
/// gptmbr.bin looks for (UEFI specification, table 5-7).
pub(crate) const LEGACY_BIOS_BOOTABLE: u64 = 1 << 2;

/// One partition: where it is and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Partition {
    pub type_guid: Uuid,
    pub guid: Uuid,
    pub first_lba: u64,
    pub last_lba: u64,
    /// Attribute bits (`LEGACY_BIOS_BOOTABLE`, or 0).
    pub attributes: u64,
    pub name: String,
}

/// The bytes of an MBR that are boot code (the rest is the disk signature and partition table).
pub(crate) const MBR_CODE: usize = 440;

/// Write the protective MBR (with `mbr_code`, at most 440 bytes of BIOS boot code, at its
/// start) and both GPTs of a disk of `sectors` sectors into `w` (the partitions' contents are
/// the caller's).
pub(crate) fn write_tables<W: Write + Seek>(
    w: &mut W,
    sectors: u64,
    disk_guid: Uuid,
    parts: &[Partition],
    mbr_code: &[u8],
) -> Result<()> {
    if mbr_code.len() > MBR_CODE {
        bail!("MBR boot code of {} bytes: at most {MBR_CODE} fit", mbr_code.len());
    }
    let first_usable = 2 + ARRAY_SECTORS;
    let last_usable = sectors - 2 - ARRAY_SECTORS;
    for p in parts {
        if p.first_lba < first_usable || p.last_lba > last_usable || p.first_lba > p.last_lba {
            bail!(
                "partition `{}` ({}..{}) is outside {first_usable}..{last_usable}",
                p.name,
                p.first_lba,
                p.last_lba
            );
        }
    }
    if parts.len() as u64 > ENTRIES {
        bail!("{} partitions: a GPT here holds {ENTRIES}", parts.len());
    }
    let mut array = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
    for (i, p) in parts.iter().enumerate() {
        let e = &mut array[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
        e[0..16].copy_from_slice(&p.type_guid.to_bytes_le());
        e[16..32].copy_from_slice(&p.guid.to_bytes_le());
        e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
        e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
        e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
        let name: Vec<u16> = p.name.encode_utf16().collect();
        if name.len() > 36 {
            bail!("partition name `{}` is longer than 36 UTF-16 units", p.name);
        }
        for (j, c) in name.iter().enumerate() {
            e[56 + 2 * j..58 + 2 * j].copy_from_slice(&c.to_le_bytes());
        }
    }
    let array_crc = crc32fast::hash(&array);
    let header = |my_lba: u64, alternate: u64, array_lba: u64| {
        let mut h = vec![0u8; SECTOR as usize];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&my_lba.to_le_bytes());
        h[32..40].copy_from_slice(&alternate.to_le_bytes());
        h[40..48].copy_from_slice(&first_usable.to_le_bytes());
        h[48..56].copy_from_slice(&last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&disk_guid.to_bytes_le());
        h[72..80].copy_from_slice(&array_lba.to_le_bytes());
        h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&array_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    let mut mbr = vec![0u8; SECTOR as usize];
    mbr[..mbr_code.len()].copy_from_slice(mbr_code);
    let entry = &mut mbr[446..462];
    entry[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
    entry[4] = 0xee;
    entry[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
    entry[8..12].copy_from_slice(&1u32.to_le_bytes());
    entry[12..16].copy_from_slice(&u32::try_from(sectors - 1).unwrap_or(u32::MAX).to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    let backup_array = sectors - 1 - ARRAY_SECTORS;
    for (lba, bytes) in [
        (0, mbr),
        (1, header(1, sectors - 1, 2)),
        (2, array.clone()),
        (backup_array, array),
        (sectors - 1, header(sectors - 1, 1, backup_array)),
    ] {
        w.seek(SeekFrom::Start(lba * SECTOR))?;
        w.write_all(&bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_array_check_out() {
        let sectors = 8192;
        let parts = vec![
            Partition {
                type_guid: ESP_TYPE,
                guid: uuid::uuid!("11111111-2222-8333-8444-555555555555"),
                first_lba: 2048,
                last_lba: 4095,
                attributes: LEGACY_BIOS_BOOTABLE,
                name: "ESP".into(),
            },
            Partition {
                type_guid: LINUX_ROOT_X86_64,
                guid: uuid::uuid!("66666666-7777-8888-9999-aaaaaaaaaaaa"),
                first_lba: 4096,
                last_lba: 6143,
                attributes: 0,
                name: "root".into(),
            },
        ];
        let mut disk = std::io::Cursor::new(vec![0u8; (sectors * SECTOR) as usize]);
        let guid = uuid::uuid!("bbbbbbbb-cccc-8ddd-8eee-ffffffffffff");
        write_tables(&mut disk, sectors, guid, &parts, &[0xfa; 440]).unwrap();
        let d = disk.into_inner();
        let sector = |lba: u64| &d[(lba * SECTOR) as usize..((lba + 1) * SECTOR) as usize];
        let (primary, backup) = (sector(1), sector(sectors - 1));
        assert_eq!(&primary[..8], b"EFI PART");
        for h in [primary, backup] {
            let mut zeroed = h[..92].to_vec();
            zeroed[16..20].fill(0);
            assert_eq!(crc32fast::hash(&zeroed).to_le_bytes(), h[16..20]);
            assert_eq!(Uuid::from_bytes_le(h[56..72].try_into().unwrap()), guid);
        }
        let array = &d[(2 * SECTOR) as usize..((2 + ARRAY_SECTORS) * SECTOR) as usize];
        assert_eq!(crc32fast::hash(array).to_le_bytes(), primary[88..92]);
        assert_eq!(Uuid::from_bytes_le(array[16..32].try_into().unwrap()), parts[0].guid);
        assert_eq!(array[48], 4, "the ESP's legacy-BIOS-bootable bit");
        assert_eq!(array[128 + 48], 0);
        assert_eq!(&d[510..512], &[0x55, 0xaa]);
        assert!(d[..440].iter().all(|&b| b == 0xfa) && d[440..446].iter().all(|&b| b == 0));
        assert_eq!(d[450], 0xee);
        let outside = Partition { first_lba: 10, ..parts[0].clone() };
        assert!(write_tables(
            &mut std::io::Cursor::new(vec![0u8; 4194304]),
            sectors,
            guid,
            &[outside],
            &[]
        )
        .is_err());
        let too_long = write_tables(
            &mut std::io::Cursor::new(vec![0u8; 4194304]),
            sectors,
            guid,
            &parts,
            &[0; 441],
        );
        assert!(too_long.unwrap_err().to_string().contains("at most 440"));
    }
}
