//! Mechanisms: fetching pinned files from their origins, the one HTTP client, Debian mirrors
//! and snapshot archives, Debian's control-file format, Release files and version order,
//! kernel configs, and the quoting of values in shell scripts.

pub(crate) mod deb822;
pub mod debian;
pub(crate) mod debian_release;
pub(crate) mod debian_version;
pub(crate) mod fetch;
pub(crate) mod http;
pub(crate) mod kconfig;
pub(crate) mod shell;
