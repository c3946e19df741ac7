//! Full tier: the aarch64 build (`--arch aarch64`). Every published aarch64 output builds over
//! the pinned cross toolchain and matches pins/outputs-aarch64.toml; the image's programs and
//! libraries are arm64 ELF with the arm64 loader; the image boots under
//! `qemu-system-aarch64 -M virt` (TCG) and passes the SSH test (`uname -m` is aarch64, modules
//! load); every aarch64 output, the kernel included, is audited (rebuilt under varied
//! conditions); the Firecracker layouts merge with the x86_64 ones into multi-architecture
//! layouts whose index digests are pinned, which skopeo reads as two platforms under one tag,
//! whose arm64 image umoci unpacks to an arm64 Linux Image, and which travel through a
//! registry and back. Then the kernel matrix's representative arm64 cell (docs/decisions/0073):
//! `kernel@6.18+bpf` and its images match their pins, its config has what the flavour is
//! for, and it boots on `virt` over an image with its own modules, where the bpf and tracefs
//! file systems exist. Runs in the repository's out/ (aarch64 results in out/aarch64/).

use crate::support;

use crate::support::{host_tools, repo, run_tool as run, xtask_ok as ok};
use std::path::{Path, PathBuf};

/// `cargo xtask --arch aarch64 ARGS`.
fn arm(args: &[&str]) -> String {
    let mut all = vec!["--arch", "aarch64"];
    all.extend_from_slice(args);
    ok(&all)
}

/// An arm64 Linux kernel `Image`: the arm64 boot header's magic (`ARM\x64` at 0x38, per the
/// kernel's Documentation/arch/arm64/booting.rst) and, through its EFI stub, a PE/COFF header
/// (`MZ`, the PE offset at 0x3c, `PE\0\0`) for machine ARM64 (0xAA64).
fn assert_arm64_image(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[0x38..0x3c], b"ARM\x64", "{}: no arm64 Image magic", path.display());
    assert_arm64_pe(path);
}

/// A PE/COFF file (`MZ`, the PE offset at 0x3c, `PE\0\0`) for machine ARM64 (0xAA64): an
/// arm64 kernel's EFI stub, or a unified kernel image built over systemd's arm64 stub.
fn assert_arm64_pe(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    let shown = path.display();
    assert_eq!(&bytes[..2], b"MZ", "{shown}: no EFI stub");
    let pe = u32::from_le_bytes(bytes[0x3c..0x40].try_into().unwrap()) as usize;
    assert_eq!(&bytes[pe..pe + 4], b"PE\0\0", "{shown}: no PE header");
    let machine = u16::from_le_bytes(bytes[pe + 4..pe + 6].try_into().unwrap());
    assert_eq!(machine, 0xaa64, "{shown}: a PE for machine {machine:#x}, not ARM64");
}

/// The layers of the manifest skopeo picks for one platform of a multi-architecture layout's
/// tag (its `Digest` is the tag's, the index's: the layers tell the manifests apart).
fn platform_layers(layout: &Path, tag: &str, arch: &str) -> Vec<String> {
    let raw = run(
        "skopeo",
        &[
            "--override-os",
            "linux",
            "--override-arch",
            arch,
            "inspect",
            &format!("oci:{}:{tag}", layout.display()),
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(v["Architecture"], arch, "{raw}");
    v["Layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect()
}

/// The layers of the manifest blob `digest` of a layout.
fn manifest_layers(layout: &Path, digest: &str) -> Vec<String> {
    let blob = layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(blob).unwrap()).unwrap();
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

#[test]
#[ignore = "full tier: aarch64: cross builds, pins, TCG boot, audit, multi-arch OCI"]
fn aarch64_builds_matches_its_pins_boots_and_goes_multiarch() {
    let _full = support::full_tier();
    host_tools("QEMU (aarch64), skopeo, umoci, docker-registry");
    // 1. Every published aarch64 output builds and is the pinned bytes.
    let pins: toml::Table =
        std::fs::read_to_string(repo().join("pins/outputs-aarch64.toml")).unwrap().parse().unwrap();
    // The default cell's outputs; the other cells of the kernel matrix are one representative
    // (at the end) and their input hashes (farm.rs).
    let targets: Vec<String> = pins.keys().filter(|t| !t.contains(['@', '+'])).cloned().collect();
    for needed in [
        "kernel",
        "busybox",
        "rootfs",
        "hd-image",
        "initramfs",
        "efi-image",
        "iso",
        "firecracker-kernel-bin-oci",
        "krata-kernel-oci",
    ] {
        assert!(targets.iter().any(|t| t == needed), "pins/outputs-aarch64.toml lacks {needed}");
    }
    let mut entries = std::collections::BTreeMap::new();
    for t in &targets {
        let entry = PathBuf::from(arm(&["build", t]).lines().last().unwrap().trim());
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(entry.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(
            m["output_hash"].as_str(),
            pins[t]["output_hash"].as_str(),
            "{t} (aarch64) is not the pinned bytes: `cargo xtask --arch aarch64 audit {t}` explains"
        );
        entries.insert(t.clone(), entry.join("out"));
    }
    // Each architecture keeps its own results: x86_64's out/hd.img is not replaced.
    let results = repo().join("out/aarch64");
    assert_arm64_image(&results.join("Image"));
    assert_arm64_image(&entries["kernel"].join("Image"));

    // 2. One machine in the image: every ELF file of the root is arm64, programs load
    //    through the arm64 loader, and the libraries are arm64 glibc's.
    let list = std::fs::read_to_string(entries["rootfs"].join("rootfs.list")).unwrap();
    for lib in ["/lib/ld-linux-aarch64.so.1", "/lib/aarch64-linux-gnu/libc.so.6"] {
        assert!(list.contains(&format!(" {lib} ")), "rootfs.list has no {lib}");
    }
    assert!(!list.contains("x86_64-linux-gnu"), "an x86_64 path in the arm64 root");
    // The console's shell is on the PL011 (ttyAMA0), the console the arm64 boots use.
    assert!(list.contains("c 0600 /dev/ttyAMA0 204:64") && !list.contains("/dev/ttyS0"), "{list}");
    let tar = std::fs::File::open(entries["rootfs"].join("rootfs.tar")).unwrap();
    let mut elves = 0;
    let mut inittab_seen = false;
    for e in tar::Archive::new(tar).entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = e.path().unwrap().display().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        if path.trim_start_matches("./") == "etc/inittab" {
            let inittab = String::from_utf8_lossy(&data);
            assert!(inittab.contains("ttyAMA0::respawn:-/bin/sh"), "{inittab}");
            inittab_seen = true;
        }
        if !data.starts_with(b"\x7fELF") {
            continue;
        }
        let elf = goblin::elf::Elf::parse(&data).unwrap();
        assert_eq!(elf.header.e_machine, goblin::elf::header::EM_AARCH64, "{path}");
        if let Some(interp) = elf.interpreter {
            assert_eq!(interp, "/lib/ld-linux-aarch64.so.1", "{path}");
        }
        elves += 1;
    }
    assert!(elves > 20, "only {elves} ELF files in the arm64 root");
    assert!(inittab_seen, "no etc/inittab in the arm64 root");

    // 3. It boots on QEMU's arm64 virt machine under TCG and passes the SSH test (uname -m is
    //    checked against the architecture by boot-test itself), as a disk and as a live system.
    arm(&["boot-test"]);
    arm(&["boot-test", "--target", "initramfs"]);

    // 3b. The UEFI media: a unified kernel image over systemd's arm64 stub as
    //     EFI/BOOT/BOOTAA64.EFI, the root partition typed arm64, booted by AAVMF (the pinned
    //     firmware of QEMU's virt machine), from the disk and from the ISO as a CD-ROM.
    let efi = &entries["efi-image"];
    assert_arm64_pe(&efi.join("BOOTAA64.EFI"));
    assert!(!efi.join("BOOTX64.EFI").exists());
    let img = efi.join("efi.img");
    let verify = run("sgdisk", &["-v", img.to_str().unwrap()]);
    assert!(verify.contains("No problems found"), "{verify}");
    let table: serde_json::Value =
        serde_json::from_str(&run("sfdisk", &["--json", img.to_str().unwrap()])).unwrap();
    let parts = table["partitiontable"]["partitions"].as_array().unwrap();
    assert_eq!(parts[1]["type"], "B921B045-1DF0-41C3-AF44-4C6F280D3FAE", "no arm64 root: {table}");
    let listing = run(
        "xorriso",
        &[
            "-indev",
            entries["iso"].join("reprovm.iso").to_str().unwrap(),
            "-find",
            "/",
            "-exec",
            "lsdl",
        ],
    );
    assert!(!listing.contains("isolinux"), "a BIOS loader on the arm64 ISO: {listing}");
    let esp = entries["iso"].join("efiboot.img");
    let files = run("mdir", &["-i", esp.to_str().unwrap(), "-b", "-/", "::"]);
    assert!(files.contains("::/EFI/BOOT/BOOTAA64.EFI"), "{files}");
    arm(&["boot-test", "--target", "efi-image"]);
    let console = std::fs::read_to_string(repo().join("out/boot-test-console.log")).unwrap();
    assert!(console.contains("EFI stub"), "the kernel was not started by the UEFI stub");
    // init's root shell is on the console the command line names (ttyAMA0): its prompt.
    assert!(console.contains("reprovm:/# "), "no shell prompt on the arm64 serial console");
    arm(&["boot-test", "--target", "iso"]);

    // 4. The audit: every aarch64 output, the kernel included, rebuilt under varied
    //    conditions (another work root, -j3, shuffled directory order, time zone, locale,
    //    umask, host name), compared with the store and the pins, explained. This is CI's one
    //    audit of a kernel; x86_64's kernel gets its second build from Nix (docs/guide/testing.md).
    let mut audited: Vec<&str> = targets.iter().map(String::as_str).collect();
    audited.insert(0, "audit");
    arm(&audited);

    // 5. Multi-architecture layouts: each Firecracker image under one tag is an index of the
    //    amd64 and arm64/v8 manifests, its digest the pinned one (`multiarch` refuses another).
    let version = std::fs::read_to_string(entries["kernel"].join("kernel.release")).unwrap();
    let version = version.trim();
    let work = tempfile::tempdir().unwrap();
    let registry = support::LocalRegistry::start();
    let x86_pins: toml::Table =
        std::fs::read_to_string(repo().join("pins/outputs.toml")).unwrap().parse().unwrap();
    for target in ["firecracker-kernel-bin-oci", "firecracker-kernel-modules-oci"] {
        let layout = PathBuf::from(ok(&["multiarch", target]).lines().last().unwrap().trim());
        // Two manifests under one tag: each platform's is its architecture's pinned one.
        let amd = x86_pins[target]["oci_manifests"][version].as_str().unwrap().to_string();
        let arm64 = pins[target]["oci_manifests"][version].as_str().unwrap().to_string();
        assert_ne!(amd, arm64, "{target}: one manifest for both platforms");
        assert_eq!(platform_layers(&layout, version, "amd64"), manifest_layers(&layout, &amd));
        assert_eq!(platform_layers(&layout, version, "arm64"), manifest_layers(&layout, &arm64));
        assert_ne!(manifest_layers(&layout, &amd), manifest_layers(&layout, &arm64));
        // The arm64 image as a client on an arm64 host takes it: one layer, a kernel Image
        // at every name a flintlock spec may use.
        let single = work.path().join(format!("{target}-arm64"));
        run(
            "skopeo",
            &[
                "--override-arch",
                "arm64",
                "copy",
                &format!("oci:{}:{version}", layout.display()),
                &format!("oci:{}:{version}", single.display()),
            ],
        );
        let root = support::umoci_unpack(
            &single,
            version,
            &work.path().join(format!("{target}-unpacked")),
        );
        if target == "firecracker-kernel-bin-oci" {
            for name in ["boot/image", "boot/vmlinux", "bin/image", "bin/vmlinux"] {
                assert_arm64_image(&root.join(name));
            }
        } else {
            assert!(root.join("lib/modules").join(version).join("modules.dep").is_file());
        }
        // Through a registry and back: every platform's manifest and blob, checked.
        let reference = format!("{}/reprovm/{}", registry.addr, target.trim_end_matches("-oci"));
        ok(&["multiarch", target, &reference, "--plain-http"]);
        let pulled = work.path().join(format!("{target}-pulled"));
        ok(&["pull", &format!("{reference}:{version}"), pulled.to_str().unwrap(), "--plain-http"]);
        assert_eq!(platform_layers(&pulled, version, "arm64"), manifest_layers(&pulled, &arm64));
        assert_eq!(platform_layers(&pulled, version, "amd64"), manifest_layers(&pulled, &amd));
    }
    // krata's zone kernel too: one tag, both platforms, the config referrer of each kept.
    let krata_multi =
        PathBuf::from(ok(&["multiarch", "krata-kernel-oci"]).lines().last().unwrap().trim());
    assert_ne!(
        platform_layers(&krata_multi, version, "amd64"),
        platform_layers(&krata_multi, version, "arm64")
    );
    // krata's arm64 zone kernel: the gzipped Image, and metadata naming the architecture.
    let krata = &entries["krata-kernel-oci"];
    let layout = Path::new(krata);
    let root = support::umoci_unpack(layout, version, &work.path().join("krata-unpacked"));
    let metadata = std::fs::read_to_string(root.join("kernel/metadata")).unwrap();
    assert!(metadata.contains("KERNEL_ARCH=aarch64"), "{metadata}");
    let gz = std::fs::File::open(root.join("kernel/image")).unwrap();
    let mut image = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut image).unwrap();
    let unzipped = work.path().join("krata-Image");
    std::fs::write(&unzipped, image).unwrap();
    assert_arm64_image(&unzipped);

    // 6. The matrix's arm64 cell: version 6.18 in the bpf flavour.
    for base in [
        "kernel",
        "firecracker-kernel-bin-oci",
        "firecracker-kernel-modules-oci",
        "krata-kernel-oci",
    ] {
        let target = format!("{base}@6.18+bpf");
        let entry = PathBuf::from(arm(&["build", &target]).lines().last().unwrap().trim());
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(entry.join("manifest.json")).unwrap()).unwrap();
        let pinned = pins.get(&target).unwrap_or_else(|| {
            panic!("pins/outputs-aarch64.toml has no [\"{target}\"]: `cargo xtask --arch aarch64 pin outputs`")
        });
        assert_eq!(m["output_hash"].as_str(), pinned["output_hash"].as_str(), "{target} (aarch64)");
        if base == "kernel" {
            let config = std::fs::read_to_string(entry.join("out/config")).unwrap();
            for option in [
                "CONFIG_BPF_SYSCALL=y",
                "CONFIG_BPF_JIT=y",
                "CONFIG_CGROUP_BPF=y",
                "CONFIG_KPROBE_EVENTS=y",
                "CONFIG_BPF_EVENTS=y",
            ] {
                assert!(config.lines().any(|l| l == option), "{target}: no {option}");
            }
            let release = std::fs::read_to_string(entry.join("out/kernel.release")).unwrap();
            assert!(release.starts_with("6.18."), "{target} says it is {release}");
        }
    }
    arm(&["build", "hd-image@6.18+bpf"]);
    let booted = arm(&[
        "boot-test",
        "--check",
        "grep -w bpf /proc/filesystems && grep -w tracefs /proc/filesystems",
    ]);
    eprintln!("{booted}");
    // out/aarch64/ holds the default image again.
    arm(&["build", "hd-image"]);
}
