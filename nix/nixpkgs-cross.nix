# nixpkgs as a package set for nix/package.nix with a `targetArch` other than the build
# machine's: the flake's arm64 targets, cross-built from x86_64-linux as the xtask builds them.
#
# The recipes' [arch.aarch64] tables name Debian's cross tools (`aarch64-linux-gnu-gcc`,
# `CROSS_COMPILE=aarch64-linux-gnu-`: model::Arch's binutils prefix), which nixpkgs spells
# `aarch64-unknown-linux-gnu-`. So this is nixpkgs' own cross set for the architecture, whose
# `buildPackages` supply the build machine's tools and whose packages are the target's
# libraries (as nix/package.nix takes them), and every derivation also gets:
#   - the cross compiler and binutils under Debian's names (symlinks to nixpkgs' wrappers,
#     which keep finding the target's libraries through their own environment);
#   - the build machine's compiler as `cc`/`gcc` (depsBuildBuild, as nixpkgs' kernel has it):
#     the kernel's and busybox's host programs (kconfig, fixdep) are built with it.
# pkg-config needs nothing more: nixpkgs' cross pkg-config sets $PKG_CONFIG, which iproute2's
# configure uses before plain `pkg-config`, and searches the target's libraries only.
#
# Outputs differ from the xtask's pins, as they do on x86_64 over nixpkgs: other compilers,
# another glibc, libraries found through RUNPATH into /nix/store (docs/guide/nix.md).
{
  pkgs,
  targetArch,
}: let
  # reprovm's architecture -> nixpkgs' cross system and Debian's tool prefix.
  targets = {
    aarch64 = {
      system = "aarch64-multiplatform";
      debianPrefix = "aarch64-linux-gnu-";
    };
  };
  target =
    targets.${targetArch}
    or (throw "nix/nixpkgs-cross.nix: no cross package set for targetArch = \"${targetArch}\" (known: ${builtins.concatStringsSep ", " (builtins.attrNames targets)})");
  cross = pkgs.pkgsCross.${target.system};
  inherit (cross.stdenv) cc;
  nixPrefix = cc.targetPrefix;

  # Debian's names for nixpkgs' cross tools. The compiler wrapper's bin/ already links every
  # binutils name (cc-wrapper's installPhase); the binutils wrapper's own are a fallback for
  # a name it lacks, so the compiler wrapper's link wins where both have one.
  debianToolNames = pkgs.runCommand "reprovm-${targetArch}-tool-names" {} ''
    mkdir -p $out/bin
    for tool in ${cc}/bin/${nixPrefix}* ${cc.bintools}/bin/${nixPrefix}*; do
      name=''${tool##*/}
      link="$out/bin/${target.debianPrefix}''${name#${nixPrefix}}"
      [ -e "$link" ] || ln -s "$tool" "$link"
    done
    [ -e "$out/bin/${target.debianPrefix}gcc" ] && [ -e "$out/bin/${target.debianPrefix}objcopy" ] || {
      echo "no ${nixPrefix}gcc or ${nixPrefix}objcopy in ${cc} / ${cc.bintools}" >&2
      exit 1
    }
  '';
in
  cross
  // {
    stdenv =
      cross.stdenv
      // {
        mkDerivation = args:
          cross.stdenv.mkDerivation (args
            // {
              depsBuildBuild = (args.depsBuildBuild or []) ++ [cross.buildPackages.stdenv.cc];
              nativeBuildInputs = [debianToolNames] ++ (args.nativeBuildInputs or []);
            });
      };
  }
