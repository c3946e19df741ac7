//! ext4 disk images: `mke2fs -d rootfs.tar` (e2fsprogs >= 1.47.1) with a vendored
//! `mke2fs.conf`, and a file system UUID and directory hash seed derived from what the image is
//! made of (the rootfs tar, the `[image]` parameters, the mke2fs.conf): every builder that
//! makes the same image from the same inputs gets the same bytes, whatever it calls its inputs.

use crate::model::recipe::{ImageSpec, Loaded};
use anyhow::{Context, Result};
use reprovm_fs::hash::{sha256_file, Hasher};
use std::path::Path;

/// A UUID (RFC 4122 version 4 layout) derived from an id and a purpose.
pub(crate) fn derived_uuid(id: &str, purpose: &str) -> String {
    let mut h = Hasher::new("reprovm-uuid");
    h.field("input", id.as_bytes());
    h.field("purpose", purpose.as_bytes());
    let digest = h.finish_bytes();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let s = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &s[..8], &s[8..12], &s[12..16], &s[16..20], &s[20..32])
}

/// Image size in MiB: from the recipe, or content plus headroom (at least 64 MiB).
pub(crate) fn size_mib(spec: &ImageSpec, content_bytes: u64) -> u64 {
    if let Some(s) = spec.size_mib {
        return s;
    }
    let headroom = spec.headroom_percent.unwrap_or(50);
    let mib = content_bytes.div_ceil(1 << 20);
    (mib + mib * headroom / 100 + 32).max(64)
}

/// The identity the image's UUID and hash seed derive from: the rootfs tar's bytes, the
/// `[image]` parameters and the vendored mke2fs.conf. All of them are the same for every
/// builder, so the xtask and Nix make the same image.
pub(crate) fn image_id(
    spec: &ImageSpec,
    size_mib: u64,
    rootfs_tar: &Path,
    mke2fs_conf: &Path,
) -> Result<String> {
    let mut h = Hasher::new("reprovm-image-id");
    h.field("rootfs.tar", sha256_file(rootfs_tar)?.0.as_bytes());
    h.field("mke2fs.conf", sha256_file(mke2fs_conf)?.0.as_bytes());
    h.field("label", spec.label.as_bytes());
    h.field("size-mib", size_mib.to_string().as_bytes());
    Ok(h.finish())
}

/// The shell script that makes the ext4 image (and qcow2) of an `[image]` recipe, run in the
/// build directory `build_dir` as the script sees it (recipe files under `files/`) with `$OUT`.
/// `rootfs_tar` is the tar on the host (hashed for the id); `rootfs_in_script` the same file
/// as the script sees it.
pub(crate) fn mke2fs_script(
    l: &Loaded,
    spec: &ImageSpec,
    host_build_dir: &Path,
    rootfs_tar: &Path,
    rootfs_in_script: &str,
    content_bytes: u64,
    build_dir: &Path,
) -> Result<String> {
    let conf =
        l.recipe.files.iter().find(|f| f.ends_with("mke2fs.conf")).with_context(|| {
            format!("{}: list a vendored mke2fs.conf in `files`", l.path.display())
        })?;
    let size = size_mib(spec, content_bytes);
    let id = image_id(spec, size, rootfs_tar, &host_build_dir.join("files").join(conf))?;
    let uuid = derived_uuid(&id, "fs-uuid");
    let seed = derived_uuid(&id, "hash-seed");
    let conf = build_dir.join("files").join(conf);
    let qcow2 = if spec.qcow2 {
        "qemu-img convert -f raw -O qcow2 \"$OUT\"/hd.img \"$OUT\"/hd.qcow2\n"
    } else {
        ""
    };
    use crate::mechanisms::shell;
    Ok(format!(
        "export LC_ALL=C MKE2FS_CONFIG={conf}\n\
         v=\"$(mke2fs -V 2>&1 | head -1 | cut -d' ' -f2)\"; echo \"mke2fs $v\"\n\
         case \"$v\" in 1.[0-3]*|1.4[0-6].*|1.47.0|1.47.0-*) echo \"mke2fs $v cannot make this \
         image reproducibly from a tarball: e2fsprogs >= 1.47.1 is needed\" >&2; exit 1;; esac\n\
         mke2fs -q -F -t ext4 -b 4096 -L {label} -U {uuid} \\\n  \
         -E hash_seed={seed},nodiscard,lazy_itable_init=0,lazy_journal_init=0,no_copy_xattrs,root_owner=0:0 \\\n  \
         -d {rootfs} \"$OUT\"/hd.img {size}M\n\
         e2fsck -fn \"$OUT\"/hd.img\n{qcow2}",
        conf = shell::word(&conf.display().to_string())?,
        label = shell::word(&spec.label)?,
        rootfs = shell::path(rootfs_in_script)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_derived_and_well_formed() {
        let u = derived_uuid("abc", "fs-uuid");
        assert_eq!(u, derived_uuid("abc", "fs-uuid"));
        assert_ne!(u, derived_uuid("abd", "fs-uuid"));
        assert_ne!(u, derived_uuid("abc", "hash-seed"));
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "{u}");
    }

    #[test]
    fn image_id_follows_content_not_names() {
        let t = tempfile::tempdir().unwrap();
        let (tar, conf) = (t.path().join("rootfs.tar"), t.path().join("mke2fs.conf"));
        std::fs::write(&tar, "tar bytes").unwrap();
        std::fs::write(&conf, "[defaults]\n").unwrap();
        let spec = ImageSpec {
            rootfs: "rootfs".into(),
            label: "reprovm".into(),
            size_mib: None,
            headroom_percent: None,
            qcow2: false,
        };
        let a = image_id(&spec, 64, &tar, &conf).unwrap();
        // A copy of the same bytes elsewhere (another builder's paths) gives the same id.
        let other = t.path().join("elsewhere.tar");
        std::fs::copy(&tar, &other).unwrap();
        assert_eq!(a, image_id(&spec, 64, &other, &conf).unwrap());
        std::fs::write(&tar, "other tar bytes").unwrap();
        assert_ne!(a, image_id(&spec, 64, &tar, &conf).unwrap());
        std::fs::write(&tar, "tar bytes").unwrap();
        assert_ne!(a, image_id(&spec, 65, &tar, &conf).unwrap());
        let relabelled = ImageSpec { label: "other".into(), ..spec };
        assert_ne!(a, image_id(&relabelled, 64, &tar, &conf).unwrap());
    }

    #[test]
    fn the_script_keeps_each_value_one_argument() {
        let t = tempfile::tempdir().unwrap();
        let host = t.path().join("build");
        std::fs::create_dir_all(host.join("files/hd image")).unwrap();
        std::fs::write(host.join("files/hd image/mke2fs.conf"), "[defaults]\n").unwrap();
        let tar = t.path().join("rootfs.tar");
        std::fs::write(&tar, "tar bytes").unwrap();
        let text = "name = \"hd\"\nversion = \"1\"\ndeps = [\"root\"]\nfiles = [\"hd image/mke2fs.conf\"]\n\
                    [build]\n[image]\nrootfs = \"root\"\nlabel = \"root\"\nsize-mib = 8\n";
        let path = t.path().join("hd.toml");
        let recipe = crate::model::recipe::parse(&path, text, "hd.toml").unwrap();
        // Recipes refuse such a label; the script does not rely on it.
        let spec = ImageSpec { label: "it's".into(), ..recipe.image.clone().unwrap() };
        let l = crate::model::recipe::Loaded::new(
            recipe,
            path,
            text.into(),
            Default::default(),
            text.into(),
        );
        let s = mke2fs_script(&l, &spec, &host, &tar, "$OUT/root fs.tar", 1, Path::new("/b d"))
            .unwrap();
        let words: Vec<String> = s
            .replace("\\\n", " ")
            .lines()
            .filter(|line| line.starts_with("export") || line.starts_with("mke2fs -q"))
            .flat_map(|line| shlex::split(&line.replace("\"$OUT\"", "OUT")).unwrap())
            .collect();
        let after = |flag: &str| words[words.iter().position(|w| w == flag).unwrap() + 1].clone();
        assert_eq!(after("-L"), "it's", "{s}");
        assert_eq!(after("-d"), "OUT/root fs.tar", "{s}");
        assert!(words.contains(&"MKE2FS_CONFIG=/b d/files/hd image/mke2fs.conf".into()), "{s}");
    }
}
