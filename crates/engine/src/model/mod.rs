//! The model: where a project lives and what it says (recipes, the graph, the pins), and what
//! builds leave (the store, its lock, output manifests, the build history).

pub mod arch;
pub mod attestation;
pub mod graph;
pub mod history;
pub mod manifest;
pub mod pins;
pub mod project;
pub mod recipe;
pub mod step_versions;
pub mod store;
