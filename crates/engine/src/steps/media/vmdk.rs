//! Stream-optimised VMDK (VMware, VirtualBox, OVA): `qemu-img convert -O vmdk -o
//! subformat=streamOptimized` from the pinned toolchain writes it (its grains are deflated by
//! the pinned zlib), then the one value qemu-img takes from randomness, the content id (`CID=`
//! in the embedded descriptor), is replaced in place by one derived from the disk's content.

use anyhow::{bail, Context, Result};

/// The shell step converting the raw disk at `raw` to `vmdk` (paths as the script sees them,
/// `$OUT/` allowed).
pub(crate) fn convert_script(raw: &str, vmdk: &str) -> Result<String> {
    use crate::mechanisms::shell::path;
    Ok(format!(
        "qemu-img convert -q -f raw -O vmdk -o subformat=streamOptimized {} {}\n",
        path(raw)?,
        path(vmdk)?
    ))
}

/// The embedded descriptor's byte range, from the sparse header (descriptorOffset and
/// descriptorSize, in sectors, at bytes 28 and 36).
fn descriptor_range(vmdk: &[u8]) -> Result<std::ops::Range<usize>> {
    if vmdk.len() < 512 || &vmdk[..4] != b"KDMV" {
        bail!("not a VMDK (no KDMV magic)");
    }
    let field = |at: usize| reprovm_fs::fields::le_u64(vmdk, at);
    let (offset, size) = (field(28)?, field(36)?);
    let start = usize::try_from(offset.saturating_mul(512)).context("descriptor offset")?;
    let end = usize::try_from(offset.saturating_add(size).saturating_mul(512))
        .context("descriptor size")?;
    if offset == 0 || size == 0 || end > vmdk.len() {
        bail!("the VMDK has no embedded descriptor (offset {offset}, size {size} sectors)");
    }
    Ok(start..end)
}

/// Set the descriptor's `CID=` to `cid`, written as 8 hex digits. qemu-img writes its random
/// CID with `%x`, so it has 1 to 8 digits: the rest of the descriptor text moves within the
/// descriptor's NUL padding, and the sectors around it stay as they are.
pub(crate) fn set_cid(vmdk: &mut [u8], cid: u32) -> Result<()> {
    let range = descriptor_range(vmdk)?;
    let region = &vmdk[range.clone()];
    let text_len = region.iter().position(|&b| b == 0).unwrap_or(region.len());
    let text = &region[..text_len];
    let at = find(text, b"\nCID=").context("the VMDK descriptor has no CID")? + 5;
    let digits = text[at..].iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if !(1..=8).contains(&digits) || text.get(at + digits) != Some(&b'\n') {
        bail!("the VMDK descriptor's CID is not 1 to 8 hex digits and a newline");
    }
    let mut rewritten = Vec::with_capacity(region.len());
    rewritten.extend_from_slice(&text[..at]);
    rewritten.extend_from_slice(format!("{cid:08x}").as_bytes());
    rewritten.extend_from_slice(&text[at + digits..]);
    if rewritten.len() > region.len() {
        bail!("the VMDK descriptor has no room for an 8-digit CID");
    }
    rewritten.resize(region.len(), 0);
    vmdk[range].copy_from_slice(&rewritten);
    Ok(())
}

/// The descriptor's CID.
pub(crate) fn cid(vmdk: &[u8]) -> Option<String> {
    let region = &vmdk[descriptor_range(vmdk).ok()?];
    let at = find(region, b"\nCID=")? + 5;
    let digits = region[at..].iter().take_while(|b| b.is_ascii_hexdigit()).count();
    Some(String::from_utf8_lossy(&region[at..at + digits]).into_owned())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sparse header whose descriptor (sector 1, 1 sector) holds `text`, then a grain.
    fn vmdk(text: &str) -> Vec<u8> {
        let mut v = vec![0u8; 3 * 512];
        v[..4].copy_from_slice(b"KDMV");
        v[28..36].copy_from_slice(&1u64.to_le_bytes());
        v[36..44].copy_from_slice(&1u64.to_le_bytes());
        v[512..512 + text.len()].copy_from_slice(text.as_bytes());
        v[1024..].fill(0xaa);
        v
    }

    #[test]
    fn cid_is_replaced_in_place() {
        let mut v = vmdk("# Disk DescriptorFile\nversion=1\nCID=5f1e2d3c\nparentCID=ffffffff\n");
        let len = v.len();
        set_cid(&mut v, 0xdeadbeef).unwrap();
        assert_eq!(v.len(), len);
        assert_eq!(cid(&v).as_deref(), Some("deadbeef"));
        assert!(String::from_utf8_lossy(&v).contains("parentCID=ffffffff"));
        assert!(set_cid(&mut b"QFI\xfb".to_vec(), 1).is_err());
    }

    #[test]
    fn a_short_random_cid_becomes_eight_digits_and_nothing_else_moves() {
        // qemu-img prints its CID with %x: 7 digits one time in 16.
        let text = "# Disk DescriptorFile\nversion=1\nCID=e1e2d3c\nparentCID=ffffffff\n";
        let mut v = vmdk(text);
        set_cid(&mut v, 0x0000beef).unwrap();
        let want = text.replace("CID=e1e2d3c\n", "CID=0000beef\n");
        assert_eq!(&v[512..512 + want.len()], want.as_bytes());
        assert!(v[512 + want.len()..1024].iter().all(|&b| b == 0));
        assert!(v[1024..].iter().all(|&b| b == 0xaa), "the grain after the descriptor moved");
        assert_eq!(cid(&v).as_deref(), Some("0000beef"));
    }

    #[test]
    fn a_descriptor_without_room_or_cid_is_refused() {
        let full = format!("version=1\nCID=1\n{}\n", "x".repeat(512 - 17));
        assert_eq!(full.len(), 512);
        let e = set_cid(&mut vmdk(&full), 1).unwrap_err().to_string();
        assert!(e.contains("no room"), "{e}");
        assert!(set_cid(&mut vmdk("version=1\n"), 1).is_err());
    }
}
