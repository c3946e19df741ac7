//! The commands: one module per command, holding its arguments (clap) and its `run`, which
//! turns them into an operation's options, calls it (`reprovm::ops`) and renders its result;
//! `tool`, `nix` and `vagrant` run the program the operation gives them.

pub mod assemble;
pub mod attest;
pub mod audit;
pub mod bench;
pub mod boot_test;
pub mod build;
pub mod cache;
pub mod cluster;
pub mod diff;
pub mod fetch;
pub mod gc;
pub mod menuconfig;
pub mod multiarch;
pub mod new;
pub mod nix;
pub mod pin;
pub mod plan;
pub mod pull;
pub mod push;
pub mod run;
pub mod sandbox_exec;
pub mod store;
pub mod targets;
pub mod tool;
pub mod toolchain;
pub mod update;
pub mod vagrant;
pub mod values;

/// Replace this process with `c` (its exit status becomes ours); returns only on failure.
fn exec(mut c: std::process::Command) -> anyhow::Result<i32> {
    let e = std::os::unix::process::CommandExt::exec(&mut c);
    Err(anyhow::Error::new(e).context(format!("running {}", reprovm_fs::util::display_command(&c))))
}
