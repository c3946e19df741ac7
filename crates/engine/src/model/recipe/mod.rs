//! The recipe format: one TOML file per package or image in `recipes/`.
//!
//! Parsing is strict (`deny_unknown_fields`) and every error is one line naming the file, the
//! line and column, and what was expected. This file holds the schema; `syntax.rs` the small
//! syntaxes inside values, `debian_fields.rs` Debian's field syntax, `validate.rs` the checks
//! after parsing, and `position.rs` where in the text a key path is (from the TOML parser's
//! spans).

mod debian_fields;
pub(crate) mod edit;
#[cfg(test)]
mod keys;
pub mod placeholders;
pub(crate) mod position;
mod sections;
mod syntax;
mod validate;

pub(crate) use syntax::{
    dep_path, is_oci_tag, parse_device, parse_dir, parse_duration, parse_install, parse_symlink,
    tree_path,
};

pub(crate) use crate::model::arch::Arch;
pub(crate) use sections::*;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a build may run when its recipe names no `timeout`.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(4 * 3600);

/// SOURCE_DATE_EPOCH of every build unless a recipe sets its own in `env`
/// (2024-01-01T00:00:00Z; fixed, so that no build depends on when it ran).
pub(crate) const DEFAULT_SOURCE_DATE_EPOCH: i64 = 1_704_067_200;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct Recipe {
    pub name: String,
    /// The version; may be a dependency's (`{kernel.version}`, see `placeholders`).
    pub version: String,
    /// One line for humans (shown by `plan`).
    #[serde(default)]
    pub description: String,
    /// The license of what the recipe builds from its sources, as an SPDX expression
    /// (`GPL-2.0-only`): recorded in SBOMs, not part of the input hash.
    #[serde(default)]
    pub license: Option<String>,
    /// Other recipes whose outputs this one reads (mounted read-only at /build/deps/NAME).
    #[serde(default)]
    pub deps: Vec<String>,
    /// Pinned inputs, fetched by sha256 from any of their origins.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourcePin>,
    /// Other versions of this recipe, by key: `NAME@KEY` is this recipe with that entry's
    /// version and sources, and every recipe over it has a `@KEY` node too (`model::graph`).
    #[serde(default)]
    pub versions: BTreeMap<String, OtherVersion>,
    /// Named sets of kernel config fragments over the recipe's own (`[flavours.kvm]`):
    /// `NAME+FLAVOUR` nodes (`model::graph`).
    #[serde(default)]
    pub flavours: BTreeMap<String, Flavour>,
    /// The cells of the recipe's matrix that are left out (`[matrix] exclude`).
    #[serde(default)]
    pub matrix: Matrix,
    /// Files from `recipes/` (configs, scripts) copied to /build/files; part of the input hash.
    #[serde(default)]
    pub files: Vec<String>,
    /// Environment added to the sandbox's fixed environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub build: Build,
    /// Kernel recipes: config base and fragments, checked after olddefconfig.
    pub kconfig: Option<Kconfig>,
    /// Root file system assembly (done by the engine, deterministically, in Rust).
    pub rootfs: Option<RootfsSpec>,
    /// ext4 image parameters.
    pub image: Option<ImageSpec>,
    /// An OCI image layout made of files the configure script prepared (written to `$OUT`).
    pub oci: Option<OciSpec>,
    /// A dependency's root file system as `initramfs.cpio.gz`.
    pub initramfs: Option<InitramfsSpec>,
    /// A UEFI-bootable GPT disk (`efi.img`) and its VHD/VMDK/OVA/qcow2 forms.
    pub uefi: Option<UefiSpec>,
    /// A hybrid ISO 9660 image booting a live system through UEFI (El Torito).
    pub iso: Option<IsoSpec>,
    /// Longest time the build may take, e.g. "90m", "4h", "30s" (default 4h); after it the
    /// whole sandbox is killed and the log's tail shown.
    pub timeout: Option<String>,
    /// What differs for one architecture (`[arch.aarch64]`): a partial recipe merged over
    /// this one when building for it (tables key by key, other values replaced). Building
    /// for an architecture without a table takes the recipe as it is.
    #[serde(default)]
    pub arch: BTreeMap<String, toml::Table>,
    /// Why this recipe cannot be built, in an `[arch.NAME]` table: for that architecture
    /// (`unavailable = "x86_64 boot loaders"`). Builds over it are refused before anything
    /// runs, and it is not among that architecture's published outputs.
    pub unavailable: Option<String>,
}

impl Recipe {
    /// What the recipe makes, from the step tables it has: `kernel`, `package`, `rootfs`,
    /// `disk-image`, `initramfs`, `uefi-disk`, `iso`, `oci-image` or `oci-artifact`.
    pub(crate) fn kind(&self) -> &'static str {
        if self.kconfig.is_some() {
            "kernel"
        } else if let Some(oci) = &self.oci {
            if oci.layer.is_some() {
                "oci-image"
            } else {
                "oci-artifact"
            }
        } else if self.iso.is_some() {
            "iso"
        } else if self.uefi.is_some() {
            "uefi-disk"
        } else if self.initramfs.is_some() {
            "initramfs"
        } else if self.image.is_some() {
            "disk-image"
        } else if self.rootfs.is_some() {
            "rootfs"
        } else {
            "package"
        }
    }

    /// The recipe as its flavour `name` makes it: the flavour's fragments appended to
    /// `files` and `[kconfig] fragments`, its `append-env` values to `[env]`; no flavours left.
    pub(crate) fn with_flavour(&self, name: &str) -> Recipe {
        let mut r = self.clone();
        r.flavours.clear();
        let Some(f) = self.flavours.get(name) else { return r };
        for frag in &f.fragments {
            if !r.files.contains(frag) {
                r.files.push(frag.clone());
            }
            if let Some(k) = &mut r.kconfig {
                k.fragments.push(frag.clone());
            }
        }
        for (k, v) in &f.append_env {
            let value = r.env.entry(k.clone()).or_default();
            if !value.is_empty() {
                value.push(' ');
            }
            value.push_str(v);
        }
        r
    }

    /// The recipe's SOURCE_DATE_EPOCH (its `[env]` value, validated at parse time).
    pub(crate) fn source_date_epoch(&self) -> i64 {
        self.env
            .get("SOURCE_DATE_EPOCH")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_SOURCE_DATE_EPOCH)
    }

    /// The build's time limit.
    pub(crate) fn timeout(&self) -> anyhow::Result<Duration> {
        match &self.timeout {
            None => Ok(DEFAULT_TIMEOUT),
            Some(t) => {
                parse_duration(t).map_err(|e| anyhow::format_err!("recipe {}: {e}", self.name))
            }
        }
    }
}

/// `[versions.KEY]`: another version of a recipe, with its own pinned sources; everything
/// else (files, fragments, scripts) is the recipe's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct OtherVersion {
    pub version: String,
    #[serde(default, rename = "source")]
    pub sources: Vec<SourcePin>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct SourcePin {
    /// File name of the archive (used for messages, mirror look-ups and type detection).
    pub file: String,
    pub sha256: String,
    pub size: u64,
    /// Upstream URLs, tried in order.
    #[serde(default)]
    pub urls: Vec<String>,
    /// The same bytes in a Debian source package, resolved against the configured mirror.
    pub debian: Option<DebianFile>,
    /// Unpack into /build/src (default) or keep the archive as /build/sources/FILE.
    #[serde(default = "default_true")]
    pub unpack: bool,
    /// Leading path components to drop when unpacking (default 1, like `tar --strip 1`).
    #[serde(default = "default_strip")]
    pub strip_components: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct DebianFile {
    pub package: String,
    /// The Debian source version holding this file (documentation; the pool path needs only
    /// the package and file name).
    #[allow(dead_code)]
    pub version: String,
    pub file: String,
    /// A time (`YYYYMMDDTHHMMSSZ`) at which the file was in the archive: Debian's snapshot
    /// archive serves it from then on, after the pool has dropped it.
    pub snapshot: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct Build {
    /// Shell script run by /bin/sh -eu before the configuration check (kernel recipes).
    #[serde(default)]
    pub configure: String,
    /// Shell script run by /bin/sh -eu in /build/src inside the sandbox.
    #[serde(default)]
    pub script: String,
    /// Paths that must exist under /out when the script ends.
    #[serde(default)]
    pub outputs: Vec<String>,
}

fn default_true() -> bool {
    true
}
fn default_strip() -> usize {
    1
}

/// A parse or validation error, rendered as one line `FILE:LINE:COL: message`.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{col}: {msg}")]
pub(crate) struct RecipeError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

/// Parse and validate a recipe's text for the default architecture; `display` names the
/// file in errors.
#[cfg(test)]
pub(crate) fn parse(path: &Path, text: &str, display: &str) -> Result<Recipe, RecipeError> {
    parse_for(path, text, display, Arch::X86_64)
}

/// Parse and validate a recipe's text as it is for `arch`: the recipe, with its
/// `[arch.NAME]` table for `arch` merged over it, validated again after the merge (errors in
/// what the merge made point at the `[arch.NAME]` table).
pub(crate) fn parse_for(
    path: &Path,
    text: &str,
    display: &str,
    arch: Arch,
) -> Result<Recipe, RecipeError> {
    let error_at = |at: &position::KeyPath, msg: String| {
        let (line, col) = position::of(text, at);
        RecipeError { file: display.to_string(), line, col, msg }
    };
    let recipe: Recipe = toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map(|s| position::line_col(text, s.start)).unwrap_or((1, 1));
        let msg = e.message().replace('\n', " ").trim().to_string();
        RecipeError { file: display.to_string(), line, col, msg }
    })?;
    validate::validate(path, &recipe).map_err(|(at, msg)| error_at(&at, msg))?;
    for name in recipe.arch.keys() {
        if Arch::from_name(name).is_none() {
            let known: Vec<&str> = Arch::VALUES.iter().map(|(_, n, _)| *n).collect();
            return Err(error_at(
                &vec![position::key("arch"), position::key(name)],
                format!("[arch.{name}]: no such architecture (one of {})", known.join(", ")),
            ));
        }
    }
    let Some(over) = recipe.arch.get(arch.name()) else {
        return x86_only_media(&recipe, arch)
            .map(|()| recipe)
            .map_err(|(at, msg)| error_at(&at, msg));
    };
    let at = vec![position::key("arch"), position::key(arch.name())];
    for k in ["name", "version", "arch", "versions"] {
        if over.contains_key(k) {
            return Err(error_at(&at, format!("[arch.{arch}] may not set `{k}`")));
        }
    }
    let mut table: toml::Table = toml::from_str(text).map_err(|e| error_at(&at, e.to_string()))?;
    merge_table(&mut table, over);
    let merged: Recipe = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| {
        error_at(&at, format!("[arch.{arch}] merged: {}", e.message().replace('\n', " ").trim()))
    })?;
    validate::validate(path, &merged)
        .map_err(|(_, msg)| error_at(&at, format!("[arch.{arch}] merged: {msg}")))?;
    x86_only_media(&merged, arch).map_err(|(_, msg)| error_at(&at, msg))?;
    Ok(merged)
}

/// What the media have for x86_64 only, refused for any other architecture: legacy BIOS boot
/// (`[uefi] bios`, `[iso] bios`: SYSLINUX is x86 real-mode code; x86_64 recipes name it in
/// `[arch.x86_64]`), and the OVA and Vagrant box forms, whose descriptors name an x86 guest.
fn x86_only_media(recipe: &Recipe, arch: Arch) -> Result<(), (position::KeyPath, String)> {
    if arch == Arch::X86_64 {
        return Ok(());
    }
    let formats = recipe.uefi.as_ref().map(|u| u.formats.as_slice()).unwrap_or_default();
    if let Some(f) = formats.iter().find(|f| *f == "ova" || *f == "box") {
        return Err((
            vec![position::key("uefi"), position::key("formats")],
            format!("uefi.formats: `{f}` describes an x86 guest and is built for x86_64 only, not {arch}; list it in [arch.x86_64.uefi]"),
        ));
    }
    for (table, bios) in [
        ("uefi", recipe.uefi.as_ref().and_then(|u| u.bios.as_ref())),
        ("iso", recipe.iso.as_ref().and_then(|i| i.bios.as_ref())),
    ] {
        if bios.is_some() {
            return Err((
                vec![position::key(table), position::key("bios")],
                format!("{table}.bios: legacy BIOS boot exists only on x86_64, not {arch}; set it in [arch.x86_64.{table}]"),
            ));
        }
    }
    Ok(())
}

/// `over` merged into `base`: tables key by key (recursively), anything else replaced.
pub fn merge_table(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_table(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Where a node is in its recipe's matrix: at the default version or a `[versions]` key, and
/// without a flavour or with one. The node's name is the recipe's and [`Cell::suffix`].
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Cell {
    /// The `[versions]` key (`6.18`), or the default version.
    pub version: Option<String>,
    /// The `[flavours]` name (`kvm`), or none (the `default` flavour).
    pub flavour: Option<String>,
}

/// The flavour of a node without one, as `plan --matrix` and `[matrix] exclude` name it.
pub(crate) const DEFAULT_FLAVOUR: &str = "default";

impl Cell {
    /// `@6.18`, `+kvm`, `@6.18+kvm`, or nothing for the recipe itself.
    pub(crate) fn suffix(&self) -> String {
        let mut s = String::new();
        if let Some(v) = &self.version {
            s.push('@');
            s.push_str(v);
        }
        if let Some(f) = &self.flavour {
            s.push('+');
            s.push_str(f);
        }
        s
    }

    pub(crate) fn is_default(&self) -> bool {
        self.version.is_none() && self.flavour.is_none()
    }

    /// The cell of a node name (`kernel@6.18+kvm`), with the recipe's name.
    pub(crate) fn of(node: &str) -> (&str, Cell) {
        let (rest, flavour) = match node.split_once('+') {
            Some((r, f)) => (r, Some(f.to_string())),
            None => (node, None),
        };
        let (base, version) = match rest.split_once('@') {
            Some((b, v)) => (b, Some(v.to_string())),
            None => (rest, None),
        };
        (base, Cell { version, flavour })
    }
}

/// A node of the graph: a recipe (at one of its versions) together with where it came from.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    /// The recipe this node builds: at the node's version, its placeholders filled.
    pub recipe: Recipe,
    pub path: PathBuf,
    /// The recipe file's text (error positions).
    pub text: String,
    /// The `[versions]` key and the flavour the node is at: `6.18` and `kvm` for
    /// `kernel@6.18+kvm` and `hd-image@6.18+kvm`.
    pub cell: Cell,
    /// What defines the node besides its files, sources and dependencies (its input hash and
    /// the OCI layouts' recipes digest read it): the file's text without its `[versions]`
    /// table, and the version the node is at.
    pub identity: String,
    /// The recipe at the node's version, placeholders unfilled (`model::graph` fills them).
    pub template: Recipe,
    /// The architecture the node is built for (its `[arch.NAME]` table is merged in).
    pub arch: Arch,
}

impl Loaded {
    pub(crate) fn new(
        recipe: Recipe,
        path: PathBuf,
        text: String,
        cell: Cell,
        identity: String,
    ) -> Loaded {
        Loaded { template: recipe.clone(), recipe, path, text, cell, identity, arch: Arch::X86_64 }
    }

    /// The node's name in the graph: `kernel`, `kernel@6.18`, `hd-image@6.18+kvm`.
    pub(crate) fn node(&self) -> String {
        format!("{}{}", self.recipe.name, self.cell.suffix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Recipe, RecipeError> {
        parse(Path::new("recipes/t.toml"), text, "recipes/t.toml")
    }

    const OK: &str = r#"
name = "t"
version = "1"
[[source]]
file = "t.tar.gz"
sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
size = 3
[build]
script = "true"
"#;

    #[test]
    fn an_arch_table_is_merged_for_its_architecture_only() {
        let text = format!(
            "{OK}outputs = [\"bzImage\"]\n[env]\nA = \"1\"\nB = \"2\"\n\n[arch.aarch64.env]\nB = \"3\"\n[arch.aarch64.build]\noutputs = [\"Image\"]\n"
        );
        let x86 = parse_str(&text).unwrap();
        assert_eq!(x86.build.outputs, ["bzImage"]);
        assert_eq!(x86.env["B"], "2");
        let arm =
            parse_for(Path::new("recipes/t.toml"), &text, "recipes/t.toml", Arch::Aarch64).unwrap();
        // Tables merge key by key (A stays), other values are replaced.
        assert_eq!((arm.env["A"].as_str(), arm.env["B"].as_str()), ("1", "3"));
        assert_eq!(arm.build.outputs, ["Image"]);
        assert_eq!(arm.build.script, "true");
        // An unknown architecture, a renamed recipe, and a merge that breaks the schema are
        // refused at the table, naming it.
        let at = |t: &str| {
            parse_for(Path::new("recipes/t.toml"), t, "recipes/t.toml", Arch::Aarch64)
                .unwrap_err()
                .to_string()
        };
        let e = at(&format!("{OK}\n[arch.arm64.env]\nB = \"3\"\n"));
        assert!(e.contains(":11:") && e.contains("no such architecture"), "{e}");
        let e = at(&format!("{OK}\n[arch.aarch64]\nname = \"u\"\n"));
        assert!(e.contains("may not set `name`"), "{e}");
        let e = at(&format!("{OK}\n[arch.aarch64.build]\noutputs = 3\n"));
        assert!(e.contains("[arch.aarch64] merged") && e.contains(":11:"), "{e}");
        let e = at(&format!("{OK}\n[arch.aarch64]\ntimeout = \"forever\"\n"));
        assert!(e.contains("[arch.aarch64] merged"), "{e}");
    }

    #[test]
    fn parses_a_minimal_recipe() {
        let r = parse_str(OK).unwrap();
        assert_eq!(r.sources[0].strip_components, 1);
        assert!(r.sources[0].unpack);
    }

    #[test]
    fn a_bios_loader_must_be_a_dependency() {
        let media = "deps = [\"k\", \"i\"]\nfiles = [\"o\"]\n";
        let uefi = "[uefi]\nimage = \"i\"\nkernel = \"k\"\nos-release = \"o\"\nbios = \"b\"\n";
        let iso = "[iso]\nkernel = \"k\"\ninitramfs = \"i\"\nos-release = \"o\"\nvolume-id = \"R\"\nbios = \"b\"\n";
        for (table, what) in
            [(uefi, "uefi.bios `b` must be in `deps`"), (iso, "iso.bios `b` must be in `deps`")]
        {
            let text = OK.replace("version = \"1\"\n", &format!("version = \"1\"\n{media}"));
            let e = parse_str(&format!("{text}{table}")).unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
            let with_dep = text.replace("\"i\"]", "\"i\", \"b\"]");
            parse_str(&format!("{with_dep}{table}")).unwrap();
            // BIOS boot is x86's alone: refused for aarch64, in the base recipe or merged in.
            let arm = |t: &str| {
                parse_for(Path::new("recipes/t.toml"), t, "recipes/t.toml", Arch::Aarch64)
                    .unwrap_err()
                    .to_string()
            };
            let e = arm(&format!("{with_dep}{table}"));
            assert!(e.contains("legacy BIOS boot exists only on x86_64"), "{e}");
            let name = if table.starts_with("[uefi]") { "uefi" } else { "iso" };
            let plain = table.replace("bios = \"b\"\n", "");
            let e = arm(&format!("{with_dep}{plain}[arch.aarch64.{name}]\nbios = \"b\"\n"));
            assert!(e.contains("legacy BIOS boot exists only on x86_64"), "{e}");
            let x86 = format!("{with_dep}{plain}[arch.x86_64.{name}]\nbios = \"b\"\n");
            parse_for(Path::new("recipes/t.toml"), &x86, "recipes/t.toml", Arch::Aarch64).unwrap();
            if name == "uefi" {
                let ova = format!("{with_dep}{plain}formats = [\"vmdk\", \"ova\"]\n");
                parse_str(&ova).unwrap();
                let e = arm(&ova);
                assert!(e.contains("`ova` describes an x86 guest"), "{e}");
            }
        }
    }

    #[test]
    fn syntax_error_names_file_line_col() {
        let e = parse_str("name = \"t\"\nversion = \n").unwrap_err().to_string();
        assert!(e.starts_with("recipes/t.toml:2:"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn unknown_key_is_refused() {
        let e = parse_str(&OK.replace("version = \"1\"", "version = \"1\"\nflavour = \"x\""))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("recipes/t.toml:4:"), "{e}");
        assert!(e.contains("unknown field `flavour`"), "{e}");
    }

    #[test]
    fn missing_sha256_is_refused() {
        let text = OK.replace(
            "sha256 = \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"\n",
            "",
        );
        let e = parse_str(&text).unwrap_err().to_string();
        assert!(e.contains("missing field `sha256`"), "{e}");
        assert!(e.starts_with("recipes/t.toml:"), "{e}");
    }

    #[test]
    fn bad_hash_and_name_mismatch() {
        let e = parse_str(&OK.replace("ba7816bf", "zz7816bf")).unwrap_err().to_string();
        assert!(e.contains("64 lowercase hex"), "{e}");
        let e = parse_str(&OK.replace("name = \"t\"", "name = \"u\"")).unwrap_err().to_string();
        assert!(e.contains("must match the file name"), "{e}");
        // The position is the value's, from the parser's spans, not the first place its text
        // appears (here a comment above it that quotes the same bad hash).
        let bad = "zz7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let text = OK
            .replace("version = \"1\"", &format!("version = \"1\"\n# was {bad}"))
            .replace("ba7816bf", "zz7816bf");
        let e = parse_str(&text).unwrap_err().to_string();
        assert!(e.starts_with("recipes/t.toml:7:10:"), "{e}");
    }

    #[test]
    fn other_versions_are_checked_like_the_recipe_itself() {
        let with = |table: &str| parse_str(&format!("{OK}{table}"));
        let source = "file = \"t2.tar\"\nsha256 = \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"\nsize = 3\n";
        let ok =
            format!("[versions.\"2\"]\nversion = \"2.0\"\n[[versions.\"2\".source]]\n{source}");
        assert_eq!(with(&ok).unwrap().versions["2"].sources[0].file, "t2.tar");
        for (table, what) in [
            (ok.replace("\"2\"", "\"-x\""), "recipes/t.toml:10:1: versions key `-x`"),
            (ok.replace("2.0", "1"), "recipes/t.toml:11:11: version `1` is listed twice"),
            (ok.replace("2.0", "{t.version}"), "versions.2.version must be a plain version"),
            (ok.replace("ba7816bf", "zz7816bf"), "recipes/t.toml:14:10: source `t2.tar`: sha256"),
            (
                ok.replace("version = \"2.0\"", "version = \"2.0\"\ncolour = 1"),
                "unknown field `colour`",
            ),
        ] {
            let e = with(&table).unwrap_err().to_string();
            assert!(e.contains(what), "{table}: {e}");
        }
    }

    #[test]
    fn debian_fields_follow_debian_syntax() {
        let with = |pkg: &str, ver: &str, file: &str| {
            let text = OK.replace(
                "size = 3\n",
                &format!("size = 3\ndebian = {{ package = \"{pkg}\", version = \"{ver}\", file = \"{file}\" }}\n"),
            );
            parse_str(&text)
        };
        assert!(with("busybox", "1:1.35.0-4+deb12u1", "busybox_1.35.0.orig.tar.bz2").is_ok());
        for (pkg, ver, file, what) in [
            ("", "1", "f.tar", "debian.package ``"),
            ("B", "1", "f.tar", "debian.package `B`"),
            ("a/b", "1", "f.tar", "debian.package `a/b`"),
            ("busybox", "x1", "f.tar", "debian.version `x1`"),
            ("busybox", "1 2", "f.tar", "debian.version `1 2`"),
            ("busybox", "1", "../f.tar", "debian.file `../f.tar`"),
            ("busybox", "1", "a/f.tar", "debian.file `a/f.tar`"),
        ] {
            let e = with(pkg, ver, file).unwrap_err().to_string();
            assert!(
                e.starts_with("recipes/t.toml:") && e.contains(what),
                "{pkg} {ver} {file}: {e}"
            );
        }
    }

    #[test]
    fn absolute_and_parent_paths_are_refused_with_their_position() {
        let rootfs = |table: &str| {
            parse_str(&format!(
                "name = \"t\"\nversion = \"1\"\ndeps = [\"d\"]\n[rootfs]\n{table}\n[build]\noutputs = []\n"
            ))
        };
        for (table, line, what) in [
            (
                "install = [\"d:bin/x -> /bin/x\", \"d:../../etc/passwd -> etc/x\"]",
                5,
                "must not contain `..`",
            ),
            ("install = [\"d:/etc/passwd -> etc/x\"]", 5, "must be a relative path"),
            ("install = [\"e:bin/x -> bin/x\"]", 5, "not in `deps`"),
            ("applet-links = \"d:../links\"", 5, "must not contain `..`"),
            ("overlays = [\"/home/me/overlay\"]", 5, "must be a relative path"),
            ("overlays = [\"../elsewhere\"]", 5, "must not contain `..`"),
            ("dirs = [\"../tmp:1777\"]", 5, "must not contain `..`"),
            ("devices = [\"dev/../../x c 1 3 0666\"]", 5, "must not contain `..`"),
            ("symlinks = [\"../l -> /x\"]", 5, "must not contain `..`"),
        ] {
            let e = rootfs(table).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("recipes/t.toml:{line}:")) && e.contains(what),
                "{table}: {e}"
            );
        }
        // Absolute paths inside the rootfs mean its top, and symlink targets are content.
        assert!(rootfs("install = [\"d:bin/x -> /bin/x\"]\nsymlinks = [\"init -> /bin/busybox\"]")
            .is_ok());
        let e =
            parse_str(&OK.replace("version = \"1\"", "version = \"1\"\nfiles = [\"/etc/passwd\"]"))
                .unwrap_err()
                .to_string();
        assert!(e.contains("must be a relative path"), "{e}");
    }

    #[test]
    fn timeouts_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("4h"), Ok(Duration::from_secs(14400)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        for bad in ["", "0s", "10", "1d", "m", "-1m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let e = parse_str(&OK.replace("version = \"1\"", "version = \"1\"\ntimeout = \"soon\""))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("recipes/t.toml:4:11:") && e.contains("timeout `soon`"), "{e}");
        assert_eq!(parse_str(OK).unwrap().timeout().unwrap(), DEFAULT_TIMEOUT);
    }

    #[test]
    fn line_col_is_one_based() {
        assert_eq!(position::line_col("ab\ncd", 0), (1, 1));
        assert_eq!(position::line_col("ab\ncd", 4), (2, 2));
    }
}
