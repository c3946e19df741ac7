//! reprovm's OCI format: image layers written deterministically from a directory (`layer`),
//! image layouts on disk, written as canonical JSON and read back verified (`layout`), and a
//! client for the distribution protocol that treats every registry as hostile (`client`).

pub mod client;
pub mod layer;
pub mod layout;
pub mod spec;

pub const CREATED: &str = "org.opencontainers.image.created";
pub const VERSION: &str = "org.opencontainers.image.version";
pub const REVISION: &str = "org.opencontainers.image.revision";
pub const TITLE: &str = "org.opencontainers.image.title";
/// The recipes digest of the recipe that made a layout (`revision` defaults to it).
pub const RECIPES: &str = "dev.reprovm.recipes";
