{
  description = "reprovm: reproducible Linux VM kernels and disk images from hash-pinned recipes";

  # The recipes (recipes/*.toml) are the single source of pins: nix/recipe.nix reads them with
  # builtins.fromTOML and every source becomes fetchurl { urls = all origins; sha256 = pin; }.
  # nix/package.nix turns recipes into derivations; nix/checks.nix rebuilds and compares them.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});

      xtaskFor = pkgs: pkgs.rustPlatform.buildRustPackage {
        pname = "reprovm-xtask";
        version = "0.1.0";
        src = nixpkgs.lib.cleanSource ./.;
        cargoLock.lockFile = ./Cargo.lock;
        cargoBuildFlags = [ "-p" "xtask" ];
        doCheck = false; # its tests need user namespaces, the pinned toolchain and a Debian mirror
      };

      recipesFor = pkgs: import ./nix/package.nix {
        inherit pkgs;
        recipesDir = ./recipes;
        xtask = xtaskFor pkgs;
      };

      # The kernel recipes build x86_64 kernels (ARCH=x86_64); the image needs one. On aarch64
      # the userland builds natively.
      namesFor = system:
        if system == "x86_64-linux"
        then [ "kernel" "kernel-krata" "busybox" "dropbear" "iproute2" "rootfs" "hd-image" ]
        else [ "busybox" "dropbear" "iproute2" ];
      # kernel-krata is a variant for Xen zones: a package, not part of `nix flake check`.
      checkNamesFor = system: builtins.filter (n: n != "kernel-krata") (namesFor system);
      only = names: set: builtins.listToAttrs (map (n: { name = n; value = set.${n}; }) names);
    in
    {
      lib.recipes = import ./nix/recipe.nix;

      packages = forAll (system: pkgs:
        only (namesFor system) (recipesFor pkgs).packages // {
          xtask = xtaskFor pkgs;
          default = self.packages.${system}.xtask;
        });

      devShells = forAll (system: pkgs: {
        default = pkgs.mkShell {
          packages = with pkgs; [ cargo rustc clippy rustfmt qemu openssh util-linux e2fsprogs nix nixpkgs-fmt ];
        };
      });

      apps = forAll (system: pkgs: {
        default = { type = "app"; program = "${self.packages.${system}.xtask}/bin/xtask"; };
      });

      # `nix flake check` builds every package, then builds each a second time and compares
      # the two (reproducible-NAME, with `xtask diff` explaining any difference). The kernel
      # checks repeat a long build; one alone: `nix build .#checks.x86_64-linux.reproducible-busybox`.
      checks = forAll (system: pkgs:
        let p = recipesFor pkgs; in
        only (checkNamesFor system) p.packages
        // import ./nix/checks.nix {
          inherit pkgs;
          inherit (p) packages rebuilt;
          xtask = xtaskFor pkgs;
          names = checkNamesFor system;
        }
        // {
          # Every recipe's pins evaluate (the same check xtask/tests/nix.rs runs offline).
          recipes-eval = pkgs.runCommand "reprovm-recipes-eval" { } ''
            echo ${builtins.hashString "sha256" (builtins.toJSON ((import ./nix/recipe.nix).allSources ./recipes))} > $out
          '';
          xtask = xtaskFor pkgs;
        });
    };
}
