# Reproducibility checks on the Nix side: every package is built a second time as a separate
# derivation (`rebuilt.NAME` from nix/package.nix: same recipe, same dependency derivations),
# and `xtask diff` compares the two output trees file by file and explains any difference
# (ELF sections, bzImage payload, ext4 superblock and inodes, text). A check's output is the
# report; a difference fails the check with the explanation in its log. `nix build --rebuild`
# does the same for one package with Nix's own comparison, without the explanation.
{
  pkgs,
  xtask,
  packages,
  rebuilt,
  names,
}:
builtins.listToAttrs (map
  (name: {
    name = "reproducible-${name}";
    value = pkgs.runCommand "reproducible-${builtins.replaceStrings ["@"] ["-"] name}" {nativeBuildInputs = builtins.filter (p: p != null) [(pkgs.e2fsprogs or null)];} ''
      if ${xtask}/bin/xtask diff --host-tools ${packages.${name}} ${rebuilt.${name}} > report; then
        cp report $out
      else
        cat report; exit 1
      fi
    '';
  })
  names)
