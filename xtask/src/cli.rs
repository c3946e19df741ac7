//! Command line: global options, the command list, and dispatch. Nothing else lives here:
//! each command is an args struct with a `run` method in `commands/`, and nothing below this
//! module imports it.

use crate::commands::{
    assemble, attest, audit, bench, boot_test, build, cache, cluster, diff, fetch, gc, menuconfig,
    multiarch, new, nix, pin, plan, pull, push, run, sandbox_exec, store, targets, tool, toolchain,
    update, vagrant, values,
};
use anyhow::{bail, Result};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use reprovm::model::arch::Arch;
use reprovm::model::project::Project;
use reprovm::ops::context::{RunContext, SubstitutionSettings};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "reprovm: bit-for-bit reproducible Linux kernels and disk images from hash-pinned recipes",
    long_about = "reprovm builds a Linux kernel (bzImage + modules) and a bootable ext4 hd.img \
holding busybox, dropbear and iproute2, from recipes in recipes/*.toml whose every input is \
pinned by sha256. Builds run in a hermetic namespace sandbox over a pinned Debian toolchain.\n\n\
First steps:\n  cargo xtask targets            what can be built\n  \
cargo xtask plan hd-image      show the build graph and input hashes\n  \
cargo xtask build hd-image     build out/hd.img and out/bzImage\n  \
cargo xtask run                boot it in QEMU (SSH on 127.0.0.1:10022)\n  \
cargo xtask boot-test          boot it, log in over SSH, check it, power off\n\n\
Environment: REPROVM_ROOT (the project), REPROVM_DEFAULT_ROOT, REPROVM_RECIPES, REPROVM_OUT, \
REPROVM_CACHE, REPROVM_SUBSTITUTERS, REPROVM_TRUSTED_KEYS (as the global options), \
REPROVM_DEBIAN_MIRROR and REPROVM_DEBIAN_SNAPSHOT (where .debs and sources come from), \
REPROVM_REGISTRY_TIMEOUT and REPROVM_REGISTRY_TOKEN_REALMS (registries): \
docs/reference/environment.md.\n\n\
Documentation: README.md and docs/ (docs/reference/commands.md: every command and option).",
    version,
    next_help_heading = "Global options"
)]
pub struct Cli {
    /// Recipe directory (default: recipes/ in the repository).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "REPROVM_RECIPES",
        value_name = "DIR"
    )]
    pub recipes: Option<PathBuf>,
    /// Output directory holding store, cache, logs and links (default: out/).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "REPROVM_OUT",
        value_name = "DIR"
    )]
    pub out: Option<PathBuf>,
    /// Download cache (default: OUT/cache); blobs are stored by sha256.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "REPROVM_CACHE",
        value_name = "DIR"
    )]
    pub cache: Option<PathBuf>,
    /// Local mirror directory tried before the network (files by name or sha256/<hash>); repeatable.
    #[arg(long, global = true, help_heading = "Global options", value_name = "DIR")]
    pub mirror: Vec<PathBuf>,
    /// Use only the cache and --mirror directories; never touch the network.
    #[arg(long, global = true, help_heading = "Global options")]
    pub offline: bool,
    /// Substitute a dependency: `--use kernel=kernel@6.18` builds every `kernel` dependency
    /// (the image's modules and bzImage) at the kernel's version 6.18, `--use kernel=my-kernel`
    /// from recipes/my-kernel.toml. Repeatable. (`build hd-image@6.18` names the same graph.)
    #[arg(long = "use", global = true, value_name = "DEP=NODE")]
    pub uses: Vec<String>,
    /// The architecture to build for: x86_64 (default) or aarch64 (cross-built over
    /// toolchain/aarch64.toml; its pins are pins/outputs-aarch64.toml). Every recipe is the
    /// same, with its `[arch.aarch64]` table merged over it.
    #[arg(long, global = true, help_heading = "Global options", default_value = "x86_64", value_parser = values::parser(&Arch::VALUES))]
    pub arch: Arch,
    /// Development only: build over a root made of host programs instead of the pinned
    /// toolchain. Outputs are marked HOST TOOLCHAIN and are not reproducible across hosts.
    #[arg(long, global = true, help_heading = "Global options")]
    pub host_toolchain: bool,
    /// A binary cache to take store entries, sources and .debs from before building them
    /// (REF: `REGISTRY/REPO`, `http://` for a registry on this machine without TLS);
    /// repeatable.
    #[arg(
        long = "substituter",
        global = true,
        help_heading = "Global options",
        env = "REPROVM_SUBSTITUTERS",
        value_delimiter = ' ',
        value_name = "REF"
    )]
    pub substituters: Vec<String>,
    /// A public key (`cache keygen ci.key` writes it as ci.pub) whose signatures make binary
    /// cache entries trusted; repeatable. Entries signed by no trusted key are never used.
    #[arg(
        long = "trusted-cache-key",
        global = true,
        help_heading = "Global options",
        env = "REPROVM_TRUSTED_KEYS",
        value_delimiter = ' ',
        value_name = "FILE"
    )]
    pub trusted_keys: Vec<PathBuf>,
    /// Fail instead of building a node that no substituter provides.
    #[arg(long, global = true, help_heading = "Global options")]
    pub substitute_only: bool,
    /// Show no status lines and no progress bars (results and errors still).
    #[arg(long, short, global = true, help_heading = "Global options", conflicts_with = "verbose")]
    pub quiet: bool,
    /// Also show each build's log as it is written, each line after its node's name.
    #[arg(long, short, global = true, help_heading = "Global options")]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Download and verify every pinned source (or those of the TARGETs and their dependencies).
    Fetch(fetch::FetchArgs),
    /// Print the build graph of the TARGETs with input hashes and cached/not-cached state.
    Plan(plan::PlanArgs),
    /// Build each TARGET and its dependencies in the sandbox (kernel, busybox, dropbear, iproute2, hd-image, ...).
    Build(build::BuildArgs),
    /// List the targets: name, kind, architectures, versions, and the files each makes.
    Targets(targets::TargetsArgs),
    /// Start a recipe from a source: fetch an upstream tarball (--url) or a Debian source
    /// package's (--debian) once, pin it (sha256, size, every origin) and write
    /// recipes/NAME.toml with a build script for its build system, to edit.
    New(new::NewArgs),
    /// The pinned Debian toolchain: `lock` resolves it, `materialize` (default) builds its root.
    Toolchain(toolchain::ToolchainArgs),
    /// Which pins the Debian archive has moved past (sources in their series, the locks), read
    /// through verified InRelease files; `--check` fails when one has; `--write` moves them.
    Update(update::UpdateArgs),
    /// Run menuconfig for a kernel recipe in the sandbox and record the changes in its last fragment.
    Menuconfig(menuconfig::MenuconfigArgs),
    /// Boot out/bzImage with out/hd.img under QEMU (serial console here, SSH on 127.0.0.1:10022).
    Run(run::RunArgs),
    /// Boot the image, log in over SSH with a fresh key, check uname/ip/modules/modprobe, power off.
    BootTest(boot_test::BootTestArgs),
    /// Clusters of VMs from one kernel and image, xcluster-style: `run` keeps them up,
    /// `test` checks their networks.
    Cluster(cluster::ClusterArgs),
    /// Rebuild targets from scratch under varied conditions and explain any difference.
    Audit(audit::AuditArgs),
    /// Compare two output trees (or two files) and explain every difference: ELF sections,
    /// bzImage payload, ext4 superblock and files, text diffs. Exit code 1 if they differ.
    Diff(diff::DiffArgs),
    /// Nix and other builders: run the xtask's own steps of a [kconfig]/[rootfs]/[image] recipe.
    #[command(hide = true)]
    Assemble(assemble::AssembleArgs),
    /// Record expected output hashes in pins/.
    Pin(pin::PinArgs),
    /// Write the SLSA provenance and CycloneDX SBOM of TARGETS to out/attestations/NODE/,
    /// signed into DSSE envelopes with --sign-key.
    Attest(attest::AttestArgs),
    /// Check DSSE envelopes: a trusted key's signature, an in-toto Statement, and with
    /// --against DIR every subject's digest.
    Verify(attest::VerifyArgs),
    /// Run a command in the build sandbox over the pinned toolchain (empty /build and /out).
    SandboxExec(sandbox_exec::SandboxExecArgs),
    /// Push a recipe's OCI layout to a registry (`push krata-kernel-oci REF`).
    Push(push::PushArgs),
    /// Build an OCI recipe for x86_64 and aarch64 and merge the layouts into one whose every
    /// tag is an image index (linux/amd64, linux/arm64/v8), pinned in pins/multiarch.toml;
    /// with REF, push it.
    Multiarch(multiarch::MultiarchArgs),
    /// Pull an image or artifact from a registry into a new OCI layout directory.
    Pull(pull::PullArgs),
    /// The binary cache on an OCI registry: `push` a closure and its sources, `keygen`.
    Cache(cache::CacheArgs),
    /// Remove store entries, cache files and toolchains that the pins and the last builds do
    /// not reach (`--dry-run` lists them).
    Gc(gc::GcArgs),
    /// The store: `verify` hashes every entry against its manifest (`--repair` makes the
    /// damaged ones again).
    Store(store::StoreArgs),
    /// Run a program of the pinned Nix (pins/nix.lock: Debian trixie's Nix 2.26), e.g.
    /// `cargo xtask nix nix-build -A kernel`, without installing it or touching the host's libc.
    Nix(nix::NixArgs),
    /// Run the pinned Vagrant (pins/vagrant.lock: Debian bookworm's 2.3.4) in the build
    /// sandbox, no network, e.g. `cargo xtask vagrant box add --name reprovm out/reprovm.box`.
    Vagrant(vagrant::VagrantArgs),
    /// Run a program of the pinned host tools (pins/tools.lock: Debian trixie's QEMU, OVMF,
    /// ssh, skopeo, umoci, squashfs-tools, docker-registry, gdisk, fdisk, dosfstools, mtools,
    /// xorriso), e.g. `cargo xtask tool qemu-img info out/efi.vhd`, without installing it.
    Tool(tool::ToolArgs),
    /// Measure: `plan` on a cached graph, warm toolchain materialisation, sandbox overhead.
    Bench(bench::BenchArgs),
    /// Print a shell completion script for the `xtask` binary itself (target/debug/xtask);
    /// cargo's own completion does not reach its aliases.
    Completions {
        /// The shell: bash, elvish, fish, powershell or zsh.
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
}

/// The global options that take a value, as typed (`--out`): what the old-spelling rewrite
/// needs to find the subcommand.
fn global_value_options() -> Vec<String> {
    Cli::command()
        .get_arguments()
        .filter(|a| a.is_global_set() && a.get_action().takes_values())
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .chain(["--trusted-key".to_string()])
        .collect()
}

/// The command line's definition, with `--version` saying the commit and the toolchain.
pub fn command() -> clap::Command {
    let project = Project::new(None, None, None);
    let version = reprovm::ops::version::describe(&project, env!("CARGO_PKG_VERSION"));
    Cli::command().version(version.clone()).long_version(version)
}

/// Parse the command line and run the command; returns the process exit code.
pub fn run() -> Result<i32> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Old spellings are all UTF-8: a command line with a non-UTF-8 word (a path) is parsed as
    // it is.
    let words: Option<Vec<String>> = args.iter().map(|a| a.to_str().map(String::from)).collect();
    let argv: Vec<std::ffi::OsString> = match words {
        Some(words) if !words.is_empty() => {
            let rewritten = crate::legacy::rewrite(&words[1..], &global_value_options());
            for w in &rewritten.warnings {
                eprintln!("{w}");
            }
            words[..1].iter().chain(&rewritten.args).map(Into::into).collect()
        }
        _ => args,
    };
    let matches = command().get_matches_from(argv);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // Status lines of the engine go to stderr (results to stdout), none with --quiet.
    reprovm_fs::progress::set_level(cli.quiet, cli.verbose);
    if cli.quiet {
        reprovm_fs::progress::set_sink(|_| {});
    } else {
        reprovm_fs::progress::set_sink(|line| eprintln!("{line}"));
    }
    for (flag, dir) in [("--out", &cli.out), ("--cache", &cli.cache), ("--recipes", &cli.recipes)] {
        if let Some(d) = dir {
            if d.exists() && !d.is_dir() {
                bail!("{flag} {}: not a directory", d.display());
            }
        }
    }
    for k in &cli.trusted_keys {
        if !k.is_file() {
            bail!(
                "--trusted-cache-key {}: no such file (a public key `cache keygen` wrote)",
                k.display()
            );
        }
    }
    for m in &cli.mirror {
        if !m.is_dir() {
            bail!(
                "--mirror {}: not a directory (give a directory holding sources by file name or as sha256/<hash>)",
                m.display()
            );
        }
    }
    let mut project = Project::new(cli.recipes, cli.out, cli.cache);
    project.host_toolchain = cli.host_toolchain;
    project.uses = cli.uses;
    project.arch = cli.arch;
    if cli.host_toolchain && !cli.arch.is_default() {
        bail!("--host-toolchain builds for x86_64 only; drop it to build for {} over the pinned cross toolchain", cli.arch);
    }
    let substitution = SubstitutionSettings {
        repositories: cli.substituters,
        trusted_keys: cli.trusted_keys,
        only: cli.substitute_only,
    };
    let mut ctx = RunContext::new(project, cli.mirror, cli.offline, substitution)?;
    match cli.command {
        Command::Fetch(args) => args.run(&ctx),
        Command::Plan(args) => args.run(&ctx),
        Command::Build(args) => args.run(&ctx),
        Command::Toolchain(args) => args.run(&ctx),
        Command::Update(args) => args.run(&ctx),
        Command::Menuconfig(args) => args.run(&ctx),
        Command::Run(args) => args.run(&ctx),
        Command::BootTest(args) => args.run(&ctx),
        Command::Cluster(args) => args.run(&ctx),
        Command::Targets(args) => args.run(&ctx),
        Command::New(args) => args.run(&ctx),
        Command::Audit(args) => args.run(&ctx),
        Command::Diff(args) => args.run(&ctx),
        Command::Assemble(args) => args.run(&ctx),
        Command::Pin(args) => args.run(&ctx),
        Command::Attest(args) => args.run(&ctx),
        Command::Verify(args) => args.run(),
        Command::SandboxExec(args) => args.run(&ctx),
        Command::Nix(args) => args.run(&ctx),
        Command::Vagrant(args) => args.run(&ctx),
        Command::Tool(args) => args.run(&ctx),
        Command::Push(args) => args.run(&ctx),
        Command::Pull(args) => args.run(),
        Command::Multiarch(args) => args.run(&mut ctx),
        Command::Cache(args) => args.run(&ctx),
        Command::Gc(args) => args.run(&ctx),
        Command::Store(args) => args.run(&mut ctx),
        Command::Bench(args) => args.run(&ctx),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "xtask", &mut std::io::stdout());
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// A subcommand argument named like a global one (bench substitute's `--cache` once) is a
    /// panic when the matches are read, not a parse error: parse such commands here.
    #[test]
    fn commands_with_values_parse_into_their_structs() {
        for argv in [
            &["xtask", "bench", "substitute", "--registry", "http://127.0.0.1:5000/b", "busybox"][..],
            &["xtask", "--cache", "/tmp/c", "cache", "push", "top", "http://127.0.0.1:5000/c"][..],
            &["xtask", "boot-test", "--target", "efi-vhd"][..],
            &["xtask", "pin", "debian", "rootfs-net", "--keyring", "/k"][..],
            &["xtask", "new", "x", "--debian", "x", "--suite", "bookworm"][..],
            &["xtask", "cache", "push", "busybox", "dropbear", "http://127.0.0.1:5000/c"][..],
            &["xtask", "plan", "--matrix", "--json", "kernel"][..],
            &["xtask", "multiarch", "--matrix", "--pin", "http://127.0.0.1:5000/p"][..],
            &["xtask", "boot-test", "--check", "true", "--check", "test -b /dev/nbd0"][..],
            &[
                "xtask",
                "verify",
                "--image",
                "http://127.0.0.1:5000/k:1",
                "--trusted-attestation-key",
                "k",
            ][..],
            &["xtask", "cache", "cosign-key", "ci.key"][..],
            &["xtask", "build", "--max-nodes", "2", "hd-image"][..],
            &["xtask", "bench", "schedule", "busybox", "--max-nodes", "3"][..],
        ] {
            Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        }
    }
}
