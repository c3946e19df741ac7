//! Boot media, the steps of `[initramfs]`, `[uefi]` and `[iso]` recipes, run by both builders
//! (`steps.rs`): an initramfs (`cpio.rs`), a UEFI GPT disk with an EFI system partition holding
//! a unified kernel image (`uki_script`, `fat.rs`, `gpt.rs`) and its VHD (`vhd.rs`), VMDK
//! (`vmdk.rs`), VHDX (`vhdx.rs`), OVA (`ova.rs`), qcow2 and Vagrant box (`vagrant.rs`) forms,
//! and a hybrid ISO (`iso_script`).
//!
//! Every identifier these formats carry is derived from what defines the medium, never from
//! the clock or randomness: disk and partition GUIDs, the FAT volume id, the VHD unique id and
//! the VMDK content id are a hash of the contents (the ext4 image, the kernel, the command
//! line, os-release, the sizes) and of the id's name; times are SOURCE_DATE_EPOCH.

pub(crate) mod cpio;
pub(crate) mod fat;
pub(crate) mod gpt;
pub(crate) mod ova;
pub(crate) mod pe;
pub(crate) mod vagrant;
pub(crate) mod vhd;
pub(crate) mod vhdx;
pub(crate) mod vmdk;

use crate::model::arch::Arch;
use crate::model::recipe::{InitramfsSpec, IsoSpec, Loaded, UefiSpec};
use crate::steps::runner::{ScriptRunner, StepPaths};
use anyhow::{Context, Result};
use reprovm_fs::beneath::Dir;
use reprovm_fs::hash::Hasher;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// systemd's UEFI stub for `arch` in `stub_dir` (the runner's `efi_stub_dir`: Debian's
/// systemd-boot-efi in the toolchain, whose build set has the x64 one and whose aarch64 set
/// adds its arm64 twin).
pub(crate) fn efi_stub(stub_dir: &Path, arch: Arch) -> PathBuf {
    stub_dir.join(format!("linux{}.efi.stub", arch.uefi()))
}

/// The file name under `EFI/BOOT/` that UEFI firmware boots from removable media or a disk
/// with no boot entries: `BOOTX64.EFI`, `BOOTAA64.EFI`.
pub(crate) fn removable_loader(arch: Arch) -> String {
    format!("BOOT{}.EFI", arch.uefi().to_uppercase())
}

/// The root partition's type, by architecture (Discoverable Partitions Specification), so that
/// systemd-gpt-auto-generator and friends recognise it.
fn linux_root_type(arch: Arch) -> Uuid {
    match arch {
        Arch::X86_64 => gpt::LINUX_ROOT_X86_64,
        Arch::Aarch64 => gpt::LINUX_ROOT_ARM64,
    }
}

const MIB: u64 = 1 << 20;

/// A UUID (version 8, RFC 9562's custom layout) from `seed` and the id's name.
pub(crate) fn derived_uuid(seed: &str, name: &str) -> Uuid {
    let mut h = Hasher::new("reprovm-media-id-v1");
    h.field("seed", seed.as_bytes());
    h.field("name", name.as_bytes());
    let d = h.finish_bytes();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    Uuid::from_bytes(b)
}

/// A 32-bit id (FAT volume id, VMDK CID) from `seed` and the id's name.
pub(crate) fn derived_u32(seed: &str, name: &str) -> u32 {
    let b = derived_uuid(seed, name).into_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The regular file `file` of dependency `name`'s output, opened beneath it: a symlink there
/// (to a host file, say) is refused, never followed.
fn dep_file(paths: &StepPaths, l: &Loaded, name: &str, file: &str) -> Result<std::fs::File> {
    let out = paths
        .deps
        .get(name)
        .with_context(|| format!("{}: `{name}` is not a dependency", l.path.display()))?;
    Ok(Dir::open(out)?.open_file(Path::new(file))?)
}

/// Copy the file `file` of dependency `name` to `to` beneath `build/media`.
fn copy_dep_file(
    paths: &StepPaths,
    l: &Loaded,
    media: &Dir,
    (name, file): (&str, &str),
    to: &str,
) -> Result<()> {
    let mut f = dep_file(paths, l, name, file)?;
    let mut data = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut data)
        .with_context(|| format!("reading {name}'s {file}"))?;
    media.write_atomic(Path::new(to), &data, 0o644)?;
    Ok(())
}

/// Write a ustar archive of `entries` (name, size, reader of that many bytes) in that order,
/// every header fixed: a regular file, root-owned, 0644, `mtime`. The OVA and the Vagrant box.
pub(crate) fn fixed_tar(
    entries: Vec<(&str, u64, Box<dyn std::io::Read + '_>)>,
    mtime: u64,
    out: impl Write,
) -> Result<()> {
    use reprovm_fs::archive_write::{Entry, Format, TarWriter};
    let mut tar = TarWriter::new(out, Format::Ustar, mtime);
    for (name, size, mut data) in entries {
        tar.append(Entry::File { path: Path::new(name), mode: 0o644, size, data: &mut data })?;
    }
    tar.finish()?.flush()?;
    Ok(())
}

/// The sha256 of `file` (from its start), which is left at its end.
fn sha256_of(file: &mut std::fs::File, name: &str) -> Result<String> {
    file.seek(SeekFrom::Start(0))?;
    Ok(reprovm_fs::hash::sha256_reader(file).with_context(|| format!("reading {name}"))?.0)
}

/// One of the recipe's files (staged in the build directory), read beneath it.
fn recipe_file(paths: &StepPaths, rel: &str) -> Result<Vec<u8>> {
    Ok(Dir::open(&paths.build.join("files"))?.read(Path::new(rel))?)
}

/// `[initramfs]`: the dependency's rootfs.tar as `$OUT/initramfs.cpio.gz`.
pub(crate) fn initramfs(
    l: &Loaded,
    spec: &InitramfsSpec,
    paths: &StepPaths,
    epoch: i64,
) -> Result<()> {
    let tar = dep_file(paths, l, &spec.rootfs, "rootfs.tar")?;
    let mut tree = crate::steps::rootfs::Tree::default();
    tree.add_tar(tar)?;
    let mtime =
        u32::try_from(epoch).context("SOURCE_DATE_EPOCH outside the cpio format's range")?;
    let out = Dir::open(paths.out)?;
    let mut f = std::io::BufWriter::new(out.create_file(Path::new("initramfs.cpio.gz"), 0o644)?);
    cpio::write_gz(&tree, mtime, &mut f)?;
    f.flush()?;
    Ok(())
}

/// The shell step that assembles a unified kernel image with objcopy (the method of systemd
/// before ukify): `arch`'s stub plus .osrel, .cmdline, .linux and optionally .initrd sections
/// at the addresses systemd 252's stub expects, written by the objcopy of `arch`'s binutils
/// (pei-x86-64, pei-aarch64-little). Both stubs end below .osrel's address (x64 at 0x19300,
/// aa64 at 0x10e00) and a kernel must stay under 16 MiB for .initrd: `pe::check_sections_disjoint`
/// refuses an image where they do not. Paths are as the script sees them.
pub(crate) fn uki_script(
    arch: Arch,
    stub_dir: &Path,
    osrel: &str,
    cmdline: &str,
    linux: &str,
    initrd: Option<&str>,
    out: &str,
) -> Result<String> {
    use crate::mechanisms::shell::{path, word};
    let section = |name: &str, file: &str| word(&format!(".{name}={file}"));
    let initrd = match initrd {
        Some(i) => format!(
            "  --add-section {} --change-section-vma .initrd=0x3000000 \\\n",
            section("initrd", i)?
        ),
        None => String::new(),
    };
    let objcopy = format!("{}objcopy", arch.binutils_prefix());
    let stub = efi_stub(stub_dir, arch);
    Ok(format!(
        "{objcopy} \\\n  --add-section {} --change-section-vma .osrel=0x20000 \\\n  \
         --add-section {} --change-section-vma .cmdline=0x30000 \\\n  \
         --add-section {} --change-section-vma .linux=0x2000000 \\\n{initrd}  \
         {} {}\n",
        section("osrel", osrel)?,
        section("cmdline", cmdline)?,
        section("linux", linux)?,
        path(&stub.display().to_string())?,
        path(out)?,
    ))
}

/// What goes into a unified kernel image.
struct Uki<'a> {
    arch: Arch,
    /// File name in `build/media/`.
    name: &'a str,
    /// os-release, relative to the recipe's files.
    os_release: &'a str,
    cmdline: &'a str,
    /// The dependency whose kernel image (`Arch::kernel_image`) is the kernel.
    kernel_dep: &'a str,
    /// The initramfs, relative to the build directory.
    initrd: Option<&'a str>,
}

/// Build a UKI in `build/media/NAME`, its PE time set to `epoch`, and return its bytes.
fn uki(paths: &StepPaths, runner: &dyn ScriptRunner, parts: &Uki, epoch: i64) -> Result<Vec<u8>> {
    let Uki { arch, name, os_release: osrel_file, cmdline, kernel_dep, initrd } = *parts;
    let media = Dir::create(&paths.build.join("media"))?;
    media.write_atomic(Path::new(&format!("{name}.cmdline")), cmdline.as_bytes(), 0o644)?;
    let b = runner.build_dir().to_path_buf();
    let shown = |p: PathBuf| p.display().to_string();
    let script = uki_script(
        arch,
        runner.efi_stub_dir(),
        &shown(b.join("files").join(osrel_file)),
        &shown(b.join("media").join(format!("{name}.cmdline"))),
        &shown(b.join("deps").join(kernel_dep).join(arch.kernel_image())),
        initrd.map(|i| shown(b.join(i))).as_deref(),
        &shown(b.join("media").join(name)),
    )?;
    runner.run_script(&format!("uki {name}"), &script)?;
    let mut image = media.read(Path::new(name))?;
    let stamp = u32::try_from(epoch).context("SOURCE_DATE_EPOCH outside PE's time range")?;
    pe::set_timestamp(&mut image, stamp).with_context(|| format!("{name} from objcopy"))?;
    pe::check_sections_disjoint(&image).with_context(|| format!("{name} from objcopy"))?;
    media.write_atomic(Path::new(name), &image, 0o644)?;
    Ok(image)
}

/// `[uefi]`: `$OUT/efi.img` (GPT: the ESP with EFI/BOOT/BOOTX64.EFI or BOOTAA64.EFI, the ext4
/// root by PARTUUID), that loader beside it in `$OUT`, and the forms asked for.
pub(crate) fn uefi(
    l: &Loaded,
    spec: &UefiSpec,
    paths: &StepPaths,
    epoch: i64,
    runner: &dyn ScriptRunner,
) -> Result<()> {
    let epoch_u = u64::try_from(epoch).context("SOURCE_DATE_EPOCH before 1970")?;
    let (arch, image) = (l.arch, l.arch.kernel_image());
    let loader = removable_loader(arch);
    let mut hd = dep_file(paths, l, &spec.image, "hd.img")?;
    let mut kernel = dep_file(paths, l, &spec.kernel, image)?;
    let root_size = hd.metadata()?.len();
    anyhow::ensure!(
        root_size % MIB == 0,
        "{}'s hd.img: {root_size} bytes, not whole MiB",
        spec.image
    );
    let esp_size = spec.esp_size_mib.unwrap_or(64) * MIB;
    let osrel = recipe_file(paths, &spec.os_release)?;
    let seed = format!(
        "hd.img {} {image} {} os-release {} esp {esp_size} cmdline {:?}",
        sha256_of(&mut hd, "hd.img")?,
        sha256_of(&mut kernel, image)?,
        reprovm_fs::hash::sha256_bytes(&osrel),
        spec.cmdline
    );
    let (disk_guid, esp_guid, root_guid) =
        (derived_uuid(&seed, "disk"), derived_uuid(&seed, "esp"), derived_uuid(&seed, "root"));
    let cmdline = format!(
        "root=PARTUUID={root_guid} rw console={} panic=-1 {}",
        arch.serial_console(),
        spec.cmdline
    );
    let parts = Uki {
        arch,
        name: &loader,
        os_release: &spec.os_release,
        cmdline: cmdline.trim(),
        kernel_dep: &spec.kernel,
        initrd: None,
    };
    let uki = uki(paths, runner, &parts, epoch)?;
    let media = runner.build_dir().join("media");
    let in_media = |f: &str| media.join(f).display().to_string();
    let mut files = vec![(in_media(&loader), format!("EFI/BOOT/{loader}"))];
    let media_dir = Dir::open(&paths.build.join("media"))?;
    let mut mbr_code = Vec::new();
    if let Some(dep) = &spec.bios {
        // SYSLINUX's BIOS boot: the kernel and a configuration beside the UKI, with its
        // command line; the installer below adds ldlinux.sys, ldlinux.c32 and the boot sector.
        copy_dep_file(paths, l, &media_dir, (&spec.kernel, "bzImage"), "bzImage")?;
        media_dir.write_atomic(
            Path::new("syslinux.cfg"),
            syslinux_cfg("/boot/bzImage", None, cmdline.trim()).as_bytes(),
            0o644,
        )?;
        files.push((in_media("bzImage"), "boot/bzImage".into()));
        files.push((in_media("syslinux.cfg"), "syslinux/syslinux.cfg".into()));
        let mut f = dep_file(paths, l, dep, "bios/gptmbr.bin")?;
        std::io::Read::read_to_end(&mut f, &mut mbr_code)
            .with_context(|| format!("reading {dep}'s bios/gptmbr.bin"))?;
    }
    let esp_first = MIB / gpt::SECTOR;
    let volume = fat::Volume {
        size_mib: esp_size / MIB,
        fat32: true,
        volume_id: derived_u32(&seed, "esp volume id"),
        label: "ESP",
        hidden_sectors: esp_first,
    };
    let mut fat_script = fat::script(&in_media("esp.img"), &volume, &files)?;
    if let Some(dep) = &spec.bios {
        fat_script.push_str(&syslinux_install_script(
            &runner.build_dir().join("deps").join(dep).join("bios/syslinux").display().to_string(),
            &in_media("esp.img"),
        )?);
    }
    runner.run_script("esp", &fat_script)?;
    let mut esp = media_dir.read(Path::new("esp.img"))?;
    anyhow::ensure!(
        esp.len() as u64 == esp_size,
        "the ESP image is {} bytes, not {esp_size}",
        esp.len()
    );
    if spec.bios.is_some() {
        fat::copy_boot_sector_to_backup(&mut esp).context("the ESP after syslinux --install")?;
    }

    // Layout: 1 MiB for the MBR and GPT, the ESP, the root, at least 1 MiB for the backup
    // GPT, the whole a multiple of 63 MiB: whole MiB (Azure's rule for VHDs) and whole
    // 16-head, 63-sector cylinders, so that readers sizing a VHD by its geometry see it all.
    let unit = 63 * MIB;
    let sectors = (MIB + esp_size + root_size + MIB).div_ceil(unit) * unit / gpt::SECTOR;
    let root_first = esp_first + esp_size / gpt::SECTOR;
    let parts = [
        gpt::Partition {
            type_guid: gpt::ESP_TYPE,
            guid: esp_guid,
            first_lba: esp_first,
            last_lba: root_first - 1,
            attributes: if spec.bios.is_some() { gpt::LEGACY_BIOS_BOOTABLE } else { 0 },
            name: "EFI system".into(),
        },
        gpt::Partition {
            type_guid: linux_root_type(arch),
            guid: root_guid,
            first_lba: root_first,
            last_lba: root_first + root_size / gpt::SECTOR - 1,
            attributes: 0,
            name: "reprovm root".into(),
        },
    ];
    let out = Dir::open(paths.out)?;
    out.write_atomic(Path::new(&loader), &uki, 0o644)?;
    {
        let mut f = out.create_file(Path::new("efi.img"), 0o644)?;
        f.set_len(sectors * gpt::SECTOR)?;
        gpt::write_tables(&mut f, sectors, disk_guid, &parts, &mbr_code)?;
        f.seek(SeekFrom::Start(esp_first * gpt::SECTOR))?;
        f.write_all(&esp)?;
        f.seek(SeekFrom::Start(root_first * gpt::SECTOR))?;
        hd.seek(SeekFrom::Start(0))?;
        std::io::copy(&mut hd, &mut f)?;
        f.sync_all()?;
    }
    let raw_size = sectors * gpt::SECTOR;
    let want = |f: &str| spec.formats.iter().any(|x| x == f);
    if want("vhd") {
        let mut raw = out.open_file(Path::new("efi.img"))?;
        let mut vhd = std::io::BufWriter::new(out.create_file(Path::new("efi.vhd"), 0o644)?);
        vhd::write(
            &mut raw,
            raw_size,
            epoch_u,
            derived_uuid(&seed, "vhd unique id").into_bytes(),
            &mut vhd,
        )?;
        vhd.flush()?;
    }
    if want("vmdk") || want("qcow2") || want("vhdx") {
        let mut script = String::new();
        if want("vhdx") {
            script.push_str(&vhdx::convert_script("$OUT/efi.img", "$OUT/efi.vhdx")?);
        }
        if want("vmdk") {
            script.push_str(&vmdk::convert_script("$OUT/efi.img", "$OUT/efi.vmdk")?);
        }
        if want("qcow2") {
            script.push_str(
                "qemu-img convert -q -f raw -O qcow2 \"$OUT\"/efi.img \"$OUT\"/efi.qcow2\n",
            );
        }
        runner.run_script("qemu-img", &script)?;
    }
    if want("vhdx") {
        let mut v = out.read(Path::new("efi.vhdx"))?;
        let id = |name: &str| derived_uuid(&seed, name).into_bytes();
        let ids = vhdx::Ids {
            sequence: u64::from(derived_u32(&seed, "vhdx sequence")),
            file_write: id("vhdx file write"),
            data_write: [id("vhdx data write 1"), id("vhdx data write 2")],
            virtual_disk: id("vhdx virtual disk"),
        };
        vhdx::normalize(&mut v, &ids).context("efi.vhdx")?;
        out.write_atomic(Path::new("efi.vhdx"), &v, 0o644)?;
    }
    if want("box") {
        let qcow2 = out.open_file(Path::new("efi.qcow2"))?;
        let qcow2_size = qcow2.metadata()?.len();
        let mut boxed = std::io::BufWriter::new(out.create_file(Path::new("reprovm.box"), 0o644)?);
        vagrant::write(
            std::io::BufReader::new(qcow2),
            qcow2_size,
            raw_size,
            256,
            epoch_u,
            &mut boxed,
        )?;
        boxed.flush()?;
    }
    if want("vmdk") {
        let mut v = out.read(Path::new("efi.vmdk"))?;
        vmdk::set_cid(&mut v, derived_u32(&seed, "vmdk cid")).context("efi.vmdk")?;
        out.write_atomic(Path::new("efi.vmdk"), &v, 0o644)?;
        if want("ova") {
            let mut ova =
                std::io::BufWriter::new(out.create_file(Path::new("reprovm.ova"), 0o644)?);
            ova::write(&v, raw_size, 256, epoch_u, &mut ova)?;
            ova.flush()?;
        }
    }
    Ok(())
}

/// `[iso]`: `$OUT/reprovm.iso`, a hybrid ISO 9660 image whose El Torito EFI boot image (FAT,
/// also appended as a GPT partition, so it boots as a disk too) holds a unified kernel image
/// with the initramfs; `$OUT/efiboot.img` is that image.
pub(crate) fn iso(
    l: &Loaded,
    spec: &IsoSpec,
    paths: &StepPaths,
    epoch: i64,
    runner: &dyn ScriptRunner,
) -> Result<()> {
    let epoch_u = u64::try_from(epoch).context("SOURCE_DATE_EPOCH before 1970")?;
    let (arch, image) = (l.arch, l.arch.kernel_image());
    let loader = removable_loader(arch);
    let in_iso = format!("ISO-{loader}");
    let mut kernel = dep_file(paths, l, &spec.kernel, image)?;
    let mut initramfs = dep_file(paths, l, &spec.initramfs, "initramfs.cpio.gz")?;
    let osrel = recipe_file(paths, &spec.os_release)?;
    let seed = format!(
        "{image} {} initramfs {} os-release {} cmdline {:?} volume {}",
        sha256_of(&mut kernel, image)?,
        sha256_of(&mut initramfs, "initramfs.cpio.gz")?,
        reprovm_fs::hash::sha256_bytes(&osrel),
        spec.cmdline,
        spec.volume_id
    );
    let cmdline = format!("console={} panic=-1 {}", arch.serial_console(), spec.cmdline);
    let initrd = format!("deps/{}/initramfs.cpio.gz", spec.initramfs);
    let parts = Uki {
        arch,
        name: &in_iso,
        os_release: &spec.os_release,
        cmdline: cmdline.trim(),
        kernel_dep: &spec.kernel,
        initrd: Some(&initrd),
    };
    let uki = uki(paths, runner, &parts, epoch)?;
    // The El Torito image: the UKI with room to spare, in whole MiB.
    let size_mib = (uki.len() as u64 + uki.len() as u64 / 8 + MIB).div_ceil(MIB);
    let m = runner.build_dir().join("media");
    let volume = fat::Volume {
        size_mib,
        fat32: false,
        volume_id: derived_u32(&seed, "efiboot volume id"),
        label: "EFIBOOT",
        hidden_sectors: 0,
    };
    let fat_script = fat::script(
        "$OUT/efiboot.img",
        &volume,
        &[(m.join(&in_iso).display().to_string(), format!("EFI/BOOT/{loader}"))],
    )?;
    runner.run_script("efiboot", &fat_script)?;
    let media = Dir::create(&paths.build.join("media"))?;
    media.write_atomic(
        Path::new("iso-root/README.txt"),
        b"reprovm live system: boots through UEFI (El Torito, or as a disk); the kernel, its command line and the initramfs are one unified kernel image in the EFI boot image.\n",
        0o644,
    )?;
    let b = runner.build_dir();
    let mbr = match &spec.bios {
        None => None,
        Some(dep) => {
            // SYSLINUX's BIOS boot: isolinux in the ISO tree, the kernel and initramfs beside
            // it, one entry with the UKI's command line; the isohybrid MBR makes it a disk too.
            let copy = |name: &str, file: &str, to: &str| {
                copy_dep_file(paths, l, &media, (name, file), to)
            };
            copy(dep, "bios/isolinux.bin", "iso-root/isolinux/isolinux.bin")?;
            copy(dep, "bios/ldlinux.c32", "iso-root/isolinux/ldlinux.c32")?;
            copy(dep, "bios/isohdpfx.bin", "isohdpfx.bin")?;
            copy(&spec.kernel, "bzImage", "iso-root/boot/bzImage")?;
            copy(&spec.initramfs, "initramfs.cpio.gz", "iso-root/boot/initramfs.cpio.gz")?;
            media.write_atomic(
                Path::new("iso-root/isolinux/isolinux.cfg"),
                syslinux_cfg("/boot/bzImage", Some("/boot/initramfs.cpio.gz"), cmdline.trim())
                    .as_bytes(),
                0o644,
            )?;
            Some(b.join("media/isohdpfx.bin").display().to_string())
        }
    };
    let script = iso_script(
        &spec.volume_id,
        epoch_u,
        "$OUT/efiboot.img",
        mbr.as_deref(),
        &b.join("media/iso-root").display().to_string(),
        "$OUT/reprovm.iso",
    )?;
    runner.run_script("xorriso", &script)
}

/// A SYSLINUX (or isolinux) configuration: boot the one entry at once, console on the serial
/// port too.
pub(crate) fn syslinux_cfg(kernel: &str, initrd: Option<&str>, cmdline: &str) -> String {
    let initrd = initrd.map(|i| format!("  INITRD {i}\n")).unwrap_or_default();
    format!(
        "SERIAL 0 115200\nDEFAULT reprovm\nPROMPT 0\nTIMEOUT 0\n\nLABEL reprovm\n  KERNEL {kernel}\n{initrd}  APPEND {cmdline}\n"
    )
}

/// The shell step that installs SYSLINUX into the FAT image `image` with the installer
/// `installer` (Debian's mtools-based `syslinux`): its boot sector, and `ldlinux.sys` and
/// `ldlinux.c32` in `/syslinux`. mtools writes the files' times as SOURCE_DATE_EPOCH; the
/// installer patches ldlinux.sys with the sectors it landed on, which the image's layout fixes.
pub(crate) fn syslinux_install_script(installer: &str, image: &str) -> Result<String> {
    use crate::mechanisms::shell::path;
    Ok(format!(
        "export MTOOLS_SKIP_CHECK=1\n{} --install --directory /syslinux {}\n",
        path(installer)?,
        path(image)?
    ))
}

/// xorriso (mkisofs emulation) writing a hybrid ISO: El Torito UEFI boot from the appended
/// FAT partition, GPT for disk boot, Rock Ridge and Joliet; every date SOURCE_DATE_EPOCH
/// (xorriso reads it from the environment for the volume dates and UUID; the files' and
/// directories' own times, which the directory records carry, are set to it first).
pub(crate) fn iso_script(
    volume_id: &str,
    epoch: u64,
    efiboot: &str,
    bios_mbr: Option<&str>,
    root: &str,
    out: &str,
) -> Result<String> {
    use crate::mechanisms::shell::{path, word};
    let (efiboot, root, out) = (path(efiboot)?, path(root)?, path(out)?);
    // BIOS: isolinux as the first El Torito entry (no emulation, 4 sectors loaded, boot info
    // table patched in), the isohybrid MBR for disk boot; UEFI: the appended ESP, after it.
    let bios = match bios_mbr {
        Some(mbr) => format!(
            "-isohybrid-mbr {} -b isolinux/isolinux.bin -c isolinux/boot.cat \\\n  \
             -no-emul-boot -boot-load-size 4 -boot-info-table -eltorito-alt-boot \\\n  ",
            path(mbr)?
        ),
        None => String::new(),
    };
    let t = reprovm_fs::util::UtcTime::from_unix(epoch);
    let stamp = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}00",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    );
    Ok(format!(
        "find {root} -exec touch -h -d @{epoch} {{}} +\n\
         xorriso -as mkisofs -quiet -iso-level 3 -full-iso9660-filenames -joliet -rational-rock \\\n  \
         -volid {} -appid reprovm -publisher reprovm -preparer reprovm -sysid LINUX \\\n  \
         --modification-date={stamp} \\\n  \
         -append_partition 2 0xef {efiboot} -appended_part_as_gpt -partition_offset 16 \\\n  \
         {bios}-e --interval:appended_partition_2:all:: -no-emul-boot \\\n  \
         -o {out} {root}\n",
        word(volume_id)?
    ))
}

/// The media steps of a recipe, in order.
pub(crate) fn write_media(
    l: &Loaded,
    paths: &StepPaths,
    epoch: i64,
    runner: &dyn ScriptRunner,
) -> Result<()> {
    let r = &l.recipe;
    if let Some(spec) = &r.initramfs {
        initramfs(l, spec, paths, epoch)
            .with_context(|| format!("{}: [initramfs]", l.path.display()))?;
    }
    if let Some(spec) = &r.uefi {
        uefi(l, spec, paths, epoch, runner)
            .with_context(|| format!("{}: [uefi]", l.path.display()))?;
    }
    if let Some(spec) = &r.iso {
        iso(l, spec, paths, epoch, runner)
            .with_context(|| format!("{}: [iso]", l.path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::runner::EFI_STUB_DIR;

    #[test]
    fn ids_follow_the_seed_and_the_name() {
        let a = derived_uuid("hd.img 00", "root");
        assert_eq!(a, derived_uuid("hd.img 00", "root"));
        assert_ne!(a, derived_uuid("hd.img 00", "esp"));
        assert_ne!(a, derived_uuid("hd.img 01", "root"));
        assert_eq!(a.get_version_num(), 8);
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
        assert_ne!(derived_u32("s", "a"), derived_u32("s", "b"));
    }

    #[test]
    fn syslinux_configurations() {
        // isolinux's, as the ISO has carried it since its BIOS boot landed.
        assert_eq!(
            syslinux_cfg("/boot/bzImage", Some("/boot/initramfs.cpio.gz"), "console=ttyS0"),
            "SERIAL 0 115200\nDEFAULT reprovm\nPROMPT 0\nTIMEOUT 0\n\nLABEL reprovm\n  KERNEL /boot/bzImage\n  INITRD /boot/initramfs.cpio.gz\n  APPEND console=ttyS0\n"
        );
        let disk = syslinux_cfg("/boot/bzImage", None, "root=PARTUUID=x rw");
        assert!(
            !disk.contains("INITRD") && disk.ends_with("  APPEND root=PARTUUID=x rw\n"),
            "{disk}"
        );
        let s = syslinux_install_script("/b/deps/s/bios/syslinux", "/b/media/esp.img").unwrap();
        assert!(
            s.contains("/b/deps/s/bios/syslinux --install --directory /syslinux /b/media/esp.img"),
            "{s}"
        );
    }

    #[test]
    fn scripts_name_their_inputs() {
        let s = uki_script(
            Arch::X86_64,
            Path::new(EFI_STUB_DIR),
            "/b/files/os-release",
            "/b/media/c",
            "/b/deps/kernel/bzImage",
            Some("/b/deps/i/initramfs.cpio.gz"),
            "/b/media/X.EFI",
        )
        .unwrap();
        // The script as the shell reads it: its words.
        let words = |s: &str| shlex::split(&s.replace("\\\n", " ")).unwrap();
        let w = words(&s);
        assert!(w.contains(&".initrd=/b/deps/i/initramfs.cpio.gz".to_string()), "{s}");
        assert_eq!(w[0], "objcopy", "{s}");
        assert_eq!(
            w[w.len() - 2..],
            ["/usr/lib/systemd/boot/efi/linuxx64.efi.stub", "/b/media/X.EFI"]
        );
        let stubs = Path::new("/nix/store/x-systemd-boot-efi");
        let arm =
            uki_script(Arch::Aarch64, stubs, "/o", "/c", "/b/deps/kernel/Image", None, "/X.EFI")
                .unwrap();
        assert!(arm.starts_with("aarch64-linux-gnu-objcopy ") && !arm.contains(".initrd"), "{arm}");
        let w = words(&arm);
        assert_eq!(
            w[w.len() - 2..],
            ["/nix/store/x-systemd-boot-efi/linuxaa64.efi.stub", "/X.EFI"]
        );
        // A path with a space or a quote is one argument.
        let odd =
            uki_script(Arch::X86_64, stubs, "/b/files/it's", "/c d", "/k", None, "/o").unwrap();
        let w = words(&odd);
        assert!(
            w.contains(&".osrel=/b/files/it's".into()) && w.contains(&".cmdline=/c d".into()),
            "{odd}"
        );
        assert_eq!(
            (removable_loader(Arch::X86_64).as_str(), removable_loader(Arch::Aarch64).as_str()),
            ("BOOTX64.EFI", "BOOTAA64.EFI")
        );
        let x = iso_script(
            "REPROVM",
            1_704_067_200,
            "$OUT/efiboot.img",
            None,
            "/b/media/iso-root",
            "$OUT/reprovm.iso",
        )
        .unwrap();
        assert!(
            x.contains("--modification-date=2024010100000000") && x.contains("-volid REPROVM"),
            "{x}"
        );
        assert!(!x.contains("isolinux"), "{x}");
        let x = iso_script("R", 0, "e.img", Some("/b/media/isohdpfx.bin"), "/r", "o.iso").unwrap();
        let (bios, efi) =
            (x.find("-b isolinux/isolinux.bin").unwrap(), x.find("-e --interval").unwrap());
        assert!(bios < efi && x.contains("-isohybrid-mbr /b/media/isohdpfx.bin"), "{x}");
        let x = iso_script("MY DISK", 0, "e.img", None, "/r", "o.iso").unwrap();
        assert!(x.contains("-volid 'MY DISK' "), "{x}");
    }
}
