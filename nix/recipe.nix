# Read reprovm recipes (recipes/*.toml) in pure Nix: no nixpkgs needed for this file.
# The same sha256 pins as `cargo xtask fetch`; every origin becomes one of fetchurl's `urls`.
let
  hasPrefix = p: s: builtins.substring 0 (builtins.stringLength p) s == p;
  hasSuffix = x: s: let
    n = builtins.stringLength s;
    k = builtins.stringLength x;
  in
    n >= k && builtins.substring (n - k) k s == x;

  # Debian pool directory of a source package: pool/main/b/busybox, pool/main/libc/libcap2.
  poolDir = pkg: let
    prefix =
      if hasPrefix "lib" pkg && builtins.stringLength pkg > 3
      then builtins.substring 0 4 pkg
      else builtins.substring 0 1 pkg;
  in "pool/main/${prefix}/${pkg}";

  # Debian's snapshot archive: every file the archive ever published, by time, after the pool
  # has dropped it (the xtask's default too: xtask/src/debian.rs, DEFAULT_SNAPSHOT).
  snapshotBase = "https://snapshot.debian.org";
  # A pool file at a snapshot time; the security archive keeps its pool under pool/updates/.
  snapshotUrls = time: pool: [
    "${snapshotBase}/archive/debian/${time}/${pool}"
    "${snapshotBase}/archive/debian-security/${time}/${builtins.replaceStrings ["pool/"] ["pool/updates/"] pool}"
  ];

  # fetchurl arguments for one [[source]] table: upstream URLs, the Debian mirror, then the
  # snapshot archive at the recipe's time (the xtask's order, without its configured mirrors).
  # A source's name in the Nix store: its file name with what store paths may not hold
  # (`~` of Debian versions, `:`) as `-`; the build sees it under its own name again.
  storeFileName = builtins.replaceStrings ["~" ":"] ["-" "-"];

  sourceArgs = s: {
    name = storeFileName s.file;
    sha256 = s.sha256;
    urls =
      (s.urls or [])
      ++ (
        if s ? debian
        then ["mirror://debian/${poolDir s.debian.package}/${s.debian.file}"]
        else []
      )
      ++ (
        if s ? debian.snapshot
        then snapshotUrls s.debian.snapshot "${poolDir s.debian.package}/${s.debian.file}"
        else []
      );
  };

  # fetchurl arguments for the .deb NAME of architecture ARCH in a toolchain lock
  # (pins/*.lock, written by `xtask toolchain lock`): the Debian mirror's pool, then the
  # snapshot archive at the lock's time, by the lock's sha256.
  lockedDebArgs = lockFile: name: arch: let
    lock = builtins.fromTOML (builtins.readFile lockFile);
    found = builtins.filter (p: p.name == name && p.arch == arch) lock.package;
    p =
      if builtins.length found == 1
      then builtins.head found
      else throw "${toString lockFile}: expected one package ${name} for ${arch}, found ${toString (builtins.length found)}; list it in the lock's toolchain/*.toml and run `cargo xtask toolchain lock`";
  in {
    name = storeFileName (baseNameOf p.filename);
    inherit (p) sha256;
    urls = ["mirror://debian/${p.filename}"] ++ snapshotUrls lock.snapshot p.filename;
  };

  readRecipe = path: builtins.fromTOML (builtins.readFile path);

  # { NAME = recipe; } for every recipes/*.toml, and NAME@KEY for each of its other versions
  # ([versions.KEY]: the recipe at that version and its sources; `recipeFile` names the TOML).
  # The xtask's model::graph also makes nodes of the recipes over another version
  # (hd-image@6.18); here only the versions themselves are packages. `prepare` is applied to
  # each recipe before its versions are made (`forArch`: as in the xtask, a version's version
  # and sources win over an [arch] table's).
  readRecipesWith = prepare: dir: let
    files = builtins.attrNames (builtins.readDir dir);
    tomls = builtins.filter (hasSuffix ".toml") files;
    base = builtins.listToAttrs (map
      (f: {
        name = builtins.substring 0 (builtins.stringLength f - 5) f;
        value = prepare (readRecipe (dir + "/${f}")) // {recipeFile = f;};
      })
      tomls);
    versionsOf = name: let
      r = base.${name};
    in
      map (key: {
        name = "${name}@${key}";
        value =
          builtins.removeAttrs r ["versions"]
          // {
            version = r.versions.${key}.version;
            source = r.versions.${key}.source or [];
          };
      }) (builtins.attrNames (r.versions or {}));
  in
    base // builtins.listToAttrs (builtins.concatMap versionsOf (builtins.attrNames base));
  readRecipes = readRecipesWith (r: r);

  # One recipe for one architecture, as the xtask's model::recipe::parse_for makes it: the
  # recipe's [arch.NAME] table merged over it (tables key by key, every other value replaced),
  # and the [arch] tables themselves dropped. reprovm's architectures are its own names
  # (x86_64, aarch64), not Nix systems: x86_64 is what every build here targets.
  mergeTables = base: over:
    base
    // builtins.mapAttrs (k: v:
      if builtins.isAttrs v && builtins.isAttrs (base.${k} or null)
      then mergeTables base.${k} v
      else v)
    over;
  forArch = arch: r: mergeTables (builtins.removeAttrs r ["arch"]) (r.arch.${arch} or {});
  readRecipesFor = arch: readRecipesWith (forArch arch);

  # `{DEP.version}` and `{DEP.debian-version}` in a recipe's version and [env] values: its
  # dependency's version, or the Debian version of that dependency's first Debian source
  # (the xtask's model::recipe::placeholders).
  debianVersion = r: let
    fromDebian = builtins.filter (s: s ? debian) (r.source or []);
  in
    if fromDebian == []
    then "{no-debian-source}"
    else (builtins.head fromDebian).debian.version;
  fillRecipes = recipes: let
    fill = r: s:
      builtins.replaceStrings
      (builtins.concatMap (d: ["{${d}.version}" "{${d}.debian-version}"]) (r.deps or []))
      (builtins.concatMap (d: [filled.${d}.version (debianVersion filled.${d})]) (r.deps or []))
      s;
    filled = builtins.mapAttrs (_: r:
      r
      // {
        version = fill r r.version;
        env = builtins.mapAttrs (_: fill r) (r.env or {});
      })
    recipes;
  in
    filled;

  # { NAME = [ fetchurl args ]; } for every recipe.
  # fetchurl arguments for every .deb of a recipe's `[rootfs] debian` lock
  # (pins/debian/NAME.lock, written by `xtask pin debian`), as the xtask fetches them: the
  # mirror's pool, then the snapshot archive the pool path names (pool/updates/: security).
  imageDebArgs = lockFile: let
    lock = builtins.fromTOML (builtins.readFile lockFile);
    archiveOf = f:
      if builtins.substring 0 13 f == "pool/updates/"
      then "debian-security"
      else "debian";
  in
    map (p: {
      name = storeFileName (baseNameOf p.filename);
      inherit (p) sha256;
      urls = [
        "mirror://debian/${p.filename}"
        "${snapshotBase}/archive/${archiveOf p.filename}/${lock.snapshot}/${p.filename}"
      ];
    })
    lock.package;

  # Every recipe's sources, and the .debs of its Debian lock (x86_64's), as `xtask fetch --list`.
  allSources = dir:
    builtins.mapAttrs (name: r:
      map sourceArgs (r.source or [])
      ++ (
        if (r.rootfs.debian or []) != []
        then imageDebArgs (dir + "/../pins/debian/${name}.lock")
        else []
      ))
    (readRecipes dir);
in {
  inherit poolDir snapshotUrls sourceArgs lockedDebArgs imageDebArgs storeFileName readRecipe readRecipes readRecipesFor forArch fillRecipes allSources;
}
