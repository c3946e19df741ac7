//! reprovm: a `cargo xtask` that turns hash-pinned recipes into bit-for-bit reproducible
//! kernels and disk images. See ARCHITECTURE.md for the map of this crate.

mod archive;
mod assemble;
mod audit;
mod bench;
mod beneath;
mod build;
mod cache;
mod cli;
mod deb822;
mod debian;
mod elf;
mod explain;
mod fetch;
mod gc;
mod graph;
mod hash;
mod host_tools;
mod http;
mod image;
mod kconfig;
mod lock;
mod manifest;
mod media;
mod menuconfig;
mod oci;
mod pins;
mod plan;
mod progress;
mod project;
mod qemu;
mod recipe;
mod results;
mod rootfs;
mod sandbox;
mod sources;
mod steps;
mod store;
#[cfg(test)]
mod testutil;
mod toolchain;
mod util;

fn main() {
    // The sandbox re-executes this binary as its namespace init: handle that before clap.
    if let Some(code) = sandbox::maybe_run_init() {
        std::process::exit(code);
    }
    match cli::run() {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::exit(1);
        }
    }
}
