# Evaluates flake.nix's outputs function offline, with a stand-in for nixpkgs built from
# pinned-toolchain-pkgs.nix (xtask/tests/testsuite/nix.rs). It checks the flake's wiring (which packages,
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
    nameValuePair = name: value: {inherit name value;};
    mapAttrs' = f: set: builtins.listToAttrs (map (n: f n set.${n}) (builtins.attrNames set));
    foldl' = builtins.foldl';
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
    // genAttrs ["cargo" "clippy" "rustfmt" "qemu_kvm" "qemu-utils" "openssh" "util-linux" "e2fsprogs" "alejandra" "dpkg"] (tool system)
    // {
      rustc = tool system "rustc" // {version = "1.94.0";};
      pkgsCross.aarch64-multiplatform = crossFor system;
    };
  # nixpkgs' cross set for arm64 as far as nix/nixpkgs-cross.nix and nix/package.nix use it:
  # a cross compiler with nixpkgs' prefix, the build machine's packages in `buildPackages`
  # (whose pkg-config and stdenv.cc are named for where they run), the target's libraries
  # and tools as its own packages (named `-aarch64`, so that a tool taken from the wrong set
  # shows). Its derivations keep their inputs (nativeInputs, hostInputs) for the test to read.
  crossFor = system: let
    base = import ./pinned-toolchain-pkgs.nix {inherit xtaskBin system;};
    named = suffix: names: genAttrs names (n: tool system "${n}${suffix}");
    prefix = "aarch64-unknown-linux-gnu-";
  in
    base
    // named "-aarch64" ["bc" "perl" "pkg-config" "e2fsprogs" "qemu-utils" "dosfstools" "mtools" "xorriso" "zlib" "libxcrypt" "elfutils" "openssl"]
    // {
      stdenv = {
        mkDerivation = a:
          base.stdenv.mkDerivation (a
            // {
              nativeInputs = a.nativeBuildInputs or [];
              hostInputs = a.buildInputs or [];
            });
        cc =
          tool system "${prefix}gcc-wrapper"
          // {
            targetPrefix = prefix;
            bintools = tool system "${prefix}binutils-wrapper";
          };
      };
      buildPackages =
        pkgsFor system
        // named "-build" ["bc" "perl" "e2fsprogs" "qemu-utils" "dosfstools" "mtools" "xorriso" "elfutils" "openssl"]
        // {
          pkg-config = tool system "${prefix}pkg-config-wrapper";
          stdenv.cc = tool system "gcc-wrapper-build";
        };
    };
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
  # What an arm64 derivation is made of: its build script, its inputs by name, and the
  # script that gives nixpkgs' cross tools Debian's names (with the paths it links to).
  aarch64 = let
    inputs = p: map (d: d.name) p;
    rootfs = x86.rootfs-aarch64;
    toolNames = builtins.head (builtins.filter (d: d.name == "reprovm-aarch64-tool-names") rootfs.nativeInputs);
    cc = outputs.packages.x86_64-linux.busybox-aarch64.depsBuildBuild;
    crossCc = nixpkgs.legacyPackages.x86_64-linux.pkgsCross.aarch64-multiplatform.stdenv.cc;
  in {
    script = builtins.elemAt rootfs.args 1;
    hdImageScript = builtins.elemAt x86.hd-image-aarch64.args 1;
    nativeInputs = inputs rootfs.nativeInputs;
    hdImageNativeInputs = inputs x86.hd-image-aarch64.nativeInputs;
    hostInputs = inputs rootfs.hostInputs;
    depsBuildBuild = inputs cc;
    toolNamesScript = builtins.elemAt toolNames.args 1;
    efiImageNativeInputs = inputs x86.efi-image-aarch64.nativeInputs;
    crossCc = "${crossCc}";
    crossBintools = "${crossCc.bintools}";
  };
  # The media's UEFI stubs, per architecture: the package's `efiStubs`, the .deb it unpacks
  # (name and pinned hash) and the script.
  efiStubs = let
    ofImage = p: {
      script = builtins.elemAt p.efiStubs.args 1;
      storePath = "${p.efiStubs}";
      deb = {inherit (p.efiStubs.deb) name outputHash;};
      buildScript = builtins.elemAt p.args 1;
    };
    of = suffix:
      {
        isoScript = builtins.elemAt x86."iso${suffix}".args 1;
        hdImageHasStubs = x86."hd-image${suffix}" ? efiStubs;
      }
      // ofImage x86."efi-image${suffix}";
  in {
    x86_64 = of "";
    aarch64 = of "-aarch64";
  };
}
