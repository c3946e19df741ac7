//! Full tier: the OCI layouts of krata-kernel-oci, firecracker-kernel-bin-oci,
//! firecracker-kernel-modules-oci and hd-image-oci, read by third-party tools from Debian
//! (skopeo, umoci, unsquashfs), pushed to and pulled from a real registry (Debian's
//! docker-registry on 127.0.0.1), and the kernels they carry booted: the Firecracker vmlinux
//! under QEMU's microvm machine, the krata zone kernel (the same kernel's bzImage) as a plain
//! QEMU guest. Every tool is the pinned one (`cargo xtask tool`).
//! Determinism and the pins: `audit` (full.rs) rebuilds every layout under varied conditions.
//! Runs in the repository's out/, after full.rs has built most of what it needs.

use crate::support;

use crate::support::{host_tools, repo, run_tool as run, xtask_ok as ok};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `cargo xtask ARGS` in the repository with stdout and stderr captured.
fn captured(args: &[&str]) -> (bool, String) {
    let o = support::xtask().args(args).output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o.status.success(), text)
}

/// Build TARGET and return its layout (the store entry's output).
fn layout(target: &str) -> PathBuf {
    let entry = ok(&["build", target]);
    let out = PathBuf::from(entry.lines().last().unwrap()).join("out");
    assert!(out.join("oci-layout").is_file(), "{target}: no OCI layout in {}", out.display());
    let link = repo().join("out/oci").join(target);
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        out,
        "out/oci/{target} is not linked to the build"
    );
    out
}

fn index(layout: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap()
}

/// The digest of the manifest tagged `tag` in the layout.
fn tagged(layout: &Path, tag: &str) -> String {
    index(layout)["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no manifest tagged {tag} in {}", layout.display()))["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `umoci unpack` of the tagged image into `dest`; returns the unpacked root file system.
#[test]
#[ignore = "full tier: OCI layouts: skopeo, umoci, unsquashfs, a registry, microvm and krata boots"]
fn oci_layouts_through_tools_a_registry_and_boots() {
    let _full = support::full_tier();
    host_tools("skopeo, umoci, unsquashfs, docker-registry, QEMU");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    // 1. krata's zone kernel image: skopeo reads and copies it, umoci unpacks it, the files are
    //    where krata looks, the metadata has every field, KERNEL_CONFIG is the uncompressed
    //    .config's digest and that blob is in the layout, addons.squashfs lists the modules.
    let krata = layout("krata-kernel-oci");
    let inspect: serde_json::Value = serde_json::from_str(&run(
        "skopeo",
        &["inspect", &format!("oci:{}:6.1.176", krata.display())],
    ))
    .unwrap();
    assert_eq!(inspect["Digest"], tagged(&krata, "6.1.176"));
    assert_eq!(
        (inspect["Architecture"].as_str(), inspect["Os"].as_str()),
        (Some("amd64"), Some("linux"))
    );
    assert_eq!(inspect["Created"], "2024-01-01T00:00:00Z");
    let copy = w.join("copy");
    run(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:6.1.176", krata.display()),
            &format!("oci:{}:6.1.176", copy.display()),
        ],
    );
    assert_eq!(
        tagged(&copy, "6.1.176"),
        tagged(&krata, "6.1.176"),
        "skopeo's copy has another manifest"
    );
    let root = support::umoci_unpack(&krata, "6.1.176", &w.join("krata"));
    let names: Vec<String> = std::fs::read_dir(root.join("kernel"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(names, ["addons.squashfs", "config.gz", "image", "metadata"]);
    let metadata: BTreeMap<String, String> = std::fs::read_to_string(root.join("kernel/metadata"))
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("not KEY=VALUE: {l}"));
            (k.to_string(), v.to_string())
        })
        .collect();
    let keys: Vec<&str> = metadata.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["KERNEL_ARCH", "KERNEL_CONFIG", "KERNEL_FLAVOR", "KERNEL_TAGS", "KERNEL_VERSION"]
    );
    assert_eq!(metadata["KERNEL_ARCH"], "x86_64");
    assert_eq!(metadata["KERNEL_VERSION"], "6.1.176");
    assert_eq!(metadata["KERNEL_TAGS"], "6.1.176");
    let config = {
        let mut gz = flate2::read::GzDecoder::new(
            std::fs::File::open(root.join("kernel/config.gz")).unwrap(),
        );
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut gz, &mut text).unwrap();
        text
    };
    assert!(String::from_utf8_lossy(&config).contains("CONFIG_XEN_PV=y"));
    let config_digest = format!("sha256:{}", hex_sha256(&config));
    assert_eq!(metadata["KERNEL_CONFIG"], config_digest);
    let blob = krata.join("blobs/sha256").join(config_digest.trim_start_matches("sha256:"));
    assert_eq!(std::fs::read(&blob).unwrap(), config, "the .config blob named by KERNEL_CONFIG");
    let listing = run("unsquashfs", &["-l", root.join("kernel/addons.squashfs").to_str().unwrap()]);
    assert!(listing.contains("squashfs-root/modules/modules.dep"), "{listing}");
    assert!(listing.contains("squashfs-root/modules/kernel/drivers/net/dummy.ko"), "{listing}");
    let owners =
        run("unsquashfs", &["-lln", root.join("kernel/addons.squashfs").to_str().unwrap()]);
    assert!(
        owners.lines().filter(|l| l.contains("squashfs-root")).all(|l| l.contains(" 0/0 ")),
        "{owners}"
    );

    // 2. Liquid Metal's two images: the ELF vmlinux under all three names, and the modules.
    let bin = layout("firecracker-kernel-bin-oci");
    let fc = support::umoci_unpack(&bin, "6.1.176", &w.join("fc-bin"));
    let vmlinux = fc.join("boot/vmlinux");
    assert_eq!(&std::fs::read(&vmlinux).unwrap()[..4], b"\x7fELF");
    for other in ["bin/vmlinux", "bin/image"] {
        assert_eq!(
            std::fs::read(fc.join(other)).unwrap(),
            std::fs::read(&vmlinux).unwrap(),
            "{other}"
        );
    }
    let modules = layout("firecracker-kernel-modules-oci");
    let fm = support::umoci_unpack(&modules, "6.1.176", &w.join("fc-modules"));
    assert!(fm.join("lib/modules/6.1.176/modules.dep").is_file());
    assert!(fm.join("lib/modules/6.1.176/kernel/drivers/net/dummy.ko").is_file());

    // 3. hd-image as an artifact: one titled layer per file with its own media type; skopeo
    //    copies it (and, rightly, will not `inspect` it as an image).
    let disk = layout("hd-image-oci");
    let m: serde_json::Value = serde_json::from_str(&run(
        "skopeo",
        &["inspect", "--raw", &format!("oci:{}:1", disk.display())],
    ))
    .unwrap();
    assert_eq!(m["artifactType"], "application/vnd.reprovm.vm-image.v1");
    let layers: Vec<(String, String)> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["annotations"]["org.opencontainers.image.title"].as_str().unwrap().to_string(),
                l["mediaType"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        layers,
        [
            ("hd.img".to_string(), "application/vnd.reprovm.disk.ext4".to_string()),
            ("bzImage".to_string(), "application/vnd.reprovm.kernel.bzimage".to_string())
        ]
    );
    run(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:1", disk.display()),
            &format!("oci:{}:1", w.join("disk-copy").display()),
        ],
    );

    // 4. A real registry: push (a second push sends no blob), pull into a fresh directory:
    //    the same bytes; a blob corrupted in the registry's storage is refused, naming it.
    let registry = support::LocalRegistry::start();
    for (target, repo_name) in [("krata-kernel-oci", "krata-kernel"), ("hd-image-oci", "hd-image")]
    {
        let dest = format!("{}/reprovm/{repo_name}", registry.addr);
        let (pushed, first) = captured(&["push", target, &dest, "--plain-http"]);
        assert!(pushed && first.contains(": sent "), "{first}");
        let (pushed, again) = captured(&["push", target, &dest, "--plain-http"]);
        assert!(
            pushed && !again.contains(": sent ") && again.contains("already there"),
            "second push sent blobs again:\n{again}"
        );
    }
    let pulled = w.join("pulled");
    ok(&[
        "pull",
        &format!("{}/reprovm/krata-kernel:6.1.176", registry.addr),
        pulled.to_str().unwrap(),
        "--plain-http",
    ]);
    let (same, report) = captured(&["diff", krata.to_str().unwrap(), pulled.to_str().unwrap()]);
    assert!(same, "the pulled layout differs from the built one:\n{report}");
    let pulled_disk = w.join("pulled-disk");
    ok(&[
        "pull",
        &format!("{}/reprovm/hd-image:1", registry.addr),
        pulled_disk.to_str().unwrap(),
        "--plain-http",
    ]);
    assert_eq!(tagged(&pulled_disk, "1"), tagged(&disk, "1"));

    let layer = inspect["Layers"][0].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let stored = registry
        .storage
        .join("docker/registry/v2/blobs/sha256")
        .join(&layer[..2])
        .join(&layer)
        .join("data");
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&stored, bytes).unwrap();
    let refused = w.join("refused");
    let (pulled_ok, err) = captured(&[
        "pull",
        &format!("{}/reprovm/krata-kernel:6.1.176", registry.addr),
        refused.to_str().unwrap(),
        "--plain-http",
    ]);
    assert!(
        !pulled_ok && err.contains(&format!("blob sha256:{layer}")) && err.contains("refused"),
        "{err}"
    );
    assert!(!refused.exists(), "a refused pull left {}", refused.display());
    drop(registry);

    // 5. The kernels boot: Firecracker's vmlinux (as unpacked from its image) under QEMU's
    //    microvm machine, through its PVH entry, with hd.img; krata's /kernel/image (from its
    //    image) as a plain QEMU guest over hd.img. One kernel serves both (and Xen zones).
    ok(&["build", "hd-image"]);
    ok(&["boot-test", "--machine", "microvm", "--kernel", vmlinux.to_str().unwrap()]);
    assert!(
        std::fs::read(root.join("kernel/image")).unwrap()
            == std::fs::read(repo().join("out/bzImage")).unwrap(),
        "krata's /kernel/image is not the kernel's bzImage"
    );
    ok(&["boot-test", "--kernel", root.join("kernel/image").to_str().unwrap()]);
}

fn hex_sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
