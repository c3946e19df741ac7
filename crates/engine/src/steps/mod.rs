//! Steps and providers: what one node's build is made of (sources, the pinned toolchain, a
//! binary cache's entry, the step sequence and its rootfs, image, media and OCI layout steps),
//! the host tools, the results copied to `out/`, and explanations of differences.

pub(crate) mod attest;
pub(crate) mod debian_packages;
pub(crate) mod explain;
pub(crate) mod host_tools;
pub(crate) mod image;
pub(crate) mod media;
pub(crate) mod oci_layout;
pub(crate) mod results;
pub(crate) mod rootfs;
pub(crate) mod runner;
pub(crate) mod sandbox_runner;
pub(crate) mod sequence;
pub(crate) mod sources;
pub mod substitution;
pub(crate) mod toolchain;
