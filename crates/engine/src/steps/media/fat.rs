//! FAT file systems (the EFI system partition, El Torito's EFI image), made by the pinned
//! toolchain's dosfstools and mtools: `mkfs.fat --invariant` with the volume id given after it
//! (`--invariant` sets the id to 0x1234abcd, and a later `-i` overrides that; the volume-label
//! entry keeps the invariant date, 2015-03-14, as mkfs.fat has no SOURCE_DATE_EPOCH), then
//! `mmd`/`mcopy -m` of files whose times were set to SOURCE_DATE_EPOCH, which mtools also uses
//! for what it creates. The `fatfs` crate was the first choice, but its 0.3 release writes
//! long-name entries for `.` and `..` and, on FAT32, a `..` pointing at the root's cluster
//! where the format wants 0: `fsck.fat` rejects the result.

/// The shell step that makes the FAT image `image` (a path as the script sees it, `$OUT`
/// allowed: every path is double-quoted) of
/// `size_mib` MiB, FAT32 with 512-byte clusters when `fat32` (as the UEFI specification wants
/// an EFI system partition), holding each `(source, destination)` file (destinations with
/// `/`, directories created as needed).
pub fn script(
    image: &str,
    size_mib: u64,
    fat32: bool,
    volume_id: u32,
    label: &str,
    files: &[(String, String)],
) -> String {
    let fat = if fat32 { "-F 32 -S 512 -s 1 " } else { "" };
    let mut s = format!(
        "rm -f \"{image}\"\nmkfs.fat -C --invariant {fat}-i {volume_id:08x} -n \"{label}\" \"{image}\" {} >/dev/null\n",
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
        s.push_str(&format!("mmd -i \"{image}\" \"::/{d}\"\n"));
    }
    for (src, dest) in files {
        s.push_str(&format!(
            "touch -d \"@$SOURCE_DATE_EPOCH\" \"{src}\"\nmcopy -m -i \"{image}\" \"{src}\" \"::/{dest}\"\n"
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_makes_each_directory_once() {
        let s = script(
            "/b/esp.img",
            64,
            true,
            0x1234abcd,
            "ESP",
            &[
                ("/b/media/X.EFI".into(), "EFI/BOOT/BOOTX64.EFI".into()),
                ("/b/media/y".into(), "EFI/BOOT/y".into()),
            ],
        );
        assert_eq!(s.matches("mmd ").count(), 2, "{s}");
        assert!(
            s.contains("--invariant -F 32 -S 512 -s 1 -i 1234abcd -n \"ESP\" \"/b/esp.img\" 65536"),
            "{s}"
        );
        assert!(
            s.contains("mcopy -m -i \"/b/esp.img\" \"/b/media/X.EFI\" \"::/EFI/BOOT/BOOTX64.EFI\""),
            "{s}"
        );
    }
}
