//! What every step is given: how to run a shell step ([`ScriptRunner`]: the xtask's sandbox
//! over the pinned toolchain, or `sh` inside another builder's sandbox) and the host paths it
//! reads and writes ([`StepPaths`]). The step sequence (`sequence.rs`) and the steps share it.

use anyhow::Result;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Runs a recipe's shell steps where its tools are: the xtask's sandbox over the pinned
/// toolchain, or `sh` on PATH inside another builder's sandbox.
pub(crate) trait ScriptRunner {
    /// The build directory as scripts see it (`/build` in the xtask's sandbox).
    fn build_dir(&self) -> &Path;
    /// Run `script` with `sh -eu` as the phase named `phase`; a non-zero exit is an error.
    fn run_script(&self, phase: &str, script: &str) -> Result<()>;
    /// Where scripts find systemd's UEFI stubs (`linuxx64.efi.stub`, `linuxaa64.efi.stub`):
    /// the pinned toolchain's by default, as the xtask's sandbox mounts it at /usr; another
    /// builder may have them elsewhere (`assemble --efi-stubs`).
    fn efi_stub_dir(&self) -> &Path {
        Path::new(EFI_STUB_DIR)
    }
}

/// systemd's UEFI stubs in the toolchain (Debian's systemd-boot-efi).
pub(crate) const EFI_STUB_DIR: &str = "/usr/lib/systemd/boot/efi";

/// What the steps read and write, as host paths.
pub(crate) struct StepPaths<'a> {
    /// The recipe directory (overlays are read beneath it).
    pub recipes: &'a Path,
    /// The build directory (recipe files at `files/`, the configured tree).
    pub build: &'a Path,
    /// Output directories of the dependencies, by dependency name.
    pub deps: &'a BTreeMap<String, PathBuf>,
    /// The node's output directory (`$OUT`).
    pub out: &'a Path,
    /// Root in which shared libraries of installed programs are looked up: the pinned
    /// toolchain for the xtask, `/` inside a Nix build.
    pub lib_root: &'a Path,
}
