//! Operations: what the commands do, over a project.

pub mod assemble;
pub mod attest;
pub mod audit;
pub mod bench;
pub mod boot;
pub mod build;
pub mod cache_push;
pub mod cluster;
pub mod context;
pub mod cosign;
pub mod diff;
pub mod fetch;
pub mod gc;
pub mod matrix;
pub mod menuconfig;
pub mod multiarch;
pub mod new_recipe;
pub mod pin;
pub mod plan;
pub mod publish;
pub(crate) mod schedule;
pub mod store;
pub mod targets;
pub mod toolchain;
pub mod update;
pub mod version;
