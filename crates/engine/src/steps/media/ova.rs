//! OVA: an OVF 1.0 descriptor, a manifest of SHA-256 digests and the stream-optimised VMDK,
//! in a ustar archive with the descriptor first (DSP0243 §5.3), every header fixed (root,
//! 0644, SOURCE_DATE_EPOCH). The descriptor names the disk with its size, its capacity, and a
//! small virtual machine (1 vCPU, 256 MiB, one NAT NIC, UEFI firmware) that VirtualBox and
//! VMware import.

use anyhow::Result;
use std::io::Write;

/// File names inside the OVA.
pub(crate) const OVF: &str = "reprovm.ovf";
pub(crate) const MANIFEST: &str = "reprovm.mf";
pub(crate) const DISK: &str = "reprovm-disk1.vmdk";

/// The OVF descriptor for a VMDK of `vmdk_size` bytes holding a disk of `capacity` bytes.
pub(crate) fn descriptor(vmdk_size: u64, capacity: u64, memory_mib: u32) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:id="file1" ovf:href="{DISK}" ovf:size="{vmdk_size}"/>
  </References>
  <DiskSection>
    <Info>Virtual disks</Info>
    <Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="{capacity}" ovf:capacityAllocationUnits="byte" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>Logical networks</Info>
    <Network ovf:name="nat">
      <Description>NAT</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="reprovm">
    <Info>A reprovm virtual machine: UEFI, GPT disk with an EFI system partition and an ext4 root</Info>
    <Name>reprovm</Name>
    <OperatingSystemSection ovf:id="101">
      <Info>Guest operating system</Info>
      <Description>Linux 64-bit</Description>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>reprovm</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-14</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of virtual CPUs</rasd:Description>
        <rasd:ElementName>1 virtual CPU</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>1</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory size</rasd:Description>
        <rasd:ElementName>{memory_mib} MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{memory_mib}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SATA controller</rasd:Description>
        <rasd:ElementName>SATA controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>AHCI</rasd:ResourceSubType>
        <rasd:ResourceType>20</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>nat</rasd:Connection>
        <rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>E1000</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"#
    )
}

/// Write the OVA: descriptor, manifest, disk (ustar, root-owned, fixed times).
pub(crate) fn write(
    vmdk: &[u8],
    capacity: u64,
    memory_mib: u32,
    mtime: u64,
    out: impl Write,
) -> Result<()> {
    let ovf = descriptor(vmdk.len() as u64, capacity, memory_mib);
    let manifest = format!(
        "SHA256({OVF})= {}\nSHA256({DISK})= {}\n",
        reprovm_fs::hash::sha256_bytes(ovf.as_bytes()),
        reprovm_fs::hash::sha256_bytes(vmdk)
    );
    let entries: Vec<(&str, u64, Box<dyn std::io::Read>)> =
        [(OVF, ovf.as_bytes()), (MANIFEST, manifest.as_bytes()), (DISK, vmdk)]
            .into_iter()
            .map(|(name, data)| (name, data.len() as u64, Box::new(data) as Box<dyn std::io::Read>))
            .collect();
    super::fixed_tar(entries, mtime, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_first_with_the_disk_size_and_digest() {
        let vmdk = b"KDMV disk".to_vec();
        let mut ova = Vec::new();
        write(&vmdk, 64 << 20, 256, 1_704_067_200, &mut ova).unwrap();
        let mut ar = tar::Archive::new(&ova[..]);
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, [OVF, MANIFEST, DISK]);
        let ovf = descriptor(vmdk.len() as u64, 64 << 20, 256);
        assert!(ovf.contains(&format!("ovf:href=\"{DISK}\" ovf:size=\"{}\"", vmdk.len())));
        assert!(ovf.contains(&format!("ovf:capacity=\"{}\"", 64u64 << 20)));
    }
}
