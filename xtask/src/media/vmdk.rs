//! Stream-optimised VMDK (VMware, VirtualBox, OVA): `qemu-img convert -O vmdk -o
//! subformat=streamOptimized` from the pinned toolchain writes it (its grains are deflated by
//! the pinned zlib), then the one value qemu-img takes from randomness, the content id (`CID=`
//! in the embedded descriptor), is replaced in place by one derived from the disk's content.

use anyhow::{bail, Context, Result};

/// The shell step converting the raw disk at `raw` to `vmdk` (paths as the script sees them,
/// `$OUT` allowed).
pub fn convert_script(raw: &str, vmdk: &str) -> String {
    format!(
        "qemu-img convert -q -f raw -O vmdk -o subformat=streamOptimized \"{raw}\" \"{vmdk}\"\n"
    )
}

/// Set the descriptor's `CID=` to `cid` (8 hex digits, same length: nothing moves).
pub fn set_cid(vmdk: &mut [u8], cid: u32) -> Result<()> {
    if vmdk.len() < 4 || &vmdk[..4] != b"KDMV" {
        bail!("not a VMDK (no KDMV magic)");
    }
    // The embedded descriptor lies in the first sectors; search only there.
    let head = &vmdk[..vmdk.len().min(64 * 512)];
    let at = find(head, b"\nCID=").context("the VMDK descriptor has no CID")? + 5;
    let digits = &vmdk[at..at + 8];
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        bail!("the VMDK descriptor's CID is not 8 hex digits");
    }
    vmdk[at..at + 8].copy_from_slice(format!("{cid:08x}").as_bytes());
    Ok(())
}

/// The descriptor's CID.
pub fn cid(vmdk: &[u8]) -> Option<String> {
    let head = &vmdk[..vmdk.len().min(64 * 512)];
    let at = find(head, b"\nCID=")? + 5;
    Some(String::from_utf8_lossy(&vmdk[at..at + 8]).into_owned())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cid_is_replaced_in_place() {
        let mut v = b"KDMV....# Disk DescriptorFile\nversion=1\nCID=5f1e2d3c\nparentCID=ffffffff\n"
            .to_vec();
        let len = v.len();
        set_cid(&mut v, 0xdeadbeef).unwrap();
        assert_eq!(v.len(), len);
        assert_eq!(cid(&v).as_deref(), Some("deadbeef"));
        assert!(String::from_utf8_lossy(&v).contains("parentCID=ffffffff"));
        assert!(set_cid(&mut b"QFI\xfb".to_vec(), 1).is_err());
    }
}
