# One function: a reprovm recipe -> a derivation built with nixpkgs' stdenv.
#
# The recipe's scripts run unchanged: Nix's sandbox build directory is /build (like the
# xtask's), sources are unpacked to /build/src, recipe files copied to /build/files,
# dependencies linked at /build/deps/NAME, and outputs go to "$OUT" (= $out).
# Recipes whose outputs the xtask assembles itself ([rootfs], [image]) are not built here.
{ pkgs, recipesDir }:
let
  lib = pkgs.lib;
  reader = import ./recipe.nix;
  recipes = reader.readRecipes recipesDir;

  tools = with pkgs; [ bc bison flex perl elfutils openssl kmod cpio pkg-config python3 which file rsync ];
  libs = with pkgs; [ libxcrypt zlib libmnl libcap ncurses elfutils openssl ];

  mk = self: name:
    let
      r = recipes.${name};
      build = r.build or { };
      srcs = map (s: pkgs.fetchurl (reader.sourceArgs s)) (r.source or [ ]);
      strips = map (s: toString (s.strip-components or 1)) (r.source or [ ]);
      deps = r.deps or [ ];
    in
    assert !(r ? rootfs || r ? image);
    pkgs.stdenv.mkDerivation ({
      pname = name;
      version = r.version;
      nativeBuildInputs = tools;
      buildInputs = libs;
      dontUnpack = true;
      dontConfigure = true;
      dontInstall = true;
      dontFixup = true;
      # Kernel builds must not pick up nixpkgs' hardening flags twice; recipes set their own.
      hardeningDisable = [ "all" ];
      SOURCE_DATE_EPOCH = (r.env or { }).SOURCE_DATE_EPOCH or "1704067200";
      buildPhase = ''
        [ "$NIX_BUILD_TOP" = /build ] || { echo "reprovm recipes need Nix's sandbox (build dir /build)"; exit 1; }
        export OUT=$out JOBS=$NIX_BUILD_CORES
        mkdir -p $out /build/src /build/files /build/deps
        ${lib.concatStrings (lib.zipListsWith (src: strip: "tar -xf ${src} -C /build/src --strip-components=${strip}\n") srcs strips)}
        ${lib.concatMapStrings (f: "mkdir -p $(dirname /build/files/${f}); cp ${recipesDir + "/${f}"} /build/files/${f}\n") (r.files or [ ])}
        ${lib.concatMapStrings (d: "ln -s ${self.${d}} /build/deps/${d}\n") deps}
        cd /build/src
        ${lib.concatStrings (lib.mapAttrsToList (k: v: "export ${k}=${lib.escapeShellArg v}\n") (r.env or { }))}
        sh -eu ${pkgs.writeText "${name}-configure.sh" (build.configure or "")}
        sh -eu ${pkgs.writeText "${name}-build.sh" (build.script or "")}
      '';
    });

  buildable = lib.filterAttrs (_: r: !(r ? rootfs || r ? image)) recipes;
  packages = lib.fix (self: lib.mapAttrs (name: _: mk self name) buildable);
in
packages
