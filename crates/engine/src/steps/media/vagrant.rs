//! A Vagrant box for the libvirt provider (vagrant-libvirt's box format, version 1): a tar
//! holding `metadata.json` (provider, disk format, virtual size in whole GiB), a `Vagrantfile`
//! with the provider's defaults, and `box.img`, the qcow2 form of the disk. Uncompressed (the
//! qcow2 is already sparse), entries in that order, every header fixed (root, 0644,
//! SOURCE_DATE_EPOCH), as the OVA is.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};

/// File names inside the box.
pub(crate) const METADATA: &str = "metadata.json";
pub(crate) const VAGRANTFILE: &str = "Vagrantfile";
pub(crate) const DISK: &str = "box.img";

/// `metadata.json` of a libvirt box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Metadata {
    pub provider: String,
    pub format: String,
    /// The disk's size in GiB, rounded up (vagrant-libvirt's unit).
    pub virtual_size: u64,
}

impl Metadata {
    pub(crate) fn libvirt_qcow2(disk_bytes: u64) -> Metadata {
        Metadata {
            provider: "libvirt".into(),
            format: "qcow2".into(),
            virtual_size: disk_bytes.div_ceil(1 << 30),
        }
    }
}

/// The box's Vagrantfile: the provider's defaults for this disk. The disk boots through a
/// legacy BIOS (libvirt's default) and UEFI alike; the guest has no shared-folder tools, and
/// its SSH accepts root with the keys the image was given (no well-known Vagrant key is baked
/// into reprovm's images).
pub(crate) fn vagrantfile(memory_mib: u32) -> String {
    format!(
        "# A reprovm box (libvirt provider): GPT disk, BIOS or UEFI boot, ext4 root grown to the disk.\n\
         Vagrant.configure(\"2\") do |config|\n  \
         config.vm.synced_folder \".\", \"/vagrant\", disabled: true\n  \
         config.ssh.username = \"root\"\n  \
         config.vm.provider :libvirt do |libvirt|\n    \
         libvirt.driver = \"kvm\"\n    \
         libvirt.memory = {memory_mib}\n    \
         libvirt.disk_bus = \"virtio\"\n  \
         end\n\
         end\n"
    )
}

/// Write the box: metadata, Vagrantfile, then the `qcow2_size` bytes of `qcow2`, a disk of
/// `disk_bytes` bytes.
pub(crate) fn write(
    qcow2: impl Read,
    qcow2_size: u64,
    disk_bytes: u64,
    memory_mib: u32,
    mtime: u64,
    out: impl Write,
) -> Result<()> {
    let mut metadata = serde_json::to_vec_pretty(&Metadata::libvirt_qcow2(disk_bytes))?;
    metadata.push(b'\n');
    let vagrantfile = vagrantfile(memory_mib);
    super::fixed_tar(
        vec![
            (METADATA, metadata.len() as u64, Box::new(&metadata[..])),
            (VAGRANTFILE, vagrantfile.len() as u64, Box::new(vagrantfile.as_bytes())),
            (DISK, qcow2_size, Box::new(qcow2)),
        ],
        mtime,
        out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_first_then_the_vagrantfile_then_the_disk() {
        let disk = b"QFI\xfb disk".to_vec();
        let mut boxed = Vec::new();
        write(&disk[..], disk.len() as u64, 198_180_864, 256, 1_704_067_200, &mut boxed).unwrap();
        let mut ar = tar::Archive::new(&boxed[..]);
        let mut names = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            assert_eq!(e.header().mtime().unwrap(), 1_704_067_200);
            assert_eq!(e.header().uid().unwrap(), 0);
            let name = e.path().unwrap().display().to_string();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            if name == METADATA {
                let m: Metadata = serde_json::from_slice(&data).unwrap();
                assert_eq!(m, Metadata::libvirt_qcow2(198_180_864));
                assert_eq!(m.virtual_size, 1);
                let text = String::from_utf8(data.clone()).unwrap();
                assert!(text.contains("\"provider\": \"libvirt\""), "{text}");
            }
            if name == DISK {
                assert_eq!(data, disk);
            }
            names.push(name);
        }
        assert_eq!(names, [METADATA, VAGRANTFILE, DISK]);
        assert_eq!(Metadata::libvirt_qcow2((1 << 30) + 1).virtual_size, 2);
        assert!(vagrantfile(256).contains("libvirt.memory = 256"));
    }
}
