//! The flake's recipe reader (nix/recipe.nix), evaluated offline with no nixpkgs, must produce
//! exactly the pins and origins the xtask reads from the same TOML; the flake's outputs must
//! evaluate against the nixpkgs flake.lock pins, each derivation over only its own sources; and
//! Nix must build the flake's derivations to the xtask's bytes. All full tier: each runs the
//! pinned Nix.
//!
//! Every Nix program here is the pinned one (`cargo xtask nix`: pins/nix.lock, Debian trixie's
//! Nix 2.26, which current nixpkgs supports), never the host's.

use crate::support;

use crate::support::{repo, xtask_in_repo as xtask, xtask_ok};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// `cargo xtask nix PROGRAM`, materialising the pinned Nix on first use (the test fails, with
/// the reason, when that is impossible here).
fn nix(program: &str) -> Command {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let o = support::xtask().args(["nix", "nix", "--version"]).output().unwrap();
        if o.status.success() {
            eprintln!("pinned Nix: {}", String::from_utf8_lossy(&o.stdout).trim());
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&o.stderr).trim().to_string())
        }
    });
    if let Err(e) = ready {
        panic!("the pinned Nix cannot be materialised here: {e}");
    }
    let mut c = support::xtask();
    c.args(["nix", program]).current_dir(repo());
    c
}

/// `nix` with the new command line and flakes enabled.
fn nix_cli() -> Command {
    let mut c = nix("nix");
    c.args(["--extra-experimental-features", "nix-command flakes"]);
    c
}

/// Run and parse the JSON it prints, failing the test (with Nix's message) otherwise.
fn json_of(mut c: Command) -> serde_json::Value {
    let o = c.output().unwrap();
    assert!(o.status.success(), "{c:?}: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Evaluate with `nix-instantiate --eval --strict --json ARGS` in the repository.
fn nix_eval(args: &[&str]) -> serde_json::Value {
    let mut c = nix("nix-instantiate");
    c.args(["--eval", "--strict", "--json"]).args(args);
    json_of(c)
}

/// A Nix expression for an absolute path (a string appended to `/.`, so any name works).
/// A source's name in the Nix store (nix/recipe.nix `storeFileName`): `~` and `:` are not
/// allowed there.
fn store_file_name(file: &str) -> String {
    file.replace(['~', ':'], "-")
}

fn nix_path(p: &Path) -> String {
    let s = p.to_str().unwrap();
    assert!(!s.contains(['"', '\\', '$']), "{s}");
    format!("(/. + \"{s}\")")
}

/// tests/nix/flake-outputs.nix for the checkout at `root`: the flake evaluated against the
/// stand-in nixpkgs, into a throwaway store under `store` (the sources are copied there, as
/// Nix does, so their store paths are real).
fn flake_outputs(root: &Path, store: &Path) -> serde_json::Value {
    let mut c = nix_cli();
    let expr = format!(
        "import {} {{ xtaskBin = {}; root = {}; }}",
        nix_path(&repo().join("tests/nix/flake-outputs.nix")),
        nix_path(&repo().join("Cargo.toml")),
        nix_path(root)
    );
    c.args(["eval", "--impure", "--json", "--store"]).arg(store).args(["--expr", &expr]);
    json_of(c)
}

#[test]
#[ignore = "full tier: the pinned Nix (Debian trixie's, from pins/nix.lock)"]
fn nix_reads_the_same_pins_and_urls_as_the_xtask() {
    let _full = support::full_tier();
    let nix_sources =
        nix_eval(&["--store", "dummy://", "-E", "(import ./nix/recipe.nix).allSources ./recipes"]);
    let x = support::xtask()
        .args(["fetch", "--list"])
        .env("REPROVM_DEBIAN_MIRROR", "http://mirror.invalid/debian")
        .env_remove("REPROVM_DEBIAN_SNAPSHOT")
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", String::from_utf8_lossy(&x.stderr));
    let xtask: Vec<serde_json::Value> = serde_json::from_slice(&x.stdout).unwrap();
    let mut compared = 0;
    for s in &xtask {
        let recipe = s["recipe"].as_str().unwrap();
        let file = s["file"].as_str().unwrap();
        let n = nix_sources[recipe]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == store_file_name(file))
            .unwrap_or_else(|| panic!("nix lacks {recipe}/{file}"));
        assert_eq!(n["sha256"], s["sha256"], "{recipe}/{file}");
        let nix_urls: Vec<&str> =
            n["urls"].as_array().unwrap().iter().map(|u| u.as_str().unwrap()).collect();
        let x_urls: Vec<&str> =
            s["urls"].as_array().unwrap().iter().map(|u| u.as_str().unwrap()).collect();
        // Upstream and snapshot-archive URLs: identical and in the same order.
        let up = |v: &[&str]| {
            v.iter()
                .filter(|u| !u.starts_with("mirror://") && !u.starts_with("http://mirror.invalid/"))
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(up(&nix_urls), up(&x_urls), "{recipe}/{file}");
        // Debian origin: the same pool path (Nix resolves mirror://debian, the xtask its configured mirror).
        for m in nix_urls.iter().filter_map(|u| u.strip_prefix("mirror://debian/")) {
            assert!(
                x_urls.contains(&format!("http://mirror.invalid/debian/{m}").as_str()),
                "{recipe}/{file}: {m} not among {x_urls:?}"
            );
        }
        compared += 1;
    }
    let nix_count: usize =
        nix_sources.as_object().unwrap().values().map(|v| v.as_array().unwrap().len()).sum();
    assert_eq!(compared, nix_count, "nix and the xtask see different numbers of sources");
    assert!(compared >= 4);
    for s in &xtask {
        let urls = s["urls"].as_array().unwrap();
        let debian = urls.iter().any(|u| u.as_str().unwrap().starts_with("http://mirror.invalid/"));
        let snapshot = urls.iter().any(|u| u.as_str().unwrap().contains("/archive/debian/"));
        assert!(
            !debian || snapshot,
            "{}: a Debian origin without a snapshot-archive URL",
            s["file"]
        );
    }
    for f in [
        "flake.nix",
        "nix/recipe.nix",
        "nix/package.nix",
        "nix/checks.nix",
        "tests/nix/build.nix",
        "tests/nix/pinned-toolchain-pkgs.nix",
        "tests/nix/flake-outputs.nix",
    ] {
        let o = nix("nix-instantiate").args(["--parse", f]).output().unwrap();
        assert!(o.status.success(), "{f}: {}", String::from_utf8_lossy(&o.stderr));
    }
}

/// nix/recipe.nix's `forArch` merges a recipe's `[arch.NAME]` table as the engine's
/// `model::recipe::merge_table` does (the one implementation `parse_for` uses): for every
/// recipe and every architecture, the two merged recipes are the same document.
#[test]
#[ignore = "full tier: the pinned Nix (Debian trixie's, from pins/nix.lock)"]
fn nix_merges_arch_tables_as_the_engine_does() {
    let _full = support::full_tier();
    use reprovm::model::arch::Arch;
    let mut differ = 0;
    for (arch, name, _) in Arch::VALUES {
        let expr = format!(
            "builtins.mapAttrs (_: r: builtins.removeAttrs r [\"recipeFile\"]) ((import ./nix/recipe.nix).readRecipesFor \"{name}\" ./recipes)"
        );
        let nix = nix_eval(&["--store", "dummy://", "-E", &expr]);
        for entry in std::fs::read_dir(repo().join("recipes")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let recipe = path.file_stem().unwrap().to_str().unwrap().to_string();
            let mut table: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
            let over = match table.remove("arch") {
                Some(toml::Value::Table(mut t)) => t.remove(arch.name()),
                _ => None,
            };
            if let Some(toml::Value::Table(over)) = &over {
                reprovm::model::recipe::merge_table(&mut table, over);
                differ += 1;
            }
            let engine = serde_json::to_value(&table).unwrap();
            assert_eq!(
                nix[&recipe], engine,
                "{recipe} for {name}: nix/recipe.nix merges otherwise"
            );
            // Each other version (kernel@6.18): the merged recipe at that version and its
            // sources, which win over the [arch] table's (model::graph::add_versions).
            let versions = table.remove("versions");
            for (key, v) in versions.iter().flat_map(|v| v.as_table().unwrap()) {
                let mut at = table.clone();
                at.insert("version".into(), v["version"].clone());
                at.insert(
                    "source".into(),
                    v.get("source").cloned().unwrap_or(toml::Value::Array(vec![])),
                );
                let node = format!("{recipe}@{key}");
                assert_eq!(nix[&node], serde_json::to_value(&at).unwrap(), "{node} for {name}");
            }
        }
        // What the merge is for: x86_64's media keep their BIOS path, aarch64's have none.
        let bios = &nix["efi-image"]["uefi"]["bios"];
        assert_eq!(bios.as_str(), (arch == Arch::X86_64).then_some("syslinux-bios"), "{name}");
        let deps = nix["iso"]["deps"].to_string();
        assert_eq!(deps.contains("syslinux-bios"), arch == Arch::X86_64, "{name}: {deps}");
    }
    assert!(differ >= 8, "only {differ} recipes have [arch] tables");
}

/// nix/package.nix's `targetArch` is the xtask's `--arch`: an aarch64 recipe gets its arm64
/// table (busybox's cross prefix) and `xtask --arch aarch64 assemble`, x86_64 derivations
/// call `assemble` as before, a recipe `unavailable` for the architecture and an unknown
/// architecture fail evaluation with the reason. Evaluated over a stub package set in which a
/// derivation is its build script.
#[test]
#[ignore = "full tier: the pinned Nix (Debian trixie's, from pins/nix.lock)"]
fn nix_package_takes_the_target_architecture() {
    let _full = support::full_tier();
    let eval = |arch: &str, package: &str| -> std::process::Output {
        let expr = format!(
            "(import ./nix/package.nix {{ pkgs = {{ stdenv.mkDerivation = a: a.buildPhase; writeText = n: t: \"/w/${{n}}\"; fetchurl = a: \"/f\"; }}; recipesDir = ./recipes; xtask = \"/x\"; targetArch = \"{arch}\"; }}).packages.{package}"
        );
        let mut c = nix("nix-instantiate");
        c.args(["--eval", "--strict", "--readonly-mode", "--json", "-E", &expr]);
        c.output().unwrap()
    };
    let script = |arch: &str, package: &str| -> String {
        let o = eval(arch, package);
        assert!(o.status.success(), "{package} ({arch}): {}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<String>(&o.stdout).unwrap()
    };
    let arm_rootfs = script("aarch64", "rootfs");
    assert!(arm_rootfs.contains("/x/bin/xtask --arch aarch64 --recipes "), "{arm_rootfs}");
    let x86_rootfs = script("x86_64", "rootfs");
    assert!(x86_rootfs.contains("/x/bin/xtask --recipes "), "{x86_rootfs}");
    let arm_busybox = script("aarch64", "busybox");
    assert!(arm_busybox.contains("export CROSS_COMPILE='aarch64-linux-gnu-'"), "{arm_busybox}");
    assert!(!script("x86_64", "busybox").contains("CROSS_COMPILE"));
    for (arch, package, reason) in [
        ("aarch64", "syslinux-bios", "recipes/syslinux-bios.toml: not buildable for aarch64"),
        ("arm64", "busybox", "targetArch = \"arm64\" is not one of reprovm's architectures"),
    ] {
        let o = eval(arch, package);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(reason), "{package} ({arch}): {err}");
    }
}

/// nix/package.nix repeats the sandbox's fixed environment (Nix needs it at evaluation time);
/// it must equal what a build in the xtask's sandbox really sees, variable for variable.
#[test]
#[ignore = "full tier: the pinned Nix (Debian trixie's, from pins/nix.lock)"]
fn nix_build_environment_is_the_sandbox_environment() {
    let _full = support::full_tier();
    let nix = nix_eval(&[
        "--store",
        "dummy://",
        "-E",
        "(import ./nix/package.nix { pkgs = { }; recipesDir = ./recipes; xtask = null; }).baseEnv",
    ]);
    let out = tempfile::tempdir().unwrap();
    let o = support::xtask()
        .args([
            "--host-toolchain",
            "--out",
            out.path().to_str().unwrap(),
            "sandbox-exec",
            "--",
            "env",
        ])
        .env_remove("REPROVM_RECIPES")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sandbox: std::collections::BTreeMap<String, String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // Set per builder: the tools' PATH, the job count, the output and temp directories, the shell's PWD.
    let per_builder = ["PATH", "JOBS", "OUT", "TMPDIR", "REPROVM_BUILD", "PWD", "SHLVL", "_"];
    let expected: std::collections::BTreeMap<String, String> =
        sandbox.into_iter().filter(|(k, _)| !per_builder.contains(&k.as_str())).collect();
    let nix: std::collections::BTreeMap<String, String> = nix
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    assert_eq!(nix, expected, "nix/package.nix baseEnv differs from the sandbox's environment");
}

/// The flake's outputs function, evaluated with a stand-in for nixpkgs (tests/nix/flake-outputs.nix)
/// given the nixpkgs flake.lock pins: the packages and checks the issue asks for exist on each
/// system, every derivation instantiates, the devShell and formatter are the intended ones.
#[test]
#[ignore = "full tier: the pinned Nix (Debian trixie's, from pins/nix.lock)"]
fn flake_outputs_evaluate_to_derivations() {
    let _full = support::full_tier();
    let store = tempfile::tempdir().unwrap();
    let v = flake_outputs(&repo(), store.path());
    let names = |k: &str, sys: &str| -> Vec<String> {
        v[k][sys].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect()
    };
    let x86 = names("packages", "x86_64-linux");
    for p in [
        "kernel",
        "busybox",
        "dropbear",
        "iproute2",
        "hd-image",
        "initramfs",
        "efi-image",
        "iso",
        "xtask",
        "reprovm",
        "default",
    ] {
        assert!(x86.contains(&p.to_string()), "packages.x86_64-linux lacks {p}: {x86:?}");
    }
    assert_eq!(
        names("packages", "aarch64-linux"),
        ["busybox", "default", "dropbear", "iproute2", "reprovm", "xtask"]
    );
    let checks = names("checks", "x86_64-linux");
    for p in ["kernel", "busybox", "dropbear", "iproute2", "rootfs", "hd-image", "efi-image", "iso"]
    {
        assert!(
            checks.contains(&p.to_string()) && checks.contains(&format!("reproducible-{p}")),
            "checks.x86_64-linux lacks {p}: {checks:?}"
        );
    }
    // arm64, cross-built on x86_64-linux: every published target (the engine's list; the
    // flake leaves out grow-rootfs, which only the root uses, and syslinux-bios, which arm64
    // has not), with its build and its reproducibility check.
    for p in reprovm::model::pins::DEFAULT_TARGETS
        .into_iter()
        .filter(|p| !["grow-rootfs", "syslinux-bios"].contains(p))
    {
        let arm = format!("{p}-aarch64");
        assert!(x86.contains(&arm), "packages.x86_64-linux lacks {arm}: {x86:?}");
        assert!(
            checks.contains(&arm) && checks.contains(&format!("reproducible-{arm}")),
            "checks.x86_64-linux lacks {arm}: {checks:?}"
        );
    }
    assert_flake_cross_builds_for_aarch64(&v["aarch64"]);
    assert_flake_media_use_the_pinned_efi_stubs(&v["efiStubs"]);
    assert_eq!(v["apps"]["x86_64-linux"], "app");
    assert_eq!(names("devShells", "x86_64-linux"), ["default"]);
    let tools: Vec<&str> =
        v["devShellTools"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert!(tools.contains(&"qemu_kvm") && tools.contains(&"qemu-utils"), "{tools:?}");
    assert!(!tools.contains(&"qemu"), "the devShell must not pull every QEMU target: {tools:?}");
    assert_eq!(v["formatter"], "alejandra");
    // The app finds the flake's own recipes when run outside a checkout.
    let app = v["appText"].as_str().unwrap();
    assert!(
        app.contains("REPROVM_DEFAULT_ROOT=/nix/store/") && app.contains("/bin/xtask"),
        "{app}"
    );
    for (name, drv) in v["drvs"].as_object().unwrap() {
        assert!(drv.as_str().unwrap().ends_with(".drv"), "{name}: {drv}");
    }
    // The nixpkgs the flake gets is the one flake.lock pins, for the branch flake.nix follows.
    let url = v["inputUrl"].as_str().unwrap();
    let o = &v["original"];
    assert_eq!(
        url,
        format!(
            "github:{}/{}/{}",
            o["owner"].as_str().unwrap(),
            o["repo"].as_str().unwrap(),
            o["ref"].as_str().unwrap()
        )
    );
    let locked = &v["locked"];
    assert_eq!(
        (locked["type"].as_str(), locked["owner"].as_str()),
        (Some("github"), Some("NixOS"))
    );
    let rev = locked["rev"].as_str().unwrap();
    assert!(rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit()), "{rev}");
    assert!(locked["narHash"].as_str().unwrap().starts_with("sha256-"));
}

/// An arm64 derivation of the flake (tests/nix/flake-outputs.nix's `aarch64`): the recipe's
/// arm64 table and `xtask --arch aarch64 assemble`, tools from the build machine's packages,
/// libraries from the target's, the build machine's compiler for host programs, and nixpkgs'
/// cross tools under Debian's names, which the recipes use. The naming script is run here
/// over stand-in tool directories, so its links (and its refusal of a toolchain without
/// objcopy) are tested, not only its text.
fn assert_flake_cross_builds_for_aarch64(arm: &serde_json::Value) {
    use reprovm::model::arch::Arch;
    let strings = |k: &str| -> Vec<String> {
        arm[k].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect()
    };
    let script = arm["script"].as_str().unwrap();
    assert!(script.contains("/bin/xtask --arch aarch64 --recipes "), "{script}");
    let native = strings("nativeInputs");
    assert_eq!(native[0], "reprovm-aarch64-tool-names", "{native:?}");
    for n in &native[1..] {
        assert!(
            n.ends_with("-build") || n == "aarch64-unknown-linux-gnu-pkg-config-wrapper",
            "a tool not from the build machine's packages: {n} in {native:?}"
        );
    }
    let image_tools = strings("hdImageNativeInputs");
    for t in ["e2fsprogs-build", "qemu-utils-build"] {
        assert!(image_tools.contains(&t.to_string()), "{image_tools:?}");
    }
    let media_tools = strings("efiImageNativeInputs");
    for t in ["dosfstools-build", "mtools-build", "xorriso-build", "qemu-utils-build"] {
        assert!(media_tools.contains(&t.to_string()), "{media_tools:?}");
    }
    let host = strings("hostInputs");
    assert!(!host.is_empty() && host.iter().all(|n| n.ends_with("-aarch64")), "{host:?}");
    assert_eq!(strings("depsBuildBuild"), ["gcc-wrapper-build"]);

    let naming = arm["toolNamesScript"].as_str().unwrap();
    let run = |tools: &[(&str, &str)]| -> (std::process::Output, PathBuf, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let (cc, bintools) = (dir.path().join("cc"), dir.path().join("bintools"));
        for (set, tool) in tools {
            let bin = dir.path().join(set).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::write(bin.join(format!("aarch64-unknown-linux-gnu-{tool}")), "").unwrap();
        }
        let script = naming
            .replace(arm["crossCc"].as_str().unwrap(), cc.to_str().unwrap())
            .replace(arm["crossBintools"].as_str().unwrap(), bintools.to_str().unwrap());
        let out = dir.path().join("out");
        let o = Command::new("bash").args(["-euc", &script]).env("out", &out).output().unwrap();
        (o, out, dir)
    };
    // As nixpkgs' cc-wrapper has it: its bin/ links the binutils names too (ld here), so
    // a name is in both directories.
    let (o, out, dir) = run(&[
        ("cc", "gcc"),
        ("cc", "cpp"),
        ("cc", "ld"),
        ("bintools", "objcopy"),
        ("bintools", "ld"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let prefix = Arch::Aarch64.binutils_prefix();
    for (set, tool) in [("cc", "gcc"), ("cc", "cpp"), ("bintools", "objcopy"), ("cc", "ld")] {
        let link = std::fs::read_link(out.join("bin").join(format!("{prefix}{tool}"))).unwrap();
        assert_eq!(
            link,
            dir.path().join(set).join("bin").join(format!("aarch64-unknown-linux-gnu-{tool}"))
        );
    }
    let (o, _, _) = run(&[("cc", "gcc"), ("bintools", "ld")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("aarch64-unknown-linux-gnu-objcopy"), "{err}");
}

/// The systemd-boot-efi .deb of `deb_arch` in a toolchain lock: (file name, sha256).
fn locked_stub_deb(lock: &str, deb_arch: &str) -> (String, String) {
    let text = std::fs::read_to_string(repo().join("pins").join(lock)).unwrap();
    let lock: toml::Table = toml::from_str(&text).unwrap();
    let found: Vec<&toml::Table> = lock["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_table().unwrap())
        .filter(|p| p["name"].as_str() == Some("systemd-boot-efi"))
        .filter(|p| p["arch"].as_str() == Some(deb_arch))
        .collect();
    assert_eq!(found.len(), 1, "pins/{lock}: systemd-boot-efi {deb_arch}");
    let file = found[0]["filename"].as_str().unwrap().rsplit('/').next().unwrap();
    (file.to_string(), found[0]["sha256"].as_str().unwrap().to_string())
}

/// The flake's media (efi-image, iso; both architectures) get systemd's stubs from the .deb
/// the toolchain lock pins, by its hash (nix/efi-stubs.nix), and `assemble --efi-stubs`
/// points the UKI step there; nixpkgs has no /usr/lib/systemd/boot/efi.
fn assert_flake_media_use_the_pinned_efi_stubs(stubs: &serde_json::Value) {
    for (arch, lock, deb_arch) in
        [("x86_64", "toolchain.lock", "amd64"), ("aarch64", "aarch64.lock", "arm64")]
    {
        let s = &stubs[arch];
        let (file, sha256) = locked_stub_deb(lock, deb_arch);
        assert_eq!(s["deb"]["name"].as_str().unwrap(), store_file_name(&file), "{arch}");
        assert_eq!(s["deb"]["outputHash"].as_str().unwrap(), sha256, "{arch}");
        assert!(
            s["storePath"].as_str().unwrap().ends_with(&format!("-reprovm-efi-stubs-{arch}")),
            "{s}"
        );
        let build = s["buildScript"].as_str().unwrap();
        assert!(build.contains(" assemble --efi-stubs \"$efiStubs\" efi-image\n"), "{build}");
        let iso = s["isoScript"].as_str().unwrap();
        assert!(iso.contains(" assemble --efi-stubs \"$efiStubs\" iso\n"), "{iso}");
        // Only the media see the stubs: a stub change must not rebuild the rest.
        assert_eq!(s["hdImageHasStubs"], false, "{arch}");
        assert!(s["script"].as_str().unwrap().contains("/usr/lib/systemd/boot/efi/linux"), "{s}");
    }
}

/// `nix flake metadata --offline`: flake.lock is complete for flake.nix's inputs (Nix would
/// otherwise have to update it, which --no-update-lock-file refuses) and pins the rev the
/// stand-in evaluation was given.
#[test]
#[ignore = "full tier: the pinned Nix (Debian trixie's, from pins/nix.lock)"]
fn flake_lock_is_complete_and_used_offline() {
    let _full = support::full_tier();
    let mut c = nix_cli();
    let store = tempfile::tempdir().unwrap();
    // A copy of the checkout as a flake in a directory of its own (path:), so that the test
    // sees the working tree and copies no build outputs.
    let copy = tempfile::tempdir().unwrap();
    copy_project(&repo(), copy.path());
    c.args(["flake", "metadata", "--offline", "--json", "--no-update-lock-file", "--store"])
        .arg(store.path())
        .arg(format!("path:{}", copy.path().display()));
    let meta = json_of(c);
    let lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("flake.lock")).unwrap()).unwrap();
    let locked = &meta["locks"]["nodes"]["nixpkgs"]["locked"];
    assert_eq!(locked, &lock["nodes"]["nixpkgs"]["locked"]);
    eprintln!(
        "nix flake metadata: nixpkgs github:NixOS/nixpkgs/{} (narHash {})",
        locked["rev"].as_str().unwrap(),
        locked["narHash"].as_str().unwrap()
    );
    let standin = flake_outputs(&repo(), store.path());
    assert_eq!(standin["locked"], *locked);
}

/// What the flake's derivations need of the checkout: flake.nix, flake.lock, nix/, the
/// Cargo workspace, the recipes, pins and toolchain specs, and README.md.
fn copy_project(from: &Path, to: &Path) {
    for item in [
        "flake.nix",
        "flake.lock",
        "README.md",
        "Cargo.toml",
        "Cargo.lock",
        ".cargo",
        "xtask/Cargo.toml",
        "xtask/src",
        "crates",
        "nix",
        "recipes",
        "pins",
        "toolchain",
    ] {
        support::copy_tree(&from.join(item), &to.join(item));
    }
}

/// Each derivation depends on its own sources only (lib.fileset): a README edit changes no
/// derivation; a recipe edit changes that recipe's derivations, not the xtask; an xtask edit
/// changes the xtask and what runs it, not plain recipes.
#[test]
#[ignore = "full tier: the pinned Nix (Debian trixie's, from pins/nix.lock)"]
fn an_edit_changes_only_the_derivations_over_it() {
    let _full = support::full_tier();
    let store = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    copy_project(&repo(), copy.path());
    let drvs = || -> std::collections::BTreeMap<String, String> {
        let v = flake_outputs(copy.path(), store.path());
        serde_json::from_value(v["drvs"].clone()).unwrap()
    };
    let before = drvs();
    let append = |file: &str, text: &str| {
        let p = copy.path().join(file);
        let mut s = std::fs::read_to_string(&p).unwrap();
        s.push_str(text);
        std::fs::write(p, s).unwrap();
    };
    let changed = |a: &std::collections::BTreeMap<String, String>,
                   b: &std::collections::BTreeMap<String, String>| {
        a.iter().filter(|(k, v)| b[*k] != **v).map(|(k, _)| k.clone()).collect::<Vec<_>>()
    };

    append("README.md", "\nAn edit of the documentation.\n");
    let after_readme = drvs();
    assert_eq!(
        changed(&before, &after_readme),
        Vec::<String>::new(),
        "a README edit changed derivations"
    );

    append("recipes/hd-image.toml", "\n# an edit of the image recipe\n");
    let after_recipe = drvs();
    let c = changed(&after_readme, &after_recipe);
    for d in ["hd-image", "reproducible-hd-image"] {
        assert!(c.contains(&d.to_string()), "{d} did not change with its recipe: {c:?}");
    }
    for d in ["xtask", "kernel", "busybox", "rootfs"] {
        assert!(!c.contains(&d.to_string()), "{d} changed with hd-image's recipe: {c:?}");
    }

    // The engine is a crate of the workspace the xtask is built from.
    append("crates/engine/src/lib.rs", "\n// an edit of the engine\n");
    let after_xtask = drvs();
    let c = changed(&after_recipe, &after_xtask);
    for d in ["xtask", "rootfs", "hd-image", "kernel"] {
        assert!(c.contains(&d.to_string()), "{d} did not change with the xtask it runs: {c:?}");
    }
    for d in ["busybox", "dropbear", "iproute2"] {
        assert!(!c.contains(&d.to_string()), "{d} (a plain script) changed with the xtask: {c:?}");
    }
}

/// The preflight of the full tier's Nix builds names what is missing and the fix, in one line.
#[test]
#[ignore = "full tier: the pinned Nix (Debian trixie's, from pins/nix.lock)"]
fn nix_preflight_names_missing_build_users_and_the_fix() {
    let _full = support::full_tier();
    nix("nix");
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        let e = nix_ready_for_builds(None).unwrap_err();
        assert!(e.contains("needs root"), "{e}");
        return;
    }
    let e = nix_ready_for_builds(Some("build-users-group = reprovm-no-such-group")).unwrap_err();
    assert!(!e.contains('\n'), "{e}");
    assert!(
        e.contains("the group reprovm-no-such-group does not exist")
            && e.contains("tests/nix/setup-build-users"),
        "{e}"
    );
    // Single-user mode (an empty group) needs nothing more.
    assert_eq!(nix_ready_for_builds(Some("build-users-group =")), Ok(()));
}

// ---------------------------------------------------------------------------------------
// Full tier: real Nix builds of the flake's derivations.
//
// There is no nixpkgs here, so nix/package.nix gets the package set of
// tests/nix/pinned-toolchain-pkgs.nix: Nix's own sandbox (not the xtask's) with the pinned
// Debian toolchain mounted as its /usr. The same toolchain in a different sandbox must give
// the same bytes as the xtask; the Nix-built image must boot; nix/checks.nix must pass on the
// real packages and fail, with an explanation, on a recipe that embeds the time.

/// Each Nix-built `names[i]` (`built[i]`) is the xtask's build of it (with `arch_args`, e.g.
/// `--arch aarch64`), byte for byte; `xtask diff` explains any difference.
fn assert_nix_builds_are_the_xtasks(arch_args: &[&str], names: &[&str], built: &[PathBuf]) {
    assert_eq!(built.len(), names.len(), "{built:?}");
    for (name, nix_out) in names.iter().zip(built) {
        let mut build = arch_args.to_vec();
        build.extend(["build", name]);
        let entry = PathBuf::from(xtask_ok(&build).lines().last().unwrap());
        let o = xtask(&[
            "diff",
            "--json",
            entry.join("out").to_str().unwrap(),
            nix_out.to_str().unwrap(),
        ]);
        let diffs: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
        eprintln!(
            "{name} {arch_args:?}: xtask {} vs nix {}: {}",
            entry.display(),
            nix_out.display(),
            serde_json::to_string_pretty(&diffs).unwrap()
        );
        assert!(
            o.status.success() && diffs.is_empty(),
            "{name} {arch_args:?}: the Nix build differs from the xtask's"
        );
    }
}

/// nix-build tests/nix/build.nix in Nix's sandbox over the pinned toolchain. Build logs stay
/// in Nix (`nix log DRV`); stderr shows what is being built, and a failure's last 80 log lines.
fn nix_build(toolchain: &Path, extra: &[&str]) -> std::process::Output {
    let tc = toolchain.display();
    let more_jobs = (std::thread::available_parallelism().unwrap().get() + 1).to_string();
    let mounts = format!("/usr={tc}/usr /bin={tc}/usr/bin /lib={tc}/usr/lib /lib64={tc}/usr/lib64 /sbin={tc}/usr/sbin /etc/ld.so.cache={tc}/etc/ld.so.cache");
    let mut c = nix("nix-build");
    c.arg(repo().join("tests/nix/build.nix"))
        .args([
            "--arg",
            "xtaskBin",
            env!("CARGO_BIN_EXE_xtask"),
            "--no-out-link",
            "--no-build-output",
        ])
        .args([
            "--option",
            "sandbox",
            "true",
            // All of the sandbox's paths (replacing Nix's own /bin/sh): the toolchain's
            // /bin/sh is dash, as in the xtask's sandbox.
            "--option",
            "sandbox-paths",
            &mounts,
            "--option",
            "log-lines",
            "80",
            // JOBS=$NIX_BUILD_CORES: one more than the xtask's builds run (its jobs are the
            // CPU count), so the byte comparison of each package is also one across
            // parallelism, as the audit's: for x86_64's kernel it is CI's second build
            // (full.rs says why).
            "--option",
            "cores",
            &more_jobs,
        ])
        // Everything comes from the local store: never ask a binary cache (no network here).
        .args(["--option", "substituters", ""])
        .args(extra);
    eprintln!("nix-build {}", extra.join(" "));
    let t = std::time::Instant::now();
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let collect = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(err)).map_while(Result::ok) {
            if line.starts_with("building '") {
                eprintln!("  {line} ({:.0?})", t.elapsed());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all.into_bytes()
    });
    let mut stdout = Vec::new();
    std::io::Read::read_to_end(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    let status = child.wait().unwrap();
    let stderr = collect.join().unwrap();
    eprintln!("  {} in {:.0?}", if status.success() { "done" } else { "failed" }, t.elapsed());
    std::process::Output { status, stdout, stderr }
}

/// A setting as this Nix resolves it (nix.conf, NIX_CONFIG and compiled-in defaults).
fn nix_setting(name: &str, nix_config: Option<&str>) -> Result<String, String> {
    let mut c = nix_cli();
    if let Some(conf) = nix_config {
        c.env("NIX_CONFIG", conf);
    }
    let o = c
        .args(["config", "show"])
        .output()
        .map_err(|e| format!("running `nix config show`: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "`nix config show` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&o.stdout);
    let value = text.lines().find_map(|l| {
        l.split_once(" = ").filter(|(k, _)| k.trim() == name).map(|(_, v)| v.trim().to_string())
    });
    Ok(value.unwrap_or_default())
}

/// What real builds need from the host, checked before any `nix-build` so that a missing
/// piece is named in one line with its fix instead of failing deep inside Nix.
/// `nix_config` is added as NIX_CONFIG (the tests' way to vary the setting).
fn nix_ready_for_builds(nix_config: Option<&str>) -> Result<(), String> {
    let group = nix_setting("build-users-group", nix_config)?;
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    if !root && std::env::var_os("NIX_REMOTE").is_none() {
        return Err("the tests use Nix's local store, which needs root (or a running nix-daemon and NIX_REMOTE=daemon)".into());
    }
    if group.is_empty() || !root {
        return Ok(()); // single-user mode, or the daemon owns the build users
    }
    let groups =
        std::fs::read_to_string("/etc/group").map_err(|e| format!("reading /etc/group: {e}"))?;
    let fix = "fix: run `sudo tests/nix/setup-build-users` (what Debian's nix-setup-systemd does, without systemd); see README, Requirements";
    match groups
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&group.as_str()))
    {
        None => {
            Err(format!("build-users-group = {group}, but the group {group} does not exist; {fix}"))
        }
        Some(f) if f.get(3).is_none_or(|m| m.trim().is_empty()) => {
            Err(format!("the group {group} has no members to build as; {fix}"))
        }
        Some(_) => Ok(()),
    }
}

fn store_paths(o: &std::process::Output) -> Vec<PathBuf> {
    assert!(o.status.success(), "nix-build failed:\n{}", tail(&o.stderr, 60));
    String::from_utf8_lossy(&o.stdout).lines().map(PathBuf::from).collect()
}

fn tail(b: &[u8], n: usize) -> String {
    let s = String::from_utf8_lossy(b);
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
#[ignore = "full tier: real Nix builds of the flake's derivations"]
fn nix_builds_match_the_xtask_and_boot() {
    let _full = support::full_tier();
    if let Err(missing) = nix_ready_for_builds(None) {
        panic!("Nix is not set up for builds: {missing}");
    }
    let toolchain = PathBuf::from(xtask_ok(&["toolchain"]).trim());

    // No network: put every pinned source into the Nix store under the name and hash its
    // fetchurl pins, which is the path the fixed-output derivation would produce.
    xtask_ok(&["fetch"]);
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&xtask_ok(&["fetch", "--list"])).unwrap();
    let seed = tempfile::tempdir().unwrap();
    let mut add = nix("nix-store");
    add.args(["--add-fixed", "sha256"]);
    for s in &list {
        let named = seed.path().join(store_file_name(s["file"].as_str().unwrap()));
        if !named.exists() {
            std::fs::hard_link(
                repo().join("out/cache/sha256").join(s["sha256"].as_str().unwrap()),
                &named,
            )
            .unwrap();
            add.arg(&named);
        }
    }
    // The media's UEFI stubs come from the pinned systemd-boot-efi .deb (nix/efi-stubs.nix),
    // which the toolchain's materialisation has put in the download cache.
    let (file, sha256) = locked_stub_deb("toolchain.lock", "amd64");
    let deb = seed.path().join(store_file_name(&file));
    std::fs::hard_link(repo().join("out/cache/sha256").join(&sha256), &deb)
        .unwrap_or_else(|e| panic!("{file} ({sha256}) from the download cache: {e}"));
    add.arg(&deb);
    assert!(add.status().unwrap().success(), "nix-store --add-fixed failed");

    // 1. Build the packages with Nix.
    let names = [
        "kernel",
        "busybox",
        "dropbear",
        "iproute2",
        "rootfs",
        "hd-image",
        "firecracker-kernel-bin-oci",
        "firecracker-kernel-modules-oci",
        "hd-image-oci",
        "initramfs",
        "efi-image",
        "iso",
    ];
    let mut args = Vec::new();
    for n in names {
        args.extend(["-A", n]);
    }
    let built = store_paths(&nix_build(&toolchain, &args));
    assert_eq!(built.len(), names.len());

    // 2. The same recipes and toolchain in another sandbox: the same bytes as the xtask's
    //    store (write bits aside: the Nix store is read-only), hd.img included: its UUID and
    //    hash seed derive from the rootfs tar and the image parameters, which both builders share.
    assert_nix_builds_are_the_xtasks(&[], &names, &built);

    // 3. Nix's own determinism check, then the flake's checks (a second derivation of each
    //    package, compared by `xtask diff` inside Nix).
    let again = nix_build(&toolchain, &["--check", "-A", "rootfs", "-A", "hd-image"]);
    assert!(
        again.status.success(),
        "nix-build --check found a difference:\n{}",
        tail(&again.stderr, 40)
    );
    let checks = store_paths(&nix_build(&toolchain, &["-A", "checks"]));
    assert_eq!(checks.len(), 5, "{checks:?}");
    for c in &checks {
        let report = std::fs::read_to_string(c).unwrap();
        assert!(report.contains("are identical"), "{}: {report}", c.display());
    }

    // 4. A check that cannot fail would be worthless: a recipe that embeds the time fails its
    //    check, and the log names the file and shows the changed line.
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(
        bad.path().join("stamp.toml"),
        "name = \"stamp\"\nversion = \"1\"\n[build]\nscript = \"date +%s%N > \\\"$OUT\\\"/stamp; echo same > \\\"$OUT\\\"/same\"\noutputs = [\"stamp\"]\n",
    )
    .unwrap();
    let o = nix_build(
        &toolchain,
        &[
            "--arg",
            "recipesDir",
            bad.path().to_str().unwrap(),
            "--arg",
            "checkNames",
            "[ \"stamp\" ]",
            "-A",
            "checks",
        ],
    );
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "the check of a time-stamping recipe passed");
    assert!(
        log.contains("stamp (content)") && !log.contains("same (content)"),
        "{}",
        tail(&o.stderr, 40)
    );

    // 5. Boot the Nix-built kernel and image.
    let (kernel, image) = (&built[0], &built[5]);
    xtask_ok(&[
        "boot-test",
        "--kernel",
        kernel.join("bzImage").to_str().unwrap(),
        "--image",
        image.join("hd.img").to_str().unwrap(),
    ]);

    // 6. arm64 through Nix: nix/package.nix with targetArch = "aarch64" over the pinned
    //    aarch64 toolchain root (the build toolchain, the cross compiler and the arm64
    //    libraries) gives the xtask's bytes for the cross-built userland. The arm64 kernel,
    //    and the root and images over it, are left to the xtask's tier (aarch64.rs): another
    //    kernel build would cost CI about 8 minutes (docs/guide/nix.md).
    let arm_toolchain = PathBuf::from(xtask_ok(&["--arch", "aarch64", "toolchain"]).trim());
    let arm_names = ["busybox", "dropbear", "iproute2", "grow-rootfs"];
    let mut args = vec!["--argstr", "targetArch", "aarch64"];
    for n in arm_names {
        args.extend(["-A", n]);
    }
    let arm_built = store_paths(&nix_build(&arm_toolchain, &args));
    for p in &arm_built {
        assert!(p.to_str().unwrap().contains("-aarch64-"), "not an aarch64 derivation: {p:?}");
    }
    assert_nix_builds_are_the_xtasks(&["--arch", "aarch64"], &arm_names, &arm_built);
}
