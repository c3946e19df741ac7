//! Full tier: every other kernel version of `recipes/kernel.toml` (`[versions]`), in the `kvm`
//! flavour (the matrix's representative cell for that version and flavour on x86_64:
//! docs/decisions/0073), builds, its published images match pins/outputs.toml, carry their
//! version where people read it (the tag, the OCI version annotation, krata's
//! /kernel/metadata, `uname -r`), go to one registry repository as a tag per cell with
//! `latest-kvm` on the newest, and it boots the way Firecracker boots (QEMU's microvm, the ELF
//! vmlinux) over an image with its own modules, where it loads `nbd` (`/dev/nbd0`) and
//! `vhost_net` (`/dev/vhost-net`); its config has KVM with both back ends and vhost. No guest
//! runs inside it: these machines' CPUs show the guest no virtualisation extensions.
//! The default version is built, audited and booted by full.rs and oci.rs; the audit's second
//! build is not repeated here for the other versions (see docs/guide/testing.md).
//! Runs in the repository's out/, and leaves `out/hd.img` the default image again.

use crate::support;

use crate::support::{host_tools, repo, run_tool as run, xtask_ok as ok};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Build `target`; its store entry (the last line `build` prints).
fn build(target: &str) -> PathBuf {
    PathBuf::from(ok(&["build", target]).lines().last().unwrap().trim())
}

/// The manifest of the layout's image tagged `tag`, as skopeo reads it.
fn manifest(layout: &Path, tag: &str) -> serde_json::Value {
    let raw = run("skopeo", &["inspect", "--raw", &format!("oci:{}:{tag}", layout.display())]);
    serde_json::from_str(&raw).unwrap()
}

/// `build hd-image` when dropped: the default image is what later tests boot.
struct RestoreDefaultImage;

impl Drop for RestoreDefaultImage {
    fn drop(&mut self) {
        ok(&["build", "hd-image"]);
    }
}

/// The flavour the other versions are built in here (one cell per version on x86_64).
const FLAVOUR: &str = "kvm";

#[test]
#[ignore = "full tier: every kernel version (kvm flavour): builds, pins, tags, registry, microvm boot"]
fn every_kernel_version_builds_matches_its_pins_and_boots() {
    let _full = support::full_tier();
    host_tools("skopeo, umoci, docker-registry, QEMU");
    let kernel: toml::Table =
        std::fs::read_to_string(repo().join("recipes/kernel.toml")).unwrap().parse().unwrap();
    let keys: Vec<String> = kernel["versions"].as_table().unwrap().keys().cloned().collect();
    assert!(!keys.is_empty(), "recipes/kernel.toml lists no other version");
    let version_of = |key: &str| kernel["versions"][key]["version"].as_str().unwrap().to_string();
    let default_version = kernel["version"].as_str().unwrap().to_string();
    let newest = keys
        .iter()
        .map(|k| version_of(k))
        .chain([default_version.clone()])
        .max_by(|a, b| reprovm::model::recipe::placeholders::compare_versions(a, b))
        .unwrap();
    let pins: toml::Table =
        std::fs::read_to_string(repo().join("pins/outputs.toml")).unwrap().parse().unwrap();
    let work = tempfile::tempdir().unwrap();
    let registry = support::LocalRegistry::start();
    let _restore = RestoreDefaultImage;
    for base in ["firecracker-kernel-bin-oci", "firecracker-kernel-modules-oci"] {
        let repo_name = base.trim_end_matches("-oci");
        ok(&["push", base, &format!("{}/reprovm/{repo_name}", registry.addr), "--plain-http"]);
    }

    for key in &keys {
        let version = &version_of(key);
        // 1. The kernel and the images over it build and are the pinned bytes.
        let mut entries = BTreeMap::new();
        for base in [
            "kernel",
            "firecracker-kernel-bin-oci",
            "firecracker-kernel-modules-oci",
            "krata-kernel-oci",
        ] {
            let target = format!("{base}@{key}+{FLAVOUR}");
            let entry = build(&target);
            let m: serde_json::Value =
                serde_json::from_slice(&std::fs::read(entry.join("manifest.json")).unwrap())
                    .unwrap();
            let pinned = pins.get(&target).unwrap_or_else(|| {
                panic!("pins/outputs.toml has no [\"{target}\"]: run `cargo xtask pin outputs`")
            });
            assert_eq!(
                m["output_hash"].as_str(),
                pinned["output_hash"].as_str(),
                "{target} differs from its pin"
            );
            assert_eq!(m["version"].as_str(), Some(version.as_str()), "{target}");
            entries.insert(base, entry.join("out"));
        }
        let release = std::fs::read_to_string(entries["kernel"].join("kernel.release")).unwrap();
        let release = release.trim();
        assert_eq!(release, version, "kernel@{key}+{FLAVOUR} says it is {release}");
        let config = std::fs::read_to_string(entries["kernel"].join("config")).unwrap();
        for option in [
            "CONFIG_KVM=y",
            "CONFIG_KVM_INTEL=y",
            "CONFIG_KVM_AMD=y",
            "CONFIG_VHOST_NET=m",
            "CONFIG_VHOST_VSOCK=m",
            "CONFIG_BLK_DEV_NBD=m",
        ] {
            assert!(config.lines().any(|l| l == option), "kernel@{key}+{FLAVOUR}: no {option}");
        }

        // 2. Where people read the version: the tags, the OCI annotation, krata's metadata.
        for base in
            ["firecracker-kernel-bin-oci", "firecracker-kernel-modules-oci", "krata-kernel-oci"]
        {
            let m = manifest(&entries[base], &format!("{version}-{FLAVOUR}"));
            assert_eq!(
                m["annotations"]["org.opencontainers.image.version"].as_str(),
                Some(release),
                "{base}@{key}+{FLAVOUR}"
            );
            let latest = support::tool("skopeo")
                .args(["inspect", "--raw"])
                .arg(format!("oci:{}:latest-{FLAVOUR}", entries[base].display()))
                .output()
                .unwrap();
            assert_eq!(
                latest.status.success(),
                *version == newest,
                "{base}@{key}+{FLAVOUR}: `latest-{FLAVOUR}` is on the newest version's layout only"
            );
        }
        let unpacked = work.path().join(format!("krata-{key}"));
        run(
            "umoci",
            &[
                "unpack",
                "--rootless",
                "--image",
                &format!("{}:{version}-{FLAVOUR}", entries["krata-kernel-oci"].display()),
                unpacked.to_str().unwrap(),
            ],
        );
        let metadata = std::fs::read_to_string(unpacked.join("rootfs/kernel/metadata")).unwrap();
        assert!(metadata.lines().any(|l| l == format!("KERNEL_VERSION={release}")), "{metadata}");

        // 3. One registry repository, a tag per version.
        for base in ["firecracker-kernel-bin-oci", "firecracker-kernel-modules-oci"] {
            let repo_name = base.trim_end_matches("-oci");
            let target = format!("{base}@{key}+{FLAVOUR}");
            ok(&[
                "push",
                &target,
                &format!("{}/reprovm/{repo_name}", registry.addr),
                "--plain-http",
            ]);
        }

        // 4. Boot it as Firecracker does, over an image holding its own modules; what the
        //    flavour is for loads.
        build(&format!("hd-image@{key}+{FLAVOUR}"));
        let vmlinux = entries["kernel"].join("vmlinux");
        ok(&[
            "boot-test",
            "--machine",
            "microvm",
            "--kernel",
            vmlinux.to_str().unwrap(),
            "--check",
            "modprobe nbd && test -b /dev/nbd0",
            "--check",
            "modprobe vhost_net && test -c /dev/vhost-net",
        ]);
    }

    let listed: serde_json::Value = serde_json::from_str(&run(
        "skopeo",
        &[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{}/reprovm/firecracker-kernel-bin", registry.addr),
        ],
    ))
    .unwrap();
    let mut tags: Vec<&str> =
        listed["Tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    tags.sort();
    let mut want: Vec<String> = keys
        .iter()
        .map(|k| format!("{}-{FLAVOUR}", version_of(k)))
        .chain([default_version, format!("latest-{FLAVOUR}")])
        .collect();
    want.sort();
    assert_eq!(tags, want, "the registry's tags of firecracker-kernel-bin");
    eprintln!("firecracker-kernel-bin tags: {tags:?}");
}
