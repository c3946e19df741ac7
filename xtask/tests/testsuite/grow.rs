//! Full tier: disks that grow. The image's root file system fills a disk made larger than the
//! image (the workshop's first lesson: a cloud image that runs out of space), once: an image
//! resized by 1 GiB with the pinned qemu-img boots with a root file system 1 GiB larger, the
//! second boot leaves it alone, and `--disk-size` gives the same without touching the image.
//! The UEFI disk's root is a GPT partition: it grows to the disk's end first (the backup GPT
//! moved, sgdisk finds no problem), once, and the grown disk still boots through BIOS.

use crate::support;

use crate::support::{host_tools, repo, run_tool, xtask_ok as ok};
use std::path::Path;

/// `boot-test ARGS`: what it printed, and the console log it left.
fn boot_test(args: &[&str]) -> (String, String) {
    let o = support::xtask().arg("boot-test").args(args).output().unwrap();
    let text = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "boot-test {}:\n{text}", args.join(" "));
    let console = std::fs::read_to_string(repo().join("out/boot-test-console.log")).unwrap();
    (text, console)
}

/// The blocks of `/` on `device` before and after, from the console line of grow-rootfs.
fn grew_on(console: &str, device: &str) -> Option<(u64, u64)> {
    let start = format!("reprovm: grew / on {device} from ");
    let line = console.lines().find(|l| l.starts_with(&start))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    Some((words[6].parse().ok()?, words[8].parse().ok()?))
}

/// The blocks of `/` before and after on the whole disk /dev/vda.
fn grew(console: &str) -> Option<(u64, u64)> {
    grew_on(console, "/dev/vda")
}

/// The 1K-blocks of `/` as `df -k /` printed it in the guest.
fn df_blocks(text: &str) -> u64 {
    let line = text.lines().find(|l| l.starts_with("/dev/root")).expect("df output");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn sha256(p: &Path) -> String {
    support::registry::sha256_hex(&std::fs::read(p).unwrap())
}

#[test]
#[ignore = "full tier: disks that grow: qemu-img resize, two boots, --disk-size"]
fn a_larger_disk_grows_the_root_file_system_once() {
    // One boot at a time (every boot-test writes out/boot-test-console.log): full_tier's lock.
    let _full = support::full_tier();
    host_tools("QEMU, qemu-img");
    ok(&["build", "hd-image"]);
    let image = repo().join("out/hd.img");
    let before = sha256(&image);
    let w = tempfile::tempdir().unwrap();
    let disk = w.path().join("grow.img");
    std::fs::copy(&image, &disk).unwrap();
    run_tool("qemu-img", &["resize", "-f", "raw", disk.to_str().unwrap(), "+1G"]);
    let args = ["--image", disk.to_str().unwrap(), "--persist"];

    let (text, console) = boot_test(&args);
    let (from, to) =
        grew(&console).unwrap_or_else(|| panic!("no growth on the console:\n{console}"));
    assert_eq!((to - from) * 4096, 1 << 30, "grown by exactly 1 GiB: {from} -> {to} blocks");
    let first = df_blocks(&text);

    let (text, console) = boot_test(&args);
    assert!(grew(&console).is_none(), "the second boot grew / again:\n{console}");
    assert!(
        console.contains(&format!("reprovm: / fills /dev/vda ({to} blocks of 4096 bytes)")),
        "{console}"
    );
    assert_eq!(df_blocks(&text), first, "the second boot changed the size of /");

    // --disk-size: an overlay of that size; the image itself stays as built.
    let size = std::fs::metadata(&image).unwrap().len() + (512 << 20);
    let (text, console) = boot_test(&["--disk-size", &size.to_string()]);
    let (from, to) =
        grew(&console).unwrap_or_else(|| panic!("no growth on the console:\n{console}"));
    assert_eq!((to - from) * 4096, 512 << 20, "{from} -> {to}");
    assert!(df_blocks(&text) > 512 * 1024, "df: {text}");
    assert_eq!(sha256(&image), before, "--disk-size wrote to out/hd.img");
}

#[test]
#[ignore = "full tier: the GPT root partition grows: qemu-img resize, UEFI and BIOS boots, sgdisk"]
fn a_larger_uefi_disk_grows_its_root_partition_once() {
    let _full = support::full_tier();
    host_tools("QEMU, OVMF, qemu-img, sgdisk, sfdisk");
    ok(&["build", "efi-image"]);
    let w = tempfile::tempdir().unwrap();
    let disk = w.path().join("grow-efi.img");
    std::fs::copy(repo().join("out/efi.img"), &disk).unwrap();
    let d = disk.to_str().unwrap();
    run_tool("qemu-img", &["resize", "-f", "raw", d, "+1G"]);
    let table: serde_json::Value =
        serde_json::from_str(&run_tool("sfdisk", &["--json", d])).unwrap();
    let root = &table["partitiontable"]["partitions"][1];
    let (start, old) = (root["start"].as_u64().unwrap(), root["size"].as_u64().unwrap());
    // The new end: the last usable sector before the backup GPT's 32 + 1 sectors at the end,
    // rounded down to a 1 MiB boundary.
    let sectors = std::fs::metadata(&disk).unwrap().len() / 512;
    let end = (sectors - 33) / 2048 * 2048;
    let new = end - start;
    assert!(new >= old + (1 << 21), "{old} -> {new} sectors");
    let args = ["--target", "efi-image", "--image", d, "--persist"];

    let (text, console) = boot_test(&args);
    assert!(
        console.contains(&format!(
            "reprovm: grew partition 2 of /dev/vda from {old} to {new} sectors"
        )),
        "{console}"
    );
    let (_, to) = grew_on(&console, "/dev/vda2")
        .unwrap_or_else(|| panic!("no growth of / on the console:\n{console}"));
    assert_eq!(to, new * 512 / 4096, "/ does not fill the grown partition");
    let verify = run_tool("sgdisk", &["-v", d]);
    assert!(verify.contains("No problems found") && !verify.contains("Caution"), "{verify}");
    let table: serde_json::Value =
        serde_json::from_str(&run_tool("sfdisk", &["--json", d])).unwrap();
    assert_eq!(table["partitiontable"]["partitions"][1]["size"].as_u64(), Some(new), "{table}");
    let first = df_blocks(&text);

    let (text, console) = boot_test(&args);
    assert!(
        console.contains(&format!("reprovm: partition 2 fills /dev/vda ({new} sectors)"))
            && console.contains(&format!("reprovm: / fills /dev/vda2 ({to} blocks of 4096 bytes)")),
        "the second boot grew something again:\n{console}"
    );
    assert_eq!(df_blocks(&text), first, "the second boot changed the size of /");
    // The rewritten tables keep the BIOS path: gptmbr.bin still finds the ESP.
    let (text, console) = boot_test(&["--target", "efi-image", "--image", d, "--firmware", "bios"]);
    assert!(console.contains("SYSLINUX 6.04"), "{console}");
    assert_eq!(df_blocks(&text), first);
}
