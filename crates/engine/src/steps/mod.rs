//! Steps and providers: what one node's build is made of (sources, the pinned toolchain, a
//! binary cache's entry, the step sequence and its rootfs, image, media and OCI layout steps),
//! the host tools, the results copied to `out/`, and explanations of differences.

pub mod attest;
pub mod explain;
pub mod host_tools;
pub mod image;
pub mod media;
pub mod oci_layout;
pub mod results;
pub mod rootfs;
pub mod runner;
pub mod sequence;
pub mod sources;
pub mod substitution;
pub mod toolchain;
