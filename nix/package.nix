# One function: reprovm recipes -> derivations.
#
# The recipe's scripts run unchanged: they name their build directory "$REPROVM_BUILD", which
# is /build in the xtask's sandbox and Nix's build directory here ($NIX_BUILD_TOP: /build in
# Nix's sandbox, a temporary directory without it). Sources are unpacked to $REPROVM_BUILD/src,
# recipe files copied to $REPROVM_BUILD/files, dependencies linked at $REPROVM_BUILD/deps/NAME,
# outputs go to "$OUT" (= $out), and the environment is the xtask sandbox's (TZ, locale, HOME,
# hash seeds, SOURCE_DATE_EPOCH). [rootfs] and
# [image] recipes run the xtask's own assembly code (`xtask assemble`), so both builders make
# the root file system and the ext4 image the same way (and check [kconfig] the same way).
#
# Only builtins and these attributes of `pkgs` are used, so any package set that provides
# them works: fetchurl, stdenv.mkDerivation, writeText, library packages by name and tool
# packages by name from `buildPackages` if the set has one (nixpkgs' cross sets), else from
# the set itself (missing ones are skipped). nixpkgs is one such set, nix/nixpkgs-cross.nix
# another; tests/nix/pinned-toolchain-pkgs.nix is a third.
#
# `recipesDir` is the recipes directory as a path (each derivation gets its own slice of it).
#
# `targetArch` is reprovm's target architecture (`x86_64`, the default, or `aarch64`), as the
# xtask's `--arch`: recipes get their [arch.NAME] table merged and `xtask assemble` the same
# flag. The package set must then provide that architecture's cross tools under the recipes'
# names (aarch64-linux-gnu-gcc, ...) and its libraries where those tools find them: the
# pinned aarch64 toolchain root has them at Debian's multiarch paths
# (tests/nix/pinned-toolchain-pkgs.nix over it), nix/nixpkgs-cross.nix through nixpkgs'
# cross compiler wrapper.
#
# Returns { packages = { NAME = drv; }; rebuilt = { NAME = drv; }; baseEnv; } where `rebuilt.NAME`
# builds NAME again from the same inputs (the same dependency derivations) as a separate
# derivation: comparing the two is the reproducibility check of nix/checks.nix.
{
  pkgs,
  recipesDir,
  xtask,
  targetArch ? "x86_64",
  # A directory with systemd's UEFI stubs for the media (`xtask assemble --efi-stubs`), for a
  # package set without the toolchain at /usr (nixpkgs: the flake unpacks the pinned
  # systemd-boot-efi .deb). null: the toolchain's /usr/lib/systemd/boot/efi.
  efiStubs ? null,
}: let
  reader = import ./recipe.nix;
  knownArchs = ["x86_64" "aarch64"];
  # Recipes for the target architecture, their [arch.NAME] tables merged (x86_64's: the media's
  # BIOS path), as the xtask reads them.
  recipes = assert builtins.elem targetArch knownArchs
  || throw "nix/package.nix: targetArch = \"${targetArch}\" is not one of reprovm's architectures (${builtins.concatStringsSep ", " knownArchs})";
    reader.fillRecipes (reader.readRecipesFor targetArch recipesDir);
  # x86_64 adds nothing, as in the xtask: its derivations are what they were before `--arch`.
  archFlag =
    if targetArch == "x86_64"
    then ""
    else "--arch ${targetArch} ";
  archSuffix =
    if targetArch == "x86_64"
    then ""
    else "-${targetArch}";
  # Store path names have no `@`: kernel@6.18 builds as kernel-6.18-6.18.15.
  storeName = builtins.replaceStrings ["@"] ["-"];

  concatMap = f: l: builtins.concatStringsSep "" (map f l);
  shellArg = s: "'" + builtins.replaceStrings ["'"] ["'\\''"] s + "'";
  # The packages `names` of `set` that it has.
  pickFrom = set: names: builtins.filter (p: p != null) (map (n: set.${n} or null) names);
  pick = pickFrom pkgs;

  # Tools run on the build machine, libraries are linked into the target's programs. With
  # one package set for both (x86_64 over nixpkgs, the pinned toolchain root) the two are the
  # same set; a cross set (nix/nixpkgs-cross.nix) has its build machine's in `buildPackages`,
  # as nixpkgs' own cross sets do.
  buildPkgs = pkgs.buildPackages or pkgs;
  pickBuild = pickFrom buildPkgs;
  tools = pickBuild ["bc" "bison" "flex" "perl" "elfutils" "openssl" "kmod" "cpio" "pkg-config" "python3" "which" "file" "rsync"];
  libs = pick ["libxcrypt" "zlib" "libmnl" "libcap" "ncurses" "elfutils" "openssl"];
  imageTools = pickBuild [
    "e2fsprogs"
    (
      if buildPkgs ? qemu-utils
      then "qemu-utils"
      else "qemu"
    )
  ];

  # The xtask sandbox's base environment (xtask/src/sandbox/mod.rs: base_env; PATH, JOBS, OUT,
  # TMPDIR and REPROVM_BUILD are set per builder). xtask/tests/testsuite/nix.rs checks it against the real sandbox's.
  baseEnv = {
    TZ = "UTC";
    LC_ALL = "C";
    LANG = "C";
    HOME = "/homeless";
    TERM = "dumb";
    PYTHONHASHSEED = "0";
    PERL_HASH_SEED = "0";
    SOURCE_DATE_EPOCH = "1704067200";
  };

  # What the media steps run: mkfs.fat, mtools, xorriso (objcopy comes with the compiler).
  mediaTools = pickBuild ["dosfstools" "mtools" "xorriso"];
  isMedia = r: r ? uefi || r ? iso;
  # A media derivation has the stubs as its attribute (and so in its environment) `efiStubs`.
  withStubs = r: isMedia r && efiStubs != null;

  # Recipes with steps the xtask runs itself between configure and script.
  isAssembled = r: r ? rootfs || r ? image || r ? kconfig || r ? oci || r ? initramfs || isMedia r;

  # The slice of the recipes directory one recipe's derivation sees: the TOML, files,
  # fragments and overlays of every recipe in its dependency closure (which `xtask assemble`
  # loads as a graph, and whose content digest is an OCI layout's revision: the xtask's
  # oci::recipes_digest covers exactly this set). A store path of its own, so editing one
  # recipe rebuilds only what depends on it (a path inside the flake's source would carry
  # the whole checkout).
  hasPrefix = p: s: builtins.substring 0 (builtins.stringLength p) s == p;
  closure = name: [name] ++ builtins.concatLists (map closure (recipes.${name}.deps or []));
  slice = name: let
    own = n: let
      r = recipes.${n};
    in
      [r.recipeFile] ++ (r.files or []) ++ (r.kconfig.fragments or []) ++ (r.rootfs.overlays or []);
    wanted = builtins.concatLists (map own (closure name));
    root = toString recipesDir + "/";
    keep = path: _: let
      rel = builtins.substring (builtins.stringLength root) (-1) path;
    in
      builtins.any (w: rel == w || hasPrefix (w + "/") rel || hasPrefix (rel + "/") w) wanted;
  in
    builtins.path {
      path = recipesDir;
      name = "reprovm-recipes-${storeName name}";
      filter = keep;
    };

  mk = deps: name: salt: let
    r = recipes.${name};
    own = slice name;
    build = r.build or {};
    env = baseEnv // (r.env or {});
    srcs = map (s: {
      src = pkgs.fetchurl (reader.sourceArgs s);
      strip = toString (s.strip-components or 1);
      unpack = s.unpack or true;
      file = s.file;
    }) (r.source or []);
    depNames = r.deps or [];
    stage = ''
      export REPROVM_BUILD="$NIX_BUILD_TOP" OUT=$out JOBS=$NIX_BUILD_CORES TMPDIR=/tmp
      b="$REPROVM_BUILD"
      [ -d /tmp ] && [ -w /tmp ] || export TMPDIR="$b"/tmp
      mkdir -p $out "$b"/src "$b"/files "$b"/deps "$TMPDIR"
      ${concatMap (s:
        if s.unpack
        then "tar -xf ${s.src} -C \"$b\"/src --strip-components=${s.strip}\n"
        else "mkdir -p \"$b\"/sources; cp ${s.src} \"$b\"/sources/${shellArg s.file}\n")
      srcs}
      # nixpkgs' sandbox has no /usr/bin/env: point the sources' shebangs into the store.
      if command -v patchShebangs >/dev/null 2>&1; then patchShebangs --build "$b"/src >/dev/null; fi
      ${concatMap (f: "mkdir -p \"$(dirname \"$b\"/files/${f})\"; cp ${own}/${f} \"$b\"/files/${f}\n") (r.files or [])}
      ${concatMap (d: "ln -s ${deps.${d}} \"$b\"/deps/${d}\n") depNames}
      ${concatMap (k: "export ${k}=${shellArg env.${k}}\n") (builtins.attrNames env)}
      cd "$b"/src
    '';
    assemble =
      if isAssembled r
      then ''
        ${xtask}/bin/xtask ${archFlag}--recipes ${own} assemble ${
          if withStubs r
          then "--efi-stubs \"$efiStubs\" "
          else ""
        }${name}
      ''
      else "";
  in
    pkgs.stdenv.mkDerivation ({
        pname = storeName name + archSuffix;
        version = r.version;
        nativeBuildInputs =
          tools
          ++ (
            if r ? image || isMedia r
            then imageTools
            else []
          )
          ++ (
            if isMedia r
            then mediaTools
            else []
          );
        buildInputs = libs;
        dontUnpack = true;
        dontConfigure = true;
        dontInstall = true;
        dontFixup = true;
        # Recipes set their own compiler flags; nixpkgs' hardening wrappers would add more.
        hardeningDisable = ["all"];
        buildPhase =
          stage
          + ''
            sh -eu ${pkgs.writeText "${storeName name}-configure.sh" (build.configure or "")}
          ''
          + assemble
          + ''
            sh -eu ${pkgs.writeText "${storeName name}-build.sh" (build.script or "")}
            for o in ${concatMap (o: shellArg o + " ") (build.outputs or [])}; do
              [ -e "$OUT/$o" ] || [ -L "$OUT/$o" ] || { echo "declared output \`$o' was not produced under \$OUT" >&2; exit 1; }
            done
          '';
      }
      // (
        if withStubs r
        then {inherit efiStubs;}
        else {}
      )
      // (
        if salt == null
        then {}
        else {REPROVM_REBUILD = salt;}
      ));

  # Alternatives (a `kernel-NAME` recipe for `--use kernel=kernel-NAME`) build too; the image
  # uses `kernel`.
  buildable = recipes;
  # A recipe that says it cannot be built for the architecture (`unavailable`, as the xtask
  # refuses it) is a package that fails to evaluate with that reason.
  refuse = name:
    throw "recipes/${recipes.${name}.recipeFile}: not buildable for ${targetArch}: ${recipes.${name}.unavailable}";
  packages = let
    self = builtins.mapAttrs (name: r:
      if r ? unavailable
      then refuse name
      else mk self name null)
    buildable;
  in
    self;
  rebuilt = builtins.mapAttrs (name: _: mk packages name "rebuild") buildable;
in {
  inherit packages rebuilt baseEnv;
}
