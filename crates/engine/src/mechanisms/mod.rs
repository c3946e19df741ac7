//! Mechanisms: fetching pinned files from their origins, the one HTTP client, Debian mirrors
//! and snapshot archives, Debian's control-file format, kernel configs.

pub mod deb822;
pub mod debian;
pub mod fetch;
pub mod http;
pub mod kconfig;
