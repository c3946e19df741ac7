# Entry point for xtask/tests/testsuite/nix.rs: the flake's package function (nix/package.nix) and its
# reproducibility checks (nix/checks.nix) over the pinned-toolchain package set.
{
  xtaskBin,
  recipesDir ? ../../recipes,
  checkNames ? ["busybox" "dropbear" "iproute2" "rootfs" "hd-image"],
  # reprovm's target architecture (nix/package.nix); the test mounts that architecture's
  # pinned toolchain root.
  targetArch ? "x86_64",
}: let
  pkgs = import ./pinned-toolchain-pkgs.nix {inherit xtaskBin;};
  p = import ../../nix/package.nix {
    inherit pkgs recipesDir targetArch;
    inherit (pkgs) xtask;
    # The flake's way to the media's UEFI stubs (the pinned .deb, unpacked in the store), so
    # the full tier builds it and compares the media with the xtask's.
    efiStubs = import ../../nix/efi-stubs.nix {
      inherit pkgs targetArch;
      pinsDir = ../../pins;
    };
  };
in
  p.packages
  // {
    checks = import ../../nix/checks.nix {
      inherit pkgs;
      inherit (p) packages rebuilt;
      inherit (pkgs) xtask;
      names = checkNames;
    };
  }
