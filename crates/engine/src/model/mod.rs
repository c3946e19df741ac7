//! The model: where a project lives and what it says (recipes, the graph, the pins), and what
//! builds leave (the store, its lock, output manifests, the build history).

pub mod arch;
pub(crate) mod attestation;
pub(crate) mod graph;
pub(crate) mod history;
pub(crate) mod manifest;
pub mod pins;
pub mod project;
pub mod recipe;
pub(crate) mod step_versions;
pub(crate) mod store;
