//! reprovm's engine: from hash-pinned recipes to store entries, and the operations over them.
//!
//! Layers, top to bottom; a module imports only from its own layer or a lower one, and modules
//! form no cycle (`tests/layers.rs` reads the imports and holds this line):
//!
//! - [`ops`], operations: build, audit, gc, store verify, update, push/pull, cache push, pin,
//!   run/boot-test, plan, menuconfig, bench, the Nix builder's assemble; each takes a
//!   [`ops::context::RunContext`].
//! - [`steps`], steps and providers: sources, the toolchain and host tools (and the Debian
//!   archive read through verified indexes), substitution from a binary cache, the step
//!   sequence (rootfs, image, media, OCI layout), results, explain.
//! - [`model`]: project paths and settings, recipes (and their edits in place), the graph, the
//!   store (its lock and seals), build history, output manifests, the pins.
//! - [`mechanisms`]: the download fetcher, HTTP, Debian mirrors, control files, Release files
//!   and version order, kconfig, the quoting of values in shell scripts.
//!
//! Below the engine, as crates of their own (the compiler holds those lines): `reprovm-oci`
//! (layouts, layers, the registry client), `reprovm-sandbox`, and `reprovm-fs` (beneath,
//! archive, archive_write, fields, hash, elf, lock, progress, util).

pub mod mechanisms;
pub mod model;
pub mod ops;
pub mod steps;
#[cfg(test)]
mod testutil;
