//! Full tier: the real sources, the pinned toolchain, the kernel and image builds, the audit
//! of every published output at the default kernel version but the kernel itself (the
//! userland, the image, the OCI layouts; the kernel's second build is Nix's, step 4 says why)
//! and the QEMU boot test. Runs when REPROVM_FULL=1 (CI sets it).
//! The Nix builds of the same recipes are in `nix.rs`, the OCI tools, registry and other
//! machines' boots in `oci.rs`, the kernel's other versions in `kernels.rs`.
//! Everything happens in the repository's out/ so a developer's cache is reused.

use crate::support;

use crate::support::{repo, xtask_ok as ok, *};
use std::path::Path;
use std::process::Command;

#[test]
#[ignore = "full tier: the real pipeline: fetch, toolchain, kernel and image builds, audit, boot"]
fn full_pipeline() {
    let _full = support::full_tier();
    // 1. All the real sources from the Debian archive (busybox, dropbear, iproute2, every
    //    kernel version, syslinux's .debs: every `[[source]]` of every recipe and version),
    //    verified; then a cache hit offline.
    let mut sources = 0;
    for e in std::fs::read_dir(repo().join("recipes")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let r: toml::Table = std::fs::read_to_string(&p).unwrap().parse().unwrap();
            let count =
                |t: &toml::Table| t.get("source").and_then(|s| s.as_array()).map_or(0, |a| a.len());
            sources += count(&r);
            for v in
                r.get("versions").and_then(|v| v.as_table()).into_iter().flat_map(|t| t.values())
            {
                sources += v.as_table().map_or(0, count);
            }
        }
    }
    assert!(sources >= 5, "busybox, dropbear, iproute2 and two kernels at least: {sources}");
    // And the .debs of the images' `[rootfs] debian` locks (x86_64's; `fetch` is for --arch).
    for e in std::fs::read_dir(repo().join("pins/debian")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".lock") && !name.ends_with("-aarch64.lock") {
            let lock: toml::Table = std::fs::read_to_string(&p).unwrap().parse().unwrap();
            sources += lock["package"].as_array().unwrap().len();
        }
    }
    let first = ok(&["fetch"]);
    assert_eq!(first.lines().count(), sources, "{first}");
    let again = ok(&["--offline", "fetch"]);
    assert!(
        again.lines().all(|l| l.ends_with("cached")),
        "second fetch was not a pure cache hit:\n{again}"
    );

    // 2. The pinned toolchain: two fresh materialisations give the same tree; gcc is Debian's.
    let t = tempfile::tempdir_in(repo().join("out")).unwrap();
    let cache = repo().join("out/cache");
    let mut trees = Vec::new();
    for name in ["tc-a", "tc-b"] {
        let out = t.path().join(name);
        let root =
            ok(&["--out", out.to_str().unwrap(), "--cache", cache.to_str().unwrap(), "toolchain"]);
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(Path::new(root.trim()).parent().unwrap().join("manifest.json")).unwrap(),
        )
        .unwrap();
        trees.push(manifest["tree_hash"].as_str().unwrap().to_string());
    }
    assert_eq!(trees[0], trees[1], "two materialisations of the toolchain differ");
    let gcc = ok(&["sandbox-exec", "--", "gcc", "--version"]);
    let lock = std::fs::read_to_string(repo().join("pins/toolchain.lock")).unwrap();
    let gcc12 = lock.split("[[package]]").find(|p| p.contains("name = \"gcc-12\"")).unwrap();
    let version =
        gcc12.lines().find_map(|l| l.strip_prefix("version = ")).unwrap().trim_matches('"');
    assert!(
        gcc.starts_with(&format!("gcc (Debian {version})")),
        "sandbox gcc is not the pinned one: {gcc}"
    );
    let host_gcc = Command::new("gcc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    eprintln!(
        "sandbox: {}host:    {}",
        gcc.lines().next().unwrap_or(""),
        host_gcc.lines().next().unwrap_or("(no host gcc)")
    );

    // 3. A kernel fragment asking for an option that cannot be enabled fails, naming it.
    let bad = t.path().join("bad-recipes");
    support::copy_tree(&repo().join("recipes/kernel"), &bad.join("kernel"));
    // i915 needs DRM, which nothing enables: olddefconfig drops it.
    std::fs::write(bad.join("kernel/impossible.config"), "CONFIG_DRM_I915=y\n").unwrap();
    let mut k: toml::Table =
        std::fs::read_to_string(repo().join("recipes/kernel.toml")).unwrap().parse().unwrap();
    let fragment = toml::Value::from("kernel/impossible.config");
    k["files"].as_array_mut().unwrap().push(fragment.clone());
    k["kconfig"]["fragments"].as_array_mut().unwrap().push(fragment);
    let merged =
        format!("{} kernel/impossible.config", k["env"]["KERNEL_FRAGMENTS"].as_str().unwrap());
    k["env"]["KERNEL_FRAGMENTS"] = merged.into();
    std::fs::write(bad.join("kernel.toml"), toml::to_string(&k).unwrap()).unwrap();
    let o = xtask()
        .args([
            "--recipes",
            bad.to_str().unwrap(),
            "--out",
            t.path().join("bad-out").to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
            "build",
            "kernel",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("CONFIG_DRM_I915=y (got: not set) [impossible.config]"),
        "{err}"
    );

    // 4. Build everything, then rebuild each target from scratch under varied conditions and
    //    compare with the store and with pins/outputs.toml.
    //    The kernel's other versions are built, pin-checked and booted by kernels.rs, not
    //    rebuilt a second time here (docs/guide/testing.md: a kernel build is minutes).
    //    Nor is this kernel: CI gives each kernel one second build, and this one's is Nix's
    //    (nix.rs: its own sandbox, build user and host name, -j3, compared byte for byte),
    //    while the audit's kernel rebuild goes to the arm64 kernel (aarch64.rs), which nothing
    //    else builds twice (docs/guide/testing.md). `cargo xtask audit kernel` runs it by hand.
    ok(&["build", "hd-image"]);
    let bundle = repo().join("out/audit-report.zip");
    let mut audit = vec!["audit", "--bundle", bundle.to_str().unwrap()];
    audit.extend(reprovm::model::pins::DEFAULT_TARGETS.iter().filter(|t| **t != "kernel"));
    ok(&audit);

    // 5. Boot it: SSH in with a key made now, check the kernel, ip, modules and modprobe.
    ok(&["boot-test"]);
}
