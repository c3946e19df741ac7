# Evaluates flake.nix's outputs function offline, with a stand-in for nixpkgs built from
# pinned-toolchain-pkgs.nix (xtask/tests/nix.rs). It checks the flake's wiring (which packages,
# checks and apps exist on which system, and that every derivation instantiates), not
# nixpkgs itself.
{ xtaskBin }:
let
  flake = import ../../flake.nix;
  genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
  pkgsFor = system: import ./pinned-toolchain-pkgs.nix { inherit xtaskBin system; } // {
    rustPlatform.buildRustPackage = a: (import ./pinned-toolchain-pkgs.nix { inherit xtaskBin system; }).xtask;
    mkShell = a: builtins.derivation { name = "shell"; inherit system; builder = "/bin/sh"; };
  };
  nixpkgs = {
    lib = { inherit genAttrs; cleanSource = p: p; };
    legacyPackages = genAttrs [ "x86_64-linux" "aarch64-linux" ] pkgsFor;
  };
  outputs = flake.outputs { self = outputs; inherit nixpkgs; };
  names = builtins.mapAttrs (_: builtins.attrNames);
in
{
  packages = names outputs.packages;
  checks = names outputs.checks;
  devShells = names outputs.devShells;
  apps = builtins.mapAttrs (_: a: a.default.type) outputs.apps;
  drvs = builtins.mapAttrs (_: p: p.drvPath) (outputs.packages.x86_64-linux // outputs.checks.x86_64-linux);
}
