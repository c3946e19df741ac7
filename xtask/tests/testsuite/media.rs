//! Full tier: the boot media (initramfs, efi-image and its VHD/VHDX/VMDK/OVA/qcow2/box forms,
//! iso) read by the tools their users have (sfdisk, sgdisk, fsck.fat, mtools, xorriso,
//! qemu-img, an XML parser for the OVF, Vagrant) and booted under QEMU (TCG): the initramfs with -kernel -initrd and no
//! disk, the GPT disk, its VHD and its VMDK through OVMF with no -kernel, the ISO through OVMF
//! as a CD-ROM, and the ISO and the GPT disk through SeaBIOS (isolinux, SYSLINUX). Determinism and the pins: `audit` (full.rs) rebuilds every medium from scratch
//! under varied conditions and compares it with pins/outputs.toml.

use crate::support;
use crate::support::{host_tools, repo, run_tool as run, tool, xtask_ok as ok};
use std::path::{Path, PathBuf};

/// Build TARGET; its store entry's output directory.
fn built(target: &str) -> PathBuf {
    PathBuf::from(ok(&["build", target]).lines().last().unwrap()).join("out")
}

/// The `root=PARTUUID=` value of a UKI's command line (its .cmdline section, plain text).
fn partuuid_in(uki: &[u8]) -> String {
    let text = String::from_utf8_lossy(uki);
    let at = text.find("root=PARTUUID=").expect("no root=PARTUUID= in the UKI");
    text[at + 14..at + 14 + 36].to_lowercase()
}

/// Every file under `dir`, symlinked directories followed; a dangling link is left out.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let entries = walkdir::WalkDir::new(dir).follow_links(true).into_iter().flatten();
    entries.filter(|e| !e.file_type().is_dir()).map(walkdir::DirEntry::into_path).collect()
}

fn extract(image: &Path, offset: u64, size: u64, dest: &Path) {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(image).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0; size as usize];
    f.read_exact(&mut buf).unwrap();
    std::fs::write(dest, buf).unwrap();
}

#[test]
#[ignore = "full tier: boot media: structure checks by third-party tools and UEFI/initramfs boots"]
fn boot_media_are_well_formed_and_boot() {
    let _full = support::full_tier();
    host_tools("sfdisk, sgdisk, fsck.fat, mtools, xorriso, qemu-img, QEMU and OVMF");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    // 1. The initramfs: gzip'd newc cpio that boots as a live system (no disk at all).
    let initramfs = built("initramfs").join("initramfs.cpio.gz");
    let head = std::fs::read(&initramfs).unwrap();
    assert_eq!(&head[..2], b"\x1f\x8b", "initramfs.cpio.gz is not gzip");
    assert_eq!(&head[4..8], b"\0\0\0\0", "the gzip header carries a time");
    ok(&["boot-test", "--target", "initramfs"]);

    // 2. The GPT disk: valid tables (primary and backup), the ESP and a Linux root whose
    //    PARTUUID is the one the UKI's command line names, a FAT ESP fsck accepts with
    //    EFI/BOOT/BOOTX64.EFI in it.
    let efi = built("efi-image");
    let img = efi.join("efi.img");
    let verify = run("sgdisk", &["-v", img.to_str().unwrap()]);
    assert!(verify.contains("No problems found"), "{verify}");
    let table: serde_json::Value =
        serde_json::from_str(&run("sfdisk", &["--json", img.to_str().unwrap()])).unwrap();
    let t = &table["partitiontable"];
    assert_eq!(t["label"], "gpt");
    let parts = t["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{table}");
    assert_eq!(parts[0]["type"], "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "first is not the ESP");
    assert_eq!(parts[1]["type"], "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", "no x86-64 root");
    let uki = std::fs::read(efi.join("BOOTX64.EFI")).unwrap();
    assert_eq!(
        parts[1]["uuid"].as_str().unwrap().to_lowercase(),
        partuuid_in(&uki),
        "the root partition is not the one the UKI mounts"
    );
    let sector = t["sectorsize"].as_u64().unwrap_or(512);
    let (start, size) = (parts[0]["start"].as_u64().unwrap(), parts[0]["size"].as_u64().unwrap());
    let esp = w.join("esp.img");
    extract(&img, start * sector, size * sector, &esp);
    run("fsck.fat", &["-n", esp.to_str().unwrap()]);
    let listing = tool("mdir")
        .args(["-b", "-i", esp.to_str().unwrap(), "::/EFI/BOOT"])
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&listing.stdout).contains("BOOTX64.EFI"), "{listing:?}");
    // The ESP's copy is the UKI published beside the disk.
    let copy = w.join("esp-uki");
    let o = tool("mcopy")
        .args([
            "-n",
            "-i",
            esp.to_str().unwrap(),
            "::/EFI/BOOT/BOOTX64.EFI",
            copy.to_str().unwrap(),
        ])
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert!(std::fs::read(&copy).unwrap() == uki, "the ESP's BOOTX64.EFI is not out/BOOTX64.EFI");

    // 2b. The BIOS boot path on the same disk: SYSLINUX's gptmbr.bin as the protective MBR's
    //     code, the ESP marked legacy-BIOS-bootable (what gptmbr.bin looks for), SYSLINUX
    //     installed in the ESP (boot sector, /syslinux/ldlinux.sys) with the same kernel, and the
    //     FAT32 backup boot sector a copy of the installer's (fsck.fat reports any difference).
    let bios = built("syslinux-bios");
    let gptmbr = std::fs::read(bios.join("bios/gptmbr.bin")).unwrap();
    let disk_head = std::fs::read(&img).unwrap()[..512].to_vec();
    assert!(disk_head[..gptmbr.len()] == gptmbr[..], "the MBR's code is not gptmbr.bin");
    assert_eq!(parts[0]["attrs"], "LegacyBIOSBootable", "{table}");
    assert!(parts[1]["attrs"].is_null(), "{table}");
    let fsck = run("fsck.fat", &["-n", esp.to_str().unwrap()]);
    assert!(!fsck.contains("differences"), "{fsck}");
    let listing = tool("mdir")
        .args(["-a", "-b", "-i", esp.to_str().unwrap(), "::/syslinux"])
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).to_lowercase();
    for f in ["ldlinux.sys", "ldlinux.c32", "syslinux.cfg"] {
        // (-a: the installer marks ldlinux.sys hidden and system)
        assert!(listing.contains(f), "no /syslinux/{f} in the ESP: {listing}");
    }
    let vbr = std::fs::read(&esp).unwrap();
    assert!(
        String::from_utf8_lossy(&vbr[..512]).contains("SYSLINUX"),
        "the ESP's boot sector is not SYSLINUX's"
    );

    // 3. The forms: qemu-img reads each at the raw disk's size; the VMDK passes its check; the
    //    VHD's data is the raw disk byte for byte, then a 512-byte footer.
    let raw_size = std::fs::metadata(&img).unwrap().len();
    for (file, format) in
        [("efi.vhd", "vpc"), ("efi.vhdx", "vhdx"), ("efi.vmdk", "vmdk"), ("efi.qcow2", "qcow2")]
    {
        let path = efi.join(file);
        let info: serde_json::Value = serde_json::from_str(&run(
            "qemu-img",
            &["info", "--output=json", "-f", format, path.to_str().unwrap()],
        ))
        .unwrap();
        assert_eq!(info["virtual-size"].as_u64(), Some(raw_size), "{file}: {info}");
    }
    run("qemu-img", &["check", "-f", "vmdk", efi.join("efi.vmdk").to_str().unwrap()]);
    // The VHDX (its random ids replaced, its stale log cleared, its checksums recomputed)
    // passes qemu-img's check and holds the raw disk's bytes.
    let vhdx = efi.join("efi.vhdx");
    let check = run("qemu-img", &["check", "-f", "vhdx", vhdx.to_str().unwrap()]);
    assert!(check.contains("No errors were found"), "{check}");
    let same = run(
        "qemu-img",
        &["compare", "-f", "vhdx", "-F", "raw", vhdx.to_str().unwrap(), img.to_str().unwrap()],
    );
    assert!(same.contains("Images are identical"), "{same}");
    run("qemu-img", &["check", "-f", "qcow2", efi.join("efi.qcow2").to_str().unwrap()]);
    let vhd = std::fs::read(efi.join("efi.vhd")).unwrap();
    assert_eq!(vhd.len() as u64, raw_size + 512);
    assert!(vhd[..raw_size as usize] == std::fs::read(&img).unwrap()[..], "VHD data != efi.img");
    assert_eq!(&vhd[raw_size as usize..raw_size as usize + 8], b"conectix");

    // 3c. The Vagrant box: the pinned Vagrant (pins/vagrant.lock) accepts it with `box add`
    //     and lists it for the libvirt provider; the box.img it unpacked is a qcow2 that
    //     qemu-img reads at the raw disk's size and finds identical to efi.img.
    let boxes = w.join("boxes");
    std::fs::create_dir_all(&boxes).unwrap();
    std::fs::copy(efi.join("reprovm.box"), boxes.join("reprovm.box")).unwrap();
    let home = w.join("vagrant.d");
    let vagrant = |args: &[&str]| {
        let mut all =
            vec!["vagrant", "--dir", boxes.to_str().unwrap(), "--home", home.to_str().unwrap()];
        all.extend(args);
        ok(&all)
    };
    let added = vagrant(&["box", "add", "--name", "reprovm", "reprovm.box"]);
    assert!(added.contains("Successfully added box 'reprovm'"), "{added}");
    let listed = vagrant(&["box", "list"]);
    assert!(listed.contains("reprovm (libvirt, 0"), "{listed}");
    let unpacked = walk(&home.join("boxes"))
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == "box.img"))
        .unwrap_or_else(|| panic!("no box.img under {}", home.display()));
    let metadata: serde_json::Value =
        serde_json::from_slice(&std::fs::read(unpacked.with_file_name("metadata.json")).unwrap())
            .unwrap();
    assert_eq!(metadata["provider"], "libvirt", "{metadata}");
    assert_eq!(metadata["format"], "qcow2", "{metadata}");
    let info: serde_json::Value = serde_json::from_str(&run(
        "qemu-img",
        &["info", "--output=json", unpacked.to_str().unwrap()],
    ))
    .unwrap();
    assert_eq!(info["format"], "qcow2", "{info}");
    assert_eq!(info["virtual-size"].as_u64(), Some(raw_size), "{info}");
    let same = run(
        "qemu-img",
        &["compare", "-f", "qcow2", "-F", "raw", unpacked.to_str().unwrap(), img.to_str().unwrap()],
    );
    assert!(same.contains("Images are identical"), "{same}");

    // 4. The OVA: descriptor first, then the manifest, then the disk; the OVF names the disk
    //    with its real size and the disk's capacity; the manifest's digests are right.
    let mut ova = tar::Archive::new(std::fs::File::open(efi.join("reprovm.ova")).unwrap());
    let mut members = Vec::new();
    for e in ova.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        members.push((name, data));
    }
    let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["reprovm.ovf", "reprovm.mf", "reprovm-disk1.vmdk"]);
    let ovf = String::from_utf8(members[0].1.clone()).unwrap();
    let doc = roxmltree::Document::parse(&ovf).unwrap();
    const OVF_NS: &str = "http://schemas.dmtf.org/ovf/envelope/1";
    let file = doc.descendants().find(|n| n.has_tag_name((OVF_NS, "File"))).unwrap();
    assert_eq!(file.attribute((OVF_NS, "href")), Some("reprovm-disk1.vmdk"));
    assert_eq!(file.attribute((OVF_NS, "size")), Some(members[2].1.len().to_string().as_str()));
    let disk = doc.descendants().find(|n| n.has_tag_name((OVF_NS, "Disk"))).unwrap();
    assert_eq!(disk.attribute((OVF_NS, "capacity")), Some(raw_size.to_string().as_str()));
    assert!(members[2].1 == std::fs::read(efi.join("efi.vmdk")).unwrap(), "OVA disk != efi.vmdk");
    let manifest = String::from_utf8(members[1].1.clone()).unwrap();
    for (name, data) in [&members[0], &members[2]] {
        use sha2::Digest;
        let line = format!("SHA256({name})= {:x}", sha2::Sha256::digest(data));
        assert!(manifest.lines().any(|l| l == line), "{manifest} lacks {line}");
    }

    // 5. The ISO: El Torito with a BIOS (isolinux) and a UEFI boot image, an isohybrid MBR and
    //    a GPT for disk boot, SOURCE_DATE_EPOCH dates in the primary volume descriptor.
    let iso = built("iso");
    let report = run(
        "xorriso",
        &["-indev", iso.join("reprovm.iso").to_str().unwrap(), "-report_el_torito", "plain"],
    );
    for platform in ["BIOS", "UEFI"] {
        assert!(
            report.lines().any(|l| l.contains("El Torito boot img") && l.contains(platform)),
            "no {platform} boot image: {report}"
        );
    }
    assert!(
        report.contains("/isolinux/isolinux.bin") && report.contains("isohybrid-suitable"),
        "{report}"
    );
    let pvd = {
        let d = std::fs::read(iso.join("reprovm.iso")).unwrap();
        d[16 * 2048..17 * 2048].to_vec()
    };
    assert_eq!(&pvd[1..6], b"CD001");
    let head = std::fs::read(iso.join("reprovm.iso")).unwrap()[..512].to_vec();
    assert!(head[..432].iter().any(|&b| b != 0), "no boot code in the ISO's MBR (isohybrid)");
    assert_eq!(&head[510..], &[0x55, 0xAA]);
    assert_eq!(&pvd[40..47], b"REPROVM", "volume id");
    assert_eq!(&pvd[813..827], b"20240101000000", "creation date is not SOURCE_DATE_EPOCH");
    // The root directory record's date (years since 1900, month, day, h, m, s): the files'
    // own times, which the build sets to SOURCE_DATE_EPOCH, not the time of the build.
    assert_eq!(&pvd[156 + 18..156 + 24], &[124, 1, 1, 0, 0, 0], "root directory date");
    let iso_table = run("sfdisk", &["--dump", iso.join("reprovm.iso").to_str().unwrap()]);
    assert!(iso_table.contains("label: gpt"), "the ISO is not hybrid: {iso_table}");

    // 6. Boots with no -kernel: OVMF loads BOOTX64.EFI from the disk (raw, VHD, VHDX, VMDK)
    //    and from the CD's El Torito image; the same SSH checks as the xcluster-style boot.
    for target in ["efi-image", "efi-vhd", "efi-vhdx", "efi-vmdk", "iso"] {
        ok(&["boot-test", "--target", target]);
    }
    // Through a legacy BIOS (QEMU's SeaBIOS): the ISO as a CD-ROM (isolinux from El Torito) and
    // as a disk (the isohybrid MBR); the GPT disk, raw and as a VHDX, through gptmbr.bin and
    // SYSLINUX on the ESP. The console shows which loader started the kernel.
    for (target, loader) in [
        ("iso", "ISOLINUX 6.04"),
        ("iso-disk", "ISOLINUX 6.04"),
        ("efi-image", "SYSLINUX 6.04"),
        ("efi-vhdx", "SYSLINUX 6.04"),
    ] {
        ok(&["boot-test", "--target", target, "--firmware", "bios"]);
        let console = std::fs::read_to_string(repo().join("out/boot-test-console.log")).unwrap();
        assert!(console.contains(loader), "{target}: {loader} did not boot:\n{console}");
    }
    // The devices VirtualBox and VMware give the OVA's disk (AHCI SATA, an E1000 NIC): the
    // kernel finds its root there by PARTUUID and the SSH checks pass over the E1000.
    ok(&["boot-test", "--target", "efi-image", "--devices", "classic"]);
    let console = std::fs::read_to_string(repo().join("out/boot-test-console.log")).unwrap();
    for (what, says) in
        [("the AHCI disk", "ahci"), ("the SCSI disk sda", "[sda]"), ("the E1000 NIC", "e1000")]
    {
        assert!(console.contains(says), "{what}: no `{says}` on the console:\n{console}");
    }
    assert!(!console.contains("[vda]"), "a virtio disk in the classic boot:\n{console}");

    // The out/ copies these boots used are the store entries checked above.
    for (name, entry) in [("efi.img", &efi), ("efi.vhd", &efi), ("reprovm.iso", &iso)] {
        let copy = std::fs::read(repo().join("out").join(name)).unwrap();
        assert!(copy == std::fs::read(entry.join(name)).unwrap(), "out/{name} is not the build's");
    }
}
