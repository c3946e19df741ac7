//! Fast tier: `xtask assemble`, the entry point other builders (nix/package.nix) use for the
//! xtask's own rootfs assembly, run the way a Nix build runs it: dependencies under
//! BUILD/deps/NAME, libraries looked up under `/` (RUNPATH first, then the library path).

use crate::support::xtask;
use std::fs;
use std::path::Path;
use std::process::Command;

fn assemble(recipes: &Path, build: &Path, out: &Path, recipe: &str) -> std::process::Output {
    xtask()
        .arg("--recipes")
        .arg(recipes)
        .args(["assemble", recipe, "--sysroot", "/", "--build-dir"])
        .arg(build)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn assemble_builds_a_rootfs_from_dependency_dirs_with_their_libraries() {
    let t = tempfile::tempdir().unwrap();
    let recipes = t.path().join("recipes");
    fs::create_dir_all(&recipes).unwrap();
    fs::write(
        recipes.join("tools.toml"),
        "name = \"tools\"\nversion = \"1\"\n[build]\nscript = \"true\"\n",
    )
    .unwrap();
    fs::write(
        recipes.join("mini.toml"),
        "name = \"mini\"\nversion = \"1\"\ndeps = [\"tools\"]\n[rootfs]\ndirs = [\"tmp:1777\"]\ninstall = [\"tools:bin/prog -> bin/prog\"]\n\
         symlinks = [\"init -> /bin/prog\"]\nlibrary-path = [\"/lib/x86_64-linux-gnu\", \"/usr/lib/x86_64-linux-gnu\", \"/lib64\"]\n[build]\noutputs = [\"rootfs.tar\"]\n",
    )
    .unwrap();
    // The dependency's output as a Nix build sees it: read-only files and directories.
    let build = t.path().join("build");
    let bin = build.join("deps/tools/bin");
    fs::create_dir_all(&bin).unwrap();
    fs::copy(fs::canonicalize("/bin/true").unwrap(), bin.join("prog")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(bin.join("prog"), fs::Permissions::from_mode(0o555)).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o555)).unwrap();

    let out = t.path().join("out");
    let o = assemble(&recipes, &build, &out, "mini");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let list = fs::read_to_string(out.join("rootfs.list")).unwrap();
    assert!(list.contains("d 0755 /bin\n"), "read-only dirs are normalised:\n{list}");
    assert!(list.contains("f 0755 /bin/prog "), "{list}");
    assert!(list.contains("d 1777 /tmp\n"), "{list}");
    assert!(list.contains("l 0777 /init -> /bin/prog\n"), "{list}");
    assert!(
        list.lines().any(|l| l.starts_with("f 0755 /lib/x86_64-linux-gnu/libc.so.6 ")),
        "libc not taken along:\n{list}"
    );
    assert!(
        list.lines().any(|l| l.contains("ld-linux-x86-64.so.2")),
        "loader not taken along:\n{list}"
    );
    let mut names: Vec<String> = tar::Archive::new(fs::File::open(out.join("rootfs.tar")).unwrap())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    let sorted = {
        let mut s = names.clone();
        s.sort();
        s
    };
    assert_eq!(names, sorted, "tar members are not sorted");
    names.retain(|n| n == "bin/prog");
    assert_eq!(names.len(), 1);

    // Same inputs, same bytes.
    let again = t.path().join("again");
    assert!(assemble(&recipes, &build, &again, "mini").status.success());
    assert_eq!(
        fs::read(out.join("rootfs.tar")).unwrap(),
        fs::read(again.join("rootfs.tar")).unwrap()
    );

    // A missing dependency output and a plain-script recipe are refused with the fix named.
    let o = assemble(&recipes, &t.path().join("empty"), &t.path().join("o2"), "mini");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("dependency `tools` is missing"), "{err}");
    let o = assemble(&recipes, &build, &t.path().join("o3"), "tools");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("this one is a plain script"), "{err}");
}

/// The image step uses mke2fs from PATH inside another builder. It must refuse an e2fsprogs
/// whose `mke2fs -d` is not reproducible (< 1.47.1, e.g. Debian 12's 1.47.0) and otherwise
/// make an image; which of the two happens depends on the host's e2fsprogs, both are checked.
#[test]
fn assemble_image_requires_a_reproducible_mke2fs() {
    let Ok(v) =
        Command::new("mke2fs").arg("-V").env("PATH", "/usr/sbin:/sbin:/usr/bin:/bin").output()
    else {
        panic!("mke2fs (e2fsprogs) is needed by this test");
    };
    let version = String::from_utf8_lossy(&v.stderr)
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string();
    let t = tempfile::tempdir().unwrap();
    let recipes = t.path().join("recipes");
    fs::create_dir_all(recipes.join("img")).unwrap();
    fs::write(recipes.join("img/mke2fs.conf"), "[defaults]\n\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr\n").unwrap();
    fs::write(
        recipes.join("root.toml"),
        "name = \"root\"\nversion = \"1\"\n[build]\nscript = \"true\"\n",
    )
    .unwrap();
    fs::write(
        recipes.join("disk.toml"),
        "name = \"disk\"\nversion = \"1\"\ndeps = [\"root\"]\nfiles = [\"img/mke2fs.conf\"]\n[image]\nrootfs = \"root\"\nlabel = \"t\"\nsize-mib = 8\n[build]\noutputs = [\"hd.img\"]\n",
    )
    .unwrap();
    let build = t.path().join("build");
    fs::create_dir_all(build.join("deps/root")).unwrap();
    fs::create_dir_all(build.join("files/img")).unwrap();
    fs::copy(recipes.join("img/mke2fs.conf"), build.join("files/img/mke2fs.conf")).unwrap();
    let mut tar = tar::Builder::new(fs::File::create(build.join("deps/root/rootfs.tar")).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_path("hello").unwrap();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append(&h, &b"hi\n"[..]).unwrap();
    tar.finish().unwrap();
    drop(tar);
    fs::write(build.join("deps/root/content-bytes"), "3").unwrap();
    let out = t.path().join("out");
    let o = xtask()
        .env("PATH", format!("/usr/sbin:/sbin:{}", std::env::var("PATH").unwrap_or_default()))
        .arg("--recipes")
        .arg(&recipes)
        .args(["assemble", "disk", "--build-dir"])
        .arg(&build)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let old =
        version.starts_with("1.4") && version.as_str() < "1.47.1" || version.starts_with("1.3");
    if old {
        assert!(
            !o.status.success() && err.contains("e2fsprogs >= 1.47.1 is needed"),
            "mke2fs {version}: {err}"
        );
        assert!(
            !out.join("hd.img").exists() || fs::metadata(out.join("hd.img")).unwrap().len() == 0
        );
    } else {
        assert!(o.status.success(), "mke2fs {version}: {err}");
        assert_eq!(fs::metadata(out.join("hd.img")).unwrap().len(), 8 << 20);
    }
}

/// `assemble` runs every step a recipe declares, as `build` does: a recipe with both [rootfs]
/// and [image] gets its tar and then the mke2fs step (it used to stop after the tar).
#[test]
fn assemble_runs_rootfs_then_image_in_one_recipe() {
    let t = tempfile::tempdir().unwrap();
    let recipes = t.path().join("recipes");
    fs::create_dir_all(recipes.join("img")).unwrap();
    fs::write(recipes.join("img/mke2fs.conf"), "[defaults]\n").unwrap();
    fs::write(
        recipes.join("both.toml"),
        "name = \"both\"\nversion = \"1\"\nfiles = [\"img/mke2fs.conf\"]\n[rootfs]\ndirs = [\"etc\"]\n\
         [image]\nrootfs = \"both\"\nlabel = \"t\"\nsize-mib = 8\n[build]\noutputs = [\"rootfs.tar\"]\n",
    )
    .unwrap();
    let build = t.path().join("build");
    fs::create_dir_all(build.join("files/img")).unwrap();
    fs::copy(recipes.join("img/mke2fs.conf"), build.join("files/img/mke2fs.conf")).unwrap();
    let out = t.path().join("out");
    let o = xtask()
        .env("PATH", format!("/usr/sbin:/sbin:{}", std::env::var("PATH").unwrap_or_default()))
        .arg("--recipes")
        .arg(&recipes)
        .args(["assemble", "both", "--build-dir"])
        .arg(&build)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(out.join("rootfs.tar").is_file(), "{err}");
    // The mke2fs step ran: an image, or (with e2fsprogs < 1.47.1 on this host) its refusal.
    assert!(out.join("hd.img").is_file() || err.contains("e2fsprogs >= 1.47.1 is needed"), "{err}");
}

/// `--efi-stubs DIR` (a builder's own copy of systemd's UEFI stubs, as the flake over nixpkgs
/// has them) must hold the stub of the architecture assembled, or the command stops at once
/// naming the file, before any step runs.
#[test]
fn assemble_refuses_efi_stubs_without_the_architectures_stub() {
    let t = tempfile::tempdir().unwrap();
    let stubs = t.path().join("stubs");
    fs::create_dir(&stubs).unwrap();
    fs::write(stubs.join("linuxx64.efi.stub"), b"MZ").unwrap();
    let run = |arch: &str| {
        let mut c = xtask();
        c.args(["--arch", arch, "assemble", "efi-image", "--efi-stubs"])
            .arg(&stubs)
            .arg("--build-dir")
            .arg(t.path().join("build"))
            .arg("--out")
            .arg(t.path().join(format!("out-{arch}")));
        c.output().unwrap()
    };
    // x86_64's stub is there: past the check, stopped at the first missing dependency.
    let o = run("x86_64");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("dependency `") && err.contains("is missing"),
        "{err}"
    );
    // aarch64's is not.
    let o = run("aarch64");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("no linuxaa64.efi.stub there"), "{err}");
    assert!(!t.path().join("out-aarch64").exists(), "a refused assemble left its output directory");
}
