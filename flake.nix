{
  description = "reprovm: reproducible Linux VM kernels and disk images from hash-pinned recipes";

  # A supported NixOS release, pinned by flake.lock (rev and narHash; docs/guide/nix.md says where
  # they came from and how to move to the next release). nixos-26.05 has Nix >= 2.18 as its
  # minimum and a rustc that satisfies Cargo.toml's rust-version (asserted below).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  # The recipes (recipes/*.toml) are the single source of pins: nix/recipe.nix reads them with
  # builtins.fromTOML and every source becomes fetchurl { urls = all origins; sha256 = pin; }.
  # nix/package.nix turns recipes into derivations; nix/checks.nix rebuilds and compares them.
  outputs = {
    self,
    nixpkgs,
  }: let
    inherit (nixpkgs) lib;
    fs = lib.fileset;
    systems = ["x86_64-linux" "aarch64-linux"];
    forAll = f: lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});

    # Every derivation sees only its own sources, never a path into the flake's source (which
    # would make it depend on the whole checkout): a README edit changes no derivation, a
    # recipe edit does not rebuild the xtask. The xtask's source is the Cargo workspace;
    # nix/package.nix gives each recipe a slice of ./recipes (its TOML, files, dependencies).
    xtaskSrc = fs.toSource {
      root = ./.;
      fileset = fs.unions [./Cargo.toml ./Cargo.lock ./.cargo ./xtask ./crates];
    };
    # What the app's xtask reads at run time: recipes, the toolchain specs and the pins.
    projectSrc = fs.toSource {
      root = ./.;
      fileset = fs.unions [./recipes ./pins ./toolchain];
    };

    rustVersion = (builtins.fromTOML (builtins.readFile ./Cargo.toml)).workspace.package.rust-version;

    xtaskFor = pkgs:
      assert lib.assertMsg (lib.versionAtLeast pkgs.rustc.version rustVersion)
      "reprovm needs rustc >= ${rustVersion} (Cargo.toml rust-version); this nixpkgs has ${pkgs.rustc.version}";
        pkgs.rustPlatform.buildRustPackage {
          pname = "reprovm-xtask";
          version = "0.1.0";
          src = xtaskSrc;
          cargoLock.lockFile = xtaskSrc + "/Cargo.lock";
          cargoBuildFlags = ["-p" "xtask"];
          # The dev profile, as `cargo xtask` runs it: the same per-package optimisation
          # (Cargo.toml), so the Nix-built xtask is the one the tests measure.
          buildType = "debug";
          doCheck = false; # its tests need user namespaces, the pinned toolchain and a Debian mirror
        };

    recipesFor = pkgs:
      import ./nix/package.nix {
        inherit pkgs;
        recipesDir = ./recipes;
        xtask = xtaskFor pkgs;
        efiStubs = efiStubsFor pkgs "x86_64";
      };

    # systemd's UEFI stubs for the media (efi-image, iso): the pinned .deb the xtask uses.
    efiStubsFor = pkgs: targetArch:
      import ./nix/efi-stubs.nix {
        inherit pkgs targetArch;
        pinsDir = ./pins;
      };

    # The arm64 targets, cross-built from x86_64-linux as the xtask builds them (`--arch
    # aarch64`): nix/package.nix with targetArch over nixpkgs' cross set, given Debian's tool
    # names (nix/nixpkgs-cross.nix). Exposed as packages.x86_64-linux.NAME-aarch64.
    archRecipesFor = pkgs: targetArch:
      import ./nix/package.nix {
        pkgs = import ./nix/nixpkgs-cross.nix {inherit pkgs targetArch;};
        recipesDir = ./recipes;
        xtask = xtaskFor pkgs;
        efiStubs = efiStubsFor pkgs targetArch;
        inherit targetArch;
      };

    # `nix run`: the xtask, told where the project is. In a reprovm checkout (the current
    # directory or above) it uses that checkout; anywhere else the flake's own recipes and
    # pins (REPROVM_DEFAULT_ROOT). Outputs go to ./out unless REPROVM_OUT says otherwise.
    appFor = pkgs:
      pkgs.writeShellScriptBin "reprovm" ''
        export REPROVM_DEFAULT_ROOT=${projectSrc}
        export REPROVM_OUT="''${REPROVM_OUT:-$PWD/out}"
        exec ${xtaskFor pkgs}/bin/xtask "$@"
      '';

    # The published targets at their default versions, for either architecture.
    publishedNames = [
      "kernel"
      "busybox"
      "dropbear"
      "iproute2"
      "rootfs"
      "hd-image"
      "krata-kernel-oci"
      "firecracker-kernel-bin-oci"
      "firecracker-kernel-modules-oci"
      "hd-image-oci"
      "initramfs"
      "efi-image"
      "iso"
    ];
    # On x86_64-linux: x86_64 targets, with the kernel's other versions (kernel@6.18, ...:
    # recipes/kernel.toml [versions]; built for x86_64 only, as by the xtask's CI). On
    # aarch64-linux the x86_64 userland recipes build natively; the arm64 targets are the
    # cross-built NAME-aarch64 of x86_64-linux.
    namesFor = system:
      if system == "x86_64-linux"
      then publishedNames ++ map (key: "kernel@${key}") (builtins.attrNames (kernelRecipe.versions or {}))
      else ["busybox" "dropbear" "iproute2"];
    crossArchs = ["aarch64"];
    kernelRecipe = builtins.fromTOML (builtins.readFile ./recipes/kernel.toml);
    only = names: set:
      builtins.listToAttrs (map (n: {
          name = n;
          value = set.${n};
        })
        names);
    # NAME -> NAME-ARCH for every attribute of `set`.
    suffixed = arch: set: lib.mapAttrs' (name: lib.nameValuePair "${name}-${arch}") set;
    # The cross-built targets of x86_64-linux (none elsewhere): `f recipes` for each arch,
    # its names suffixed.
    crossFor = system: pkgs: f:
      if system == "x86_64-linux"
      then lib.foldl' (acc: arch: acc // suffixed arch (f (archRecipesFor pkgs arch))) {} crossArchs
      else {};
    # The packages `names` of a recipe set and their reproducibility checks (reproducible-NAME).
    checksOf = pkgs: p: names:
      only names p.packages
      // import ./nix/checks.nix {
        inherit pkgs names;
        inherit (p) packages rebuilt;
        xtask = xtaskFor pkgs;
      };
  in {
    lib.recipes = import ./nix/recipe.nix;

    packages = forAll (system: pkgs:
      only (namesFor system) (recipesFor pkgs).packages
      // crossFor system pkgs (p: only publishedNames p.packages)
      // {
        xtask = xtaskFor pkgs;
        reprovm = appFor pkgs;
        default = self.packages.${system}.reprovm;
      });

    # `nix develop`: cargo and friends, the tools the boot test and `xtask run` use (QEMU for
    # the host's architecture only, and qemu-img), and the Nix formatter.
    devShells = forAll (system: pkgs: {
      default = pkgs.mkShell {
        packages = with pkgs; [cargo rustc clippy rustfmt qemu_kvm qemu-utils openssh util-linux e2fsprogs alejandra];
      };
    });

    apps = forAll (system: pkgs: {
      default = {
        type = "app";
        program = "${appFor pkgs}/bin/reprovm";
      };
    });

    # `nix fmt`: the formatter CI checks the Nix files with (alejandra).
    formatter = forAll (system: pkgs: pkgs.alejandra);

    # `nix flake check` builds every package, then builds each a second time and compares
    # the two (reproducible-NAME, with `xtask diff` explaining any difference), on x86_64-linux
    # the arm64 ones too (NAME-aarch64, reproducible-NAME-aarch64). The kernel checks repeat a
    # long build; one alone: `nix build .#checks.x86_64-linux.reproducible-busybox`.
    checks = forAll (system: pkgs:
      checksOf pkgs (recipesFor pkgs) (namesFor system)
      // crossFor system pkgs (p: checksOf pkgs p publishedNames)
      // {
        # Every recipe's pins evaluate (the same check xtask/tests/testsuite/nix.rs runs offline).
        recipes-eval = pkgs.runCommand "reprovm-recipes-eval" {} ''
          echo ${builtins.hashString "sha256" (builtins.toJSON ((import ./nix/recipe.nix).allSources ./recipes))} > $out
        '';
        xtask = xtaskFor pkgs;
      });
  };
}
