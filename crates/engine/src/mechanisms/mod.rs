//! Mechanisms: fetching pinned files from their origins, the one HTTP client, Debian mirrors
//! and snapshot archives, Debian's control-file format, Release files and version order,
//! kernel configs, and the quoting of values in shell scripts.

pub mod deb822;
pub mod debian;
pub mod debian_release;
pub mod debian_version;
pub mod fetch;
pub mod http;
pub mod kconfig;
pub mod shell;
