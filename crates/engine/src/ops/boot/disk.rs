//! The disk a boot is given: a qcow2 overlay of the pinned image (`--disk-size`), or the raw
//! image grown in place (`--persist`).

use super::*;

/// A copy-on-write qcow2 overlay of `image` presenting `size` bytes, made by the pinned
/// qemu-img in `scratch`: the image is never written, and the overlay holds only what the
/// guest writes (sparse).
pub(super) fn overlay(
    tools: &HostTools,
    image: &Path,
    format: &str,
    size: u64,
    scratch: &Path,
) -> Result<PathBuf> {
    let current = image_size(tools, image, format)?;
    anyhow::ensure!(
        size >= current,
        "--disk-size {size}: {} is already {current} bytes; a disk can only grow",
        image.display()
    );
    let image = std::fs::canonicalize(image).with_context(|| format!("{}", image.display()))?;
    let overlay = scratch.join("disk.qcow2");
    reprovm_fs::util::run_checked(
        tools
            .command("qemu-img")?
            .args(["create", "-q", "-f", "qcow2", "-F", format, "-b"])
            .arg(&image)
            .arg(&overlay)
            .arg(size.to_string()),
    )
    .context("making the disk's overlay")?;
    Ok(overlay)
}

/// Grow a raw image file to `size` bytes in place (sparse: the new part is a hole).
pub(super) fn grow_raw(image: &Path, format: &str, size: u64) -> Result<()> {
    anyhow::ensure!(
        format == "raw",
        "--disk-size with --persist grows a raw image in place; {} is {format} (leave out --persist for an overlay)",
        image.display()
    );
    let current = std::fs::metadata(image).with_context(|| format!("{}", image.display()))?.len();
    anyhow::ensure!(
        size >= current,
        "--disk-size {size}: {} is already {current} bytes; a disk can only grow",
        image.display()
    );
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(image)
        .with_context(|| format!("opening {} to grow it", image.display()))?;
    f.set_len(size).with_context(|| format!("growing {}", image.display()))?;
    f.sync_all()?;
    Ok(())
}

/// The virtual size of a disk image: a raw file's length, or what the pinned qemu-img reads
/// in a VHD or VMDK.
pub(super) fn image_size(tools: &HostTools, image: &Path, format: &str) -> Result<u64> {
    if format == "raw" {
        return Ok(std::fs::metadata(image).with_context(|| format!("{}", image.display()))?.len());
    }
    let info = reprovm_fs::util::output_checked(
        tools.command("qemu-img")?.args(["info", "--output=json", "-f", format]).arg(image),
    )?;
    let v: serde_json::Value = serde_json::from_slice(&info)
        .with_context(|| format!("qemu-img info of {}", image.display()))?;
    v["virtual-size"]
        .as_u64()
        .with_context(|| format!("qemu-img info of {}: no virtual-size", image.display()))
}
