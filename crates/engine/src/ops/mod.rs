//! Operations: what the commands do, over a project.

pub mod assemble;
pub mod audit;
pub mod bench;
pub mod boot;
pub mod build;
pub mod gc;
pub mod menuconfig;
pub mod plan;
pub mod publish;
