//! The step tables of a recipe: `[kconfig]`, `[rootfs]`, `[image]`, `[oci]`, `[initramfs]`,
//! `[uefi]`, `[iso]` (the fields `[build]`'s script does not say itself).

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct Kconfig {
    /// The .config the configure script leaves, relative to /build.
    pub config: String,
    /// Fragment files (in `files`) whose every option must hold in the final .config.
    pub fragments: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RootfsSpec {
    /// Dependency outputs to copy: "DEP:SRC -> DEST" (SRC relative to the dep's output).
    #[serde(default)]
    pub install: Vec<String>,
    /// Symlinks to create: "LINK -> TARGET".
    #[serde(default)]
    pub symlinks: Vec<String>,
    /// Directories to create (mode 0755 unless "PATH:MODE").
    #[serde(default)]
    pub dirs: Vec<String>,
    /// Device nodes: "PATH c|b MAJOR MINOR MODE".
    #[serde(default)]
    pub devices: Vec<String>,
    /// Overlays applied in order: directories or tarballs relative to `recipes/`, or absolute.
    #[serde(default)]
    pub overlays: Vec<String>,
    /// File in a dependency's output listing busybox applet links (one path per line).
    pub applet_links: Option<String>,
    /// Toolchain library directories searched for DT_NEEDED of dynamic binaries.
    #[serde(default)]
    pub library_path: Vec<String>,
    /// A recipe file (listed in `files`) installed as /etc/os-release, with VERSION_ID set to
    /// the recipe's version and BUILD_ID derived from the image's content.
    pub os_release: Option<String>,
    /// Debian packages installed into the tree with their dependency closure, from the lock
    /// `cargo xtask pin debian` writes (`pins/debian/NAME.lock`, `NAME-aarch64.lock`): the
    /// binary packages of the build toolchain's suite, for the image's architecture.
    #[serde(default)]
    pub debian: Vec<String>,
    /// Dependencies of `debian` never installed (besides those the image already has from
    /// the toolchain, and the install-only packages: see docs/reference/recipes.md).
    #[serde(default)]
    pub debian_exclude: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct ImageSpec {
    /// Dependency that produced rootfs.tar.
    pub rootfs: String,
    pub label: String,
    /// Size in MiB; computed from the tree with headroom when absent.
    pub size_mib: Option<u64>,
    /// Extra free space in percent when the size is computed (default 50).
    pub headroom_percent: Option<u64>,
    /// Also produce hd.qcow2 via `qemu-img convert`.
    #[serde(default)]
    pub qcow2: bool,
}

/// `[oci]`: an OCI image layout. Either an image (`layer`: a directory under the build
/// directory that becomes its one layer, with an image config for `architecture`/linux) or an
/// artifact (`artifact-type` and one `[[oci.file]]` per layer). `[[oci.referrer]]` attaches
/// further artifacts whose `subject` is the main manifest (OCI 1.1 referrers).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct OciSpec {
    /// Tags: `org.opencontainers.image.ref.name` in index.json, and what `push` sets.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Moving tags (`latest`): added to `tags` only in the layout over the newest version of
    /// the versioned recipe beneath it (or always, when nothing beneath it has versions).
    #[serde(default)]
    pub newest_tags: Vec<String>,
    /// Image: the directory (relative to the build directory) that is the layer's root.
    pub layer: Option<String>,
    /// Image: the config's architecture (Go's names; default amd64). The OS is linux.
    pub architecture: Option<String>,
    /// Image: the config's architecture variant (`v8` for arm64), if any.
    pub variant: Option<String>,
    /// Artifact: its `artifactType`.
    pub artifact_type: Option<String>,
    /// Artifact: its files, one layer each (the file's name is its title).
    #[serde(default, rename = "file")]
    pub files: Vec<OciFile>,
    /// Artifacts attached to the main manifest.
    #[serde(default, rename = "referrer")]
    pub referrers: Vec<OciReferrer>,
    /// Manifest annotations added to (or replacing) the defaults: created (from
    /// SOURCE_DATE_EPOCH), version (the recipe's), revision (the recipes' content digest),
    /// title (the recipe's name).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// A file of an OCI artifact: a path relative to the build directory and its media type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct OciFile {
    pub path: String,
    pub media_type: String,
}

/// `[[oci.referrer]]`: an artifact about the main manifest (e.g. the kernel's .config).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct OciReferrer {
    pub artifact_type: String,
    #[serde(rename = "file")]
    pub files: Vec<OciFile>,
}

/// `[initramfs]`: the root file system tar of a dependency as a newc cpio (gzip).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct InitramfsSpec {
    /// The dependency whose output holds rootfs.tar.
    pub rootfs: String,
}

/// `[uefi]`: a GPT disk whose EFI system partition holds a unified kernel image (systemd's
/// stub + the kernel + command line + os-release) and whose second partition is an `[image]`
/// dependency's hd.img, mounted by PARTUUID; plus the forms named in `formats`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct UefiSpec {
    /// The dependency holding hd.img.
    pub image: String,
    /// The dependency holding bzImage.
    pub kernel: String,
    /// A file of `files`: the unified kernel image's .osrel.
    pub os_release: String,
    /// Added to the kernel command line (after `root=PARTUUID=… rw console=ttyS0 panic=-1`).
    #[serde(default)]
    pub cmdline: String,
    /// Size of the EFI system partition in MiB (default 64).
    pub esp_size_mib: Option<u64>,
    /// Other forms of efi.img: `vhd` (fixed), `vhdx` (dynamic), `vmdk` (stream-optimised),
    /// `ova`, `qcow2`, `box` (Vagrant, libvirt provider, carrying the qcow2).
    #[serde(default)]
    pub formats: Vec<String>,
    /// A dependency holding `bios/gptmbr.bin`, `bios/syslinux` (the FAT installer) and
    /// `bios/ldlinux.c32`: the disk also boots from a legacy BIOS, SYSLINUX on the ESP (marked
    /// legacy-BIOS-bootable) loading the same kernel with the same command line.
    pub bios: Option<String>,
}

/// `[iso]`: a hybrid ISO whose El Torito EFI image (also a GPT partition) holds a unified
/// kernel image with the initramfs: a live system, no disk needed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct IsoSpec {
    /// The dependency holding bzImage.
    pub kernel: String,
    /// The dependency holding initramfs.cpio.gz.
    pub initramfs: String,
    /// A file of `files`: the unified kernel image's .osrel.
    pub os_release: String,
    /// ISO 9660 volume id: 1 to 32 of A-Z 0-9 _.
    pub volume_id: String,
    /// Added to the kernel command line (after `console=ttyS0 panic=-1`).
    #[serde(default)]
    pub cmdline: String,
    /// A dependency holding `bios/isolinux.bin`, `bios/ldlinux.c32` and `bios/isohdpfx.bin`:
    /// the ISO also boots from a legacy BIOS, as a CD-ROM (El Torito) and as a disk (the
    /// isohybrid MBR), with the same kernel, initramfs and command line.
    pub bios: Option<String>,
}

/// The forms `[uefi] formats` may name.
pub(crate) const DISK_FORMATS: [&str; 6] = ["vhd", "vhdx", "vmdk", "ova", "qcow2", "box"];

/// `[flavours.NAME]`: a named variant of a kernel recipe, its config fragments merged over the
/// recipe's own. `NAME+FLAVOUR` (and `NAME@KEY+FLAVOUR`) is the recipe with `fragments`
/// appended to `files` and to `[kconfig] fragments`, and each `append-env` value appended,
/// after a space, to the recipe's `[env]` value of that name (`KERNEL_FRAGMENTS`). Every
/// recipe over it has a `+FLAVOUR` node too, and an OCI layout's tags get `-FLAVOUR`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct Flavour {
    /// One line for humans (`plan --matrix`, `targets`).
    #[serde(default)]
    pub description: String,
    /// Fragment files (under recipes/), merged after the recipe's own, in this order.
    pub fragments: Vec<String>,
    /// Values appended (after a space) to the recipe's `[env]` values of the same name.
    #[serde(default)]
    pub append_env: BTreeMap<String, String>,
}

/// `[matrix]`: the cells (version × architecture × flavour) left out of the recipe's matrix.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct Matrix {
    #[serde(default)]
    pub exclude: Vec<Exclusion>,
}

/// One exclusion: the cells matching every field given (a missing field matches any value).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct Exclusion {
    /// A `[versions]` key or a version (`6.1.176`, `6.18`).
    pub version: Option<String>,
    /// A flavour's name, or `default` for the recipe without one.
    pub flavour: Option<String>,
    /// An architecture (`x86_64`, `aarch64`).
    pub arch: Option<String>,
    /// Why: shown by `plan --matrix` and by a build of the cell.
    pub reason: String,
}
