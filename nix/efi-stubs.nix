# systemd's UEFI stubs for the media steps (`xtask assemble --efi-stubs`), as the xtask has
# them: Debian's systemd-boot-efi .deb pinned in the toolchain lock (x64 in
# pins/toolchain.lock, aa64 in pins/aarch64.lock), fetched by its hash and unpacked. A package
# set without the pinned toolchain at /usr (nixpkgs) has no /usr/lib/systemd/boot/efi, and
# nixpkgs' own systemd has another version's stub, with another section layout.
#
# Uses fetchurl, runCommand and (if the set has it) dpkg from `pkgs`; the pinned-toolchain
# set of the tests has dpkg-deb on its PATH, so the full tier builds this very expression for
# x86_64 (the x64 stub) and compares the media made with it to the xtask's.
{
  pkgs,
  pinsDir,
  targetArch,
}: let
  locks = {
    x86_64 = {
      lock = pinsDir + "/toolchain.lock";
      debArch = "amd64";
    };
    aarch64 = {
      lock = pinsDir + "/aarch64.lock";
      debArch = "arm64";
    };
  };
  locked = locks.${targetArch} or (throw "nix/efi-stubs.nix: no UEFI stub is pinned for targetArch = \"${targetArch}\"; add that architecture's lock and systemd-boot-efi to `locks` here");
  deb = pkgs.fetchurl ((import ./recipe.nix).lockedDebArgs locked.lock "systemd-boot-efi" locked.debArch);
in
  pkgs.runCommand "reprovm-efi-stubs-${targetArch}" {
    nativeBuildInputs = builtins.filter (p: p != null) [(pkgs.dpkg or null)];
    inherit deb;
  } ''
    dpkg-deb -x "$deb" deb
    mkdir -p $out
    cp deb/usr/lib/systemd/boot/efi/linux*.efi.stub $out/
  ''
