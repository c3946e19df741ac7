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
//! The public surface. Everything is private to the crate (`pub(crate)`) unless a caller
//! outside it uses it, so that a change inside a step, the store or a mechanism cannot break
//! one; `xtask/tests/testsuite/repo.rs` holds the command line to the first two lines:
//!
//! - [`ops`]: one module per command (build, audit, gc, store, update, publish, cache_push,
//!   attest, pin, plan, fetch, diff, boot, cluster, menuconfig, multiarch, toolchain, bench,
//!   assemble): functions over a [`ops::context::RunContext`] that return data (reports,
//!   paths, `ProgramRun`, the `Command` of a pinned program) and print nothing; progress
//!   goes through `reprovm_fs::progress`, whose sink the caller sets.
//! - The values they take: [`model::arch::Arch`] and [`model::project::Project`].
//! - For the test suite, which checks the engine's own facts from outside: the pinned targets
//!   (`model::pins::DEFAULT_TARGETS`), the `[arch.NAME]` merge and version order
//!   (`model::recipe::merge_table`, `model::recipe::placeholders::compare_versions`), the
//!   binary cache's signed entries and keys (`steps::substitution::{entry, keys}`, to forge
//!   what a hostile registry serves) and the configured Debian mirrors
//!   (`mechanisms::debian::mirrors`).
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
