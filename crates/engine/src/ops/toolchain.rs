//! The commands over the pinned package sets: `toolchain lock` (each set resolved through the
//! archive's verified indexes), `toolchain materialize` and `show`, `sandbox-exec` (a command
//! in the sandbox over the build toolchain) and `vagrant` (the pinned Vagrant in the sandbox).
//! `tool` and `nix` (a pinned program, as a command for the caller to run) are here too. The
//! command line only parses and renders; the store lock and the roots are taken here.

use crate::ops::context::RunContext;
use crate::steps::host_tools::HostTools;
use crate::steps::toolchain::{self, archive::Archive};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use crate::steps::toolchain::PackageSet;

/// What a program an operation ran for the user did (`sandbox-exec`, `vagrant`): its exit
/// code, which the command line passes on, and its output, which the command line shows.
pub use reprovm_sandbox::ProgramRun;

/// `toolchain lock [SET...]`: resolve the sets (all when none is named), every index read
/// through its suite's InRelease, verified with `keyring` or the pinned one.
pub fn lock(ctx: &RunContext, sets: &[PackageSet], keyring: Option<&Path>) -> Result<()> {
    let archive = Archive::open(&ctx.project, &ctx.fetcher, keyring)?;
    let sets = if sets.is_empty() { &PackageSet::ALL[..] } else { sets };
    toolchain::lock(&ctx.project, &archive, sets)
}

/// `toolchain materialize`: the build toolchain's root, made if it is not yet.
pub fn materialize(ctx: &RunContext) -> Result<PathBuf> {
    let lock = crate::model::store::store_shared(&ctx.project.out)?;
    Ok(toolchain::ensure(&ctx.project, &ctx.fetcher, &lock)?.root)
}

/// `toolchain show`: the toolchain's identity (what every input hash covers).
pub fn identity(ctx: &RunContext) -> Result<String> {
    toolchain::identity(&ctx.project)
}

/// `sandbox-exec CMD`: run `cmd` in the build sandbox over the toolchain (empty /build and
/// /out), its output passed through.
pub fn sandbox_exec(ctx: &RunContext, cmd: &[String]) -> Result<ProgramRun> {
    let root = materialize(ctx)?;
    reprovm_sandbox::exec_capture(&root, cmd, crate::model::recipe::DEFAULT_SOURCE_DATE_EPOCH)
}

/// `tool --list`: the programs of the pinned host tools (pins/tools.lock), materialised.
pub fn host_tool_programs(ctx: &RunContext) -> Result<Vec<String>> {
    HostTools::get(&ctx.project, &ctx.fetcher)?.programs()
}

/// `tool PROGRAM ARGS`: the command running the pinned host tool `program` (pins/tools.lock;
/// for the archive's verifier and sq, pins/archive.lock; for cosign, pins/cosign.lock) with
/// `args`.
pub fn host_tool(ctx: &RunContext, program: &str, args: &[String]) -> Result<Command> {
    if program == "cosign" {
        return HostTools::cosign(&ctx.project, &ctx.fetcher)?.command_with_args(program, args);
    }
    let tools = HostTools::get(&ctx.project, &ctx.fetcher)?;
    let tools = match tools.has(program) {
        true => tools,
        false => match HostTools::archive(&ctx.project, &ctx.fetcher)? {
            archive if archive.has(program) => archive,
            _ => tools,
        },
    };
    tools.command_with_args(program, args)
}

/// `nix PROGRAM ARGS`: the command running the pinned Nix's `program` (pins/nix.lock) with
/// `args`. Nix runs beside builds: the store lock is taken only to materialise it.
pub fn nix(ctx: &RunContext, program: &str, args: &[String]) -> Result<Command> {
    let tools = toolchain::find_or_ensure_set(&ctx.project, &ctx.fetcher, PackageSet::Nix)?;
    let mut c = toolchain::nix_command(&tools.root, program)?;
    c.args(args);
    Ok(c)
}

/// `vagrant ARGS`: the pinned Vagrant in the build sandbox over its own root, with `dir` at
/// /build (default: the current directory) and its home (its boxes) at /out (default:
/// `out/vagrant.d`), no network.
pub fn vagrant(
    ctx: &RunContext,
    dir: Option<&Path>,
    home: Option<&Path>,
    argv: &[String],
) -> Result<ProgramRun> {
    let project = &ctx.project;
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => std::env::current_dir()?,
    };
    anyhow::ensure!(dir.is_dir(), "--dir {}: no such directory", dir.display());
    let home = home.map(Path::to_path_buf).unwrap_or_else(|| project.out.join("vagrant.d"));
    anyhow::ensure!(!home.exists() || home.is_dir(), "--home {}: not a directory", home.display());
    let root = toolchain::find_or_ensure_set(project, &ctx.fetcher, PackageSet::Vagrant)?.root;
    std::fs::create_dir_all(&home)?;
    let env = [
        ("VAGRANT_HOME", "/out"),
        ("HOME", "/out"),
        // No network in the sandbox: no version checks, no plugin index.
        ("VAGRANT_CHECKPOINT_DISABLE", "1"),
        ("VAGRANT_DISABLE_VBOXSYMLINKCREATE", "1"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let cmd: Vec<String> =
        std::iter::once("/usr/bin/vagrant".to_string()).chain(argv.iter().cloned()).collect();
    reprovm_sandbox::exec_in(
        &root,
        (&dir, &home),
        &env,
        &cmd,
        crate::model::recipe::DEFAULT_SOURCE_DATE_EPOCH,
    )
}
