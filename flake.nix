{
  description = "reprovm: reproducible Linux VM kernels and disk images from hash-pinned recipes";

  # The recipes (recipes/*.toml) are the single source of pins: nix/recipe.nix reads them with
  # builtins.fromTOML and every source becomes fetchurl { urls = all origins; sha256 = pin; }.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});
      recipePackages = pkgs: import ./nix/package.nix { inherit pkgs; recipesDir = ./recipes; };
      xtaskFor = pkgs: pkgs.rustPlatform.buildRustPackage {
        pname = "reprovm-xtask";
        version = "0.1.0";
        src = nixpkgs.lib.cleanSource ./.;
        cargoLock.lockFile = ./Cargo.lock;
        cargoBuildFlags = [ "-p" "xtask" ];
        doCheck = false; # its tests need user namespaces and a Debian mirror
      };
    in
    {
      lib.recipes = import ./nix/recipe.nix;

      packages = forAll (system: pkgs:
        let p = recipePackages pkgs; in
        {
          xtask = xtaskFor pkgs;
          default = self.packages.${system}.xtask;
        }
        # The recipes build x86_64 kernels (ARCH=x86_64) and userland; aarch64 gets the userland.
        // (if system == "x86_64-linux" then p else removeAttrs p [ "kernel" ]));

      # hd-image is assembled by the xtask (deterministic tar + the pinned mke2fs); inside Nix
      # run it from the dev shell: `nix develop -c cargo xtask build hd-image`.
      devShells = forAll (system: pkgs: {
        default = pkgs.mkShell {
          packages = with pkgs; [ cargo rustc clippy rustfmt qemu openssh util-linux e2fsprogs nix ];
        };
      });

      apps = forAll (system: pkgs: {
        default = { type = "app"; program = "${self.packages.${system}.xtask}/bin/xtask"; };
      });

      checks = forAll (system: pkgs: {
        # Every recipe's pins evaluate (the same check xtask/tests/nix.rs runs offline).
        recipes-eval = pkgs.runCommand "reprovm-recipes-eval" { } ''
          echo ${builtins.hashString "sha256" (builtins.toJSON ((import ./nix/recipe.nix).allSources ./recipes))} > $out
        '';
        inherit (self.packages.${system}) xtask;
      } // nixpkgs.lib.optionalAttrs (system == "x86_64-linux") {
        inherit (self.packages.${system}) busybox dropbear iproute2 kernel;
      });
    };
}
