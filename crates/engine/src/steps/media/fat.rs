//! FAT file systems (the EFI system partition, El Torito's EFI image), made by the pinned
//! toolchain's dosfstools and mtools: `mkfs.fat --invariant` with the volume id given after it
//! (`--invariant` sets the id to 0x1234abcd, and a later `-i` overrides that; the volume-label
//! entry keeps the invariant date, 2015-03-14, as mkfs.fat has no SOURCE_DATE_EPOCH), then
//! `mmd`/`mcopy -m` of files whose times were set to SOURCE_DATE_EPOCH, which mtools also uses
//! for what it creates. The `fatfs` crate was the first choice, but its 0.3 release writes
//! long-name entries for `.` and `..` and, on FAT32, a `..` pointing at the root's cluster
//! where the format wants 0: `fsck.fat` rejects the result.

/// What a FAT file system is, apart from its files.
pub(crate) struct Volume<'a> {
    pub size_mib: u64,
    /// FAT32 with 512-byte clusters (as the UEFI specification wants an EFI system partition);
    /// otherwise mkfs.fat's choice for the size.
    pub fat32: bool,
    pub volume_id: u32,
    pub label: &'a str,
    /// The sectors before the file system on its disk (the BPB's hidden sectors, which a BIOS
    /// boot sector adds to its own reads): the partition's first LBA, or 0.
    pub hidden_sectors: u64,
}

/// The shell step that makes the FAT image `image` (a path as the script sees it, `$OUT/`
/// allowed; every value is quoted by `mechanisms::shell`) holding each `(source, destination)`
/// file (destinations with `/`, directories created as needed).
pub(crate) fn script(
    image: &str,
    v: &Volume,
    files: &[(String, String)],
) -> anyhow::Result<String> {
    use crate::mechanisms::shell::{path, word};
    let image = path(image)?;
    let Volume { size_mib, fat32, volume_id, label, hidden_sectors } = *v;
    let fat = if fat32 { "-F 32 -S 512 -s 1 " } else { "" };
    let hidden = if hidden_sectors > 0 { format!("-h {hidden_sectors} ") } else { String::new() };
    let mut s = format!(
        "rm -f {image}\nmkfs.fat -C --invariant {fat}{hidden}-i {volume_id:08x} -n {} {image} {} >/dev/null\n",
        word(label)?,
        size_mib * 1024
    );
    s.push_str("export MTOOLS_SKIP_CHECK=1\n");
    let mut dirs: Vec<String> = Vec::new();
    for (_, dest) in files {
        let parts: Vec<&str> = dest.split('/').collect();
        for i in 1..parts.len() {
            let d = parts[..i].join("/");
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
    }
    for d in &dirs {
        s.push_str(&format!("mmd -i {image} {}\n", word(&format!("::/{d}"))?));
    }
    for (src, dest) in files {
        let (src, dest) = (path(src)?, word(&format!("::/{dest}"))?);
        s.push_str(&format!(
            "touch -d \"@$SOURCE_DATE_EPOCH\" {src}\nmcopy -m -i {image} {src} {dest}\n"
        ));
    }
    Ok(s)
}

/// Make a FAT32 image's backup boot sector (the BPB's BkBootSec, 6 as mkfs.fat writes it) a
/// copy of its boot sector again, after a boot loader's installer rewrote only the first:
/// `fsck.fat` reports the two differing. A FAT12/16 image (no backup) is left alone.
pub(crate) fn copy_boot_sector_to_backup(image: &mut [u8]) -> anyhow::Result<()> {
    anyhow::ensure!(image.len() >= 512 && image[510..512] == [0x55, 0xaa], "no FAT boot sector");
    use reprovm_fs::fields::le_u16;
    let fat32 = le_u16(image, 0x16)? == 0;
    if !fat32 {
        return Ok(());
    }
    let backup = usize::from(le_u16(image, 0x32)?);
    let reserved = usize::from(le_u16(image, 0x0e)?);
    anyhow::ensure!(
        backup > 0 && backup < reserved && (backup + 1) * 512 <= image.len(),
        "FAT32 backup boot sector {backup} outside the {reserved} reserved sectors"
    );
    image.copy_within(0..512, backup * 512);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backup_boot_sector_follows_the_first() {
        let mut fat32 = vec![0u8; 32 * 512];
        fat32[0x0e] = 32; // reserved sectors
        fat32[0x32] = 6; // BkBootSec
        fat32[510..512].copy_from_slice(&[0x55, 0xaa]);
        fat32[0x5a] = 0xfa; // boot code an installer wrote
        copy_boot_sector_to_backup(&mut fat32).unwrap();
        assert_eq!(fat32[..512], fat32[6 * 512..7 * 512]);
        let mut fat16 = vec![0u8; 4 * 512];
        fat16[0x16] = 8; // sectors per FAT: not FAT32, no backup
        fat16[510..512].copy_from_slice(&[0x55, 0xaa]);
        let before = fat16.clone();
        copy_boot_sector_to_backup(&mut fat16).unwrap();
        assert_eq!(fat16, before);
        let mut hostile = fat32.clone();
        hostile[0x32] = 200;
        assert!(copy_boot_sector_to_backup(&mut hostile).is_err());
        assert!(copy_boot_sector_to_backup(&mut [0u8; 100]).is_err());
    }

    #[test]
    fn script_makes_each_directory_once() {
        let v = Volume {
            size_mib: 64,
            fat32: true,
            volume_id: 0x1234abcd,
            label: "ESP",
            hidden_sectors: 2048,
        };
        let s = script(
            "/b/esp.img",
            &v,
            &[
                ("/b/media/X.EFI".into(), "EFI/BOOT/BOOTX64.EFI".into()),
                ("/b/media/y".into(), "EFI/BOOT/y".into()),
            ],
        )
        .unwrap();
        assert_eq!(s.matches("mmd ").count(), 2, "{s}");
        assert!(
            s.contains("--invariant -F 32 -S 512 -s 1 -h 2048 -i 1234abcd -n ESP /b/esp.img 65536"),
            "{s}"
        );
        assert!(s.contains("mcopy -m -i /b/esp.img /b/media/X.EFI ::/EFI/BOOT/BOOTX64.EFI"), "{s}");
        // A label with a quote and paths with spaces stay one argument each.
        let odd = Volume { label: "it's", ..v };
        let s = script("$OUT/my esp.img", &odd, &[("/b/a b".into(), "EFI/x y".into())]).unwrap();
        let mkfs = s.lines().find(|l| l.starts_with("mkfs.fat")).unwrap();
        let words = shlex::split(&mkfs.replace("\"$OUT\"", "OUT")).unwrap();
        assert!(words.windows(3).any(|w| w == ["-n", "it's", "OUT/my esp.img"]), "{words:?}");
        let mcopy = s.lines().find(|l| l.starts_with("mcopy")).unwrap();
        let words = shlex::split(&mcopy.replace("\"$OUT\"", "OUT")).unwrap();
        assert_eq!(words[words.len() - 2..], ["/b/a b", "::/EFI/x y"], "{mcopy}");
    }
}
