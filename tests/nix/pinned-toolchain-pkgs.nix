# A package set for nix/package.nix made of nothing but the pinned Debian toolchain, used by
# xtask/tests/testsuite/nix.rs to build the flake's derivations for real with Nix on a machine without
# nixpkgs. Nix's own sandbox runs the builds; the test mounts the toolchain root at /usr, /bin,
# /lib, ... inside it (extra-sandbox-paths), so every tool is the pinned one and the outputs can
# be compared with the xtask's byte for byte.
#
# fetchurl is a real fixed-output derivation; with no network the test first adds each pinned
# source to the store with `nix-store --add-fixed sha256 FILE` (same path, same hash).
{
  xtaskBin,
  system ? "x86_64-linux",
}: let
  PATH = "/usr/bin:/usr/sbin";
  sh = script: ["-euc" script];
in rec {
  fetchurl = {
    name,
    sha256,
    urls,
  }:
    builtins.derivation {
      inherit name system PATH;
      builder = "/bin/sh";
      args = sh "echo 'no network: add ${name} with nix-store --add-fixed sha256' >&2; exit 1";
      urls = builtins.concatStringsSep " " urls;
      outputHashMode = "flat";
      outputHashAlgo = "sha256";
      outputHash = sha256;
    };

  writeText = builtins.toFile;

  runCommand = name: env: script:
    builtins.derivation (env
      // {
        inherit name system PATH;
        builder = "/bin/bash";
        args = sh script;
      });

  stdenv.mkDerivation = a:
    builtins.derivation (builtins.removeAttrs a [
        "pname"
        "version"
        "nativeBuildInputs"
        "buildInputs"
        "buildPhase"
        "dontUnpack"
        "dontConfigure"
        "dontInstall"
        "dontFixup"
        "hardeningDisable"
      ]
      // {
        name = "${a.pname}-${a.version}";
        inherit system PATH;
        builder = "/bin/bash";
        args = sh a.buildPhase;
      });

  # The xtask binary the test runs (cargo's), copied into the store.
  xtask =
    runCommand "reprovm-xtask" {
      bin = builtins.path {
        path = xtaskBin;
        name = "xtask";
      };
    } ''
      mkdir -p $out/bin
      cp $bin $out/bin/xtask
    '';
}
