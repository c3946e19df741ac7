//! reprovm: a `cargo xtask` that turns hash-pinned recipes into bit-for-bit reproducible
//! kernels and disk images. See ARCHITECTURE.md for the map of this crate.

mod archive;
mod assemble;
mod audit;
mod bench;
mod build;
mod cli;
mod debian;
mod elf;
mod explain;
mod fetch;
mod graph;
mod hash;
mod image;
mod kconfig;
mod lock;
mod manifest;
mod plan;
mod progress;
mod project;
mod qemu;
mod recipe;
mod sandbox;
mod store;
#[cfg(test)]
mod testutil;
mod toolchain;

fn main() {
    // The sandbox re-executes this binary as its namespace init: handle that before clap.
    if let Some(code) = sandbox::maybe_run_init() {
        std::process::exit(code);
    }
    if let Err(err) = cli::run() {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
