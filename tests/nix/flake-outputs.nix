# Evaluates flake.nix's outputs function offline, with a stand-in for nixpkgs built from
# pinned-toolchain-pkgs.nix (xtask/tests/nix.rs). It checks the flake's wiring (which packages,
# checks and apps exist on which system, which sources each derivation depends on, that every
# derivation instantiates and that the nixpkgs it gets is the one flake.lock pins), not nixpkgs
# itself. `root` is the checkout to evaluate (the tests pass edited copies).
{
  xtaskBin,
  root ? ../..,
}: let
  # As Nix evaluates a flake: from a copy of its source in the store, so that a path into it
  # (./x in flake.nix) is a path into that one store path, as with the real flake. Like a flake
  # in a git checkout, without what git ignores (build outputs: gigabytes once a kernel is
  # built, and copying them made this evaluation take minutes).
  ignored = ["out" "target" ".git" "tools/alejandra/target"];
  src = builtins.path {
    path = root;
    name = "source";
    filter = p: _: let
      rel = builtins.substring (builtins.stringLength (toString root) + 1) (-1) (toString p);
    in
      !(builtins.elem rel ignored);
  };
  flake = import (src + "/flake.nix");
  lock = builtins.fromJSON (builtins.readFile (src + "/flake.lock"));
  lockedNode = lock.nodes.${lock.nodes.${lock.root}.inputs.nixpkgs};

  hasPrefix = p: s: builtins.substring 0 (builtins.stringLength p) s == p;
  genAttrs = names: f:
    builtins.listToAttrs (map (n: {
        name = n;
        value = f n;
      })
      names);
  # Each lib function the flake uses, with nixpkgs' meaning (lib/fileset, lib/strings, lib/asserts).
  lib = {
    inherit genAttrs;
    versionAtLeast = v: min: builtins.compareVersions v min >= 0;
    assertMsg = ok: msg: ok || throw msg;
    fileset = {
      unions = l: l;
      # A store path holding exactly the given files and directories (and their parents).
      toSource = {
        root,
        fileset,
      }: let
        wanted = map toString (
          if builtins.isList fileset
          then fileset
          else [fileset]
        );
        keep = p: _: builtins.any (f: p == f || hasPrefix (f + "/") p || hasPrefix (p + "/") f) wanted;
      in
        builtins.path {
          path = root;
          name = "source";
          filter = keep;
        };
    };
  };

  pkgsFor = system: let
    base = import ./pinned-toolchain-pkgs.nix {inherit xtaskBin system;};
  in
    base
    // {
      # A derivation of the source it is given: what the real one depends on.
      rustPlatform.buildRustPackage = a:
        builtins.derivation {
          name = "${a.pname}-${a.version}";
          inherit system;
          inherit (a) src;
          builder = "/bin/sh";
          # As importCargoLock may: the lock file as a path (its store path is a dependency).
          lock = "${a.cargoLock.lockFile}";
        };
      writeShellScriptBin = name: text:
        builtins.derivation {
          inherit name system text;
          builder = "/bin/sh";
        };
      mkShell = a:
        builtins.derivation {
          name = "shell";
          inherit system;
          builder = "/bin/sh";
          tools = map (p: p.pname) a.packages;
        };
    }
    // genAttrs ["cargo" "clippy" "rustfmt" "qemu_kvm" "qemu-utils" "openssh" "util-linux" "e2fsprogs" "alejandra"] (tool system)
    // {rustc = tool system "rustc" // {version = "1.94.0";};};
  # A named placeholder package (only its name is looked at).
  tool = system: name:
    builtins.derivation {
      inherit name system;
      pname = name;
      builder = "/bin/sh";
    };

  # What Nix passes as the `nixpkgs` input: the tree flake.lock pins, with its lock attributes.
  nixpkgs = {
    inherit lib;
    inherit (lockedNode.locked) rev narHash lastModified;
    legacyPackages = genAttrs ["x86_64-linux" "aarch64-linux"] pkgsFor;
  };
  outputs = flake.outputs {
    self = outputs;
    inherit nixpkgs;
  };
  names = builtins.mapAttrs (_: builtins.attrNames);
  x86 = outputs.packages.x86_64-linux;
in {
  inputUrl = flake.inputs.nixpkgs.url;
  inherit (lockedNode) locked original;
  packages = names outputs.packages;
  checks = names outputs.checks;
  devShells = names outputs.devShells;
  devShellTools = outputs.devShells.x86_64-linux.default.tools;
  formatter = outputs.formatter.x86_64-linux.pname;
  apps = builtins.mapAttrs (_: a: a.default.type) outputs.apps;
  appText = x86.reprovm.text;
  drvs = builtins.mapAttrs (_: p: p.drvPath) (x86 // outputs.checks.x86_64-linux);
}
