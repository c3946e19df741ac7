//! The command line's test suite: one binary (as cargo's own `tests/testsuite`), one module
//! per subject, the helpers in `support`. One binary links the engine once, where one per
//! subject linked it sixteen times.
//!
//! Two tiers. `cargo test` runs the fast tier: unit tests and tiny synthetic recipes built in
//! the real sandbox, in seconds, without downloading anything. The full tier's tests are
//! `#[ignore = "full tier: …"]`, so a plain `cargo test` counts them as ignored, never as
//! passed: the real pipeline (sources, toolchain, kernels, images, boots, audits), the pinned
//! host tools and the pinned Nix, and the checks that need root. `REPROVM_FULL=1 cargo test
//! -- --include-ignored` (README, docs/guide/testing.md) runs everything; a full-tier test run without
//! `REPROVM_FULL=1` fails at once and says so. Full-tier tests hold one lock
//! (`support::full_tier`), so that two of them never run together in the repository's out/;
//! fast tests, each in a temporary directory of its own, may run beside one.

mod support;

mod aarch64;
mod assemble;
mod attest;
mod cache;
mod cli;
mod cluster;
mod concurrency;
mod cosign;
mod farm;
mod full;
mod grow;
mod kernels;
mod media;
mod net;
mod new;
mod nix;
mod oci;
mod provenance;
mod registry;
mod repo;
mod sandbox;
mod update;
