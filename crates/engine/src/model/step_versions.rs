//! The versions of the engine's own steps: a step whose output format changes bumps its
//! version, and a recipe's input hash covers the versions of the steps it uses, so store
//! entries made by the old code are not taken for the new (as a new builder makes a new
//! derivation in Nix). The steps themselves (`steps::rootfs`, ...) name their version here.

use crate::model::recipe::Recipe;

/// The `[rootfs]` tar.
pub(crate) const ROOTFS: &str = "rootfs-v1";
/// The `[image]` ext4 image.
pub(crate) const IMAGE: &str = "image-v1";
/// The boot media: `[initramfs]`, `[uefi]`, `[iso]`.
pub(crate) const MEDIA: &str = "media-v4";
/// The `[oci]` layout.
pub(crate) const OCI: &str = "oci-v1";

/// The versions of the steps `r` uses, in step order.
pub(crate) fn of(r: &Recipe) -> Vec<&'static str> {
    let mut v = Vec::new();
    if r.rootfs.is_some() {
        v.push(ROOTFS);
    }
    if r.image.is_some() {
        v.push(IMAGE);
    }
    if r.initramfs.is_some() || r.uefi.is_some() || r.iso.is_some() {
        v.push(MEDIA);
    }
    if r.oci.is_some() {
        v.push(OCI);
    }
    v
}
