//! The checks after parsing: names, hashes, Debian fields, paths, the step sections and how
//! they refer to dependencies and files. Each failure is the key path of the value it is
//! about and a message; `parse` turns the path into a line and column.

use super::debian_fields::{is_debian_file, is_debian_package, is_debian_version};
use super::position::{index, key, KeyPath};
use super::syntax::{
    dep_path, is_media_type, is_oci_tag, parse_device, parse_dir, parse_duration, parse_install,
    parse_symlink, tree_path,
};
use super::{placeholders, OciSpec, Recipe, DISK_FORMATS};
use reprovm_fs::hash::is_sha256_hex;
use std::path::Path;

type Invalid = (KeyPath, String);

pub(crate) fn validate(path: &Path, r: &Recipe) -> Result<(), Invalid> {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if r.name != stem {
        return Err((
            vec![key("name")],
            format!("recipe name `{}` must match the file name `{stem}.toml`", r.name),
        ));
    }
    if r.name.is_empty()
        || !r.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err((
            vec![key("name")],
            format!("recipe name `{}` may only use letters, digits, '-', '_' and '.'", r.name),
        ));
    }
    validate_sources(&r.sources, &[])?;
    if let Some(l) = &r.license {
        if !is_license_expression(l) {
            return Err((
                vec![key("license")],
                format!("license `{l}` is not an SPDX expression (e.g. \"GPL-2.0-only\", \"MIT OR Apache-2.0\")"),
            ));
        }
    }
    validate_versions(r)?;
    validate_flavours(r)?;
    validate_placeholders(r)?;
    for (n, f) in r.files.iter().enumerate() {
        tree_path(f, false)
            .map_err(|e| (vec![key("files"), index(n)], format!("file {e} inside recipes/")))?;
    }
    if let Some(k) = &r.kconfig {
        tree_path(&k.config, false).map_err(|e| {
            (
                vec![key("kconfig"), key("config")],
                format!("kconfig.config {e} inside the build directory"),
            )
        })?;
        for (n, frag) in k.fragments.iter().enumerate() {
            let at = vec![key("kconfig"), key("fragments"), index(n)];
            tree_path(frag, false)
                .map_err(|e| (at.clone(), format!("file {e} inside recipes/")))?;
            if !r.files.contains(frag) {
                return Err((
                    at,
                    format!("kconfig fragment `{frag}` must also be listed in `files`"),
                ));
            }
        }
    }
    if let Some(fs) = &r.rootfs {
        let at = |k: &str, n: usize| vec![key("rootfs"), key(k), index(n)];
        for (n, i) in fs.install.iter().enumerate() {
            let inst = parse_install(i).map_err(|e| (at("install", n), e))?;
            if !r.deps.contains(&inst.dep) {
                return Err((
                    at("install", n),
                    format!("install from `{}`, which is not in `deps`", inst.dep),
                ));
            }
        }
        for (n, d) in fs.dirs.iter().enumerate() {
            parse_dir(d).map_err(|e| (at("dirs", n), e))?;
        }
        for (n, l) in fs.symlinks.iter().enumerate() {
            parse_symlink(l).map_err(|e| (at("symlinks", n), e))?;
        }
        for (n, d) in fs.devices.iter().enumerate() {
            parse_device(d).map_err(|e| (at("devices", n), e))?;
        }
        if let Some(a) = &fs.applet_links {
            dep_path(a).map_err(|e| {
                (vec![key("rootfs"), key("applet-links")], format!("applet-links {e}"))
            })?;
        }
        for (k, list) in [("debian", &fs.debian), ("debian-exclude", &fs.debian_exclude)] {
            for (n, p) in list.iter().enumerate() {
                let ok = p.len() >= 2
                    && p.as_bytes()[0].is_ascii_alphanumeric()
                    && p.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b)
                    });
                if !ok {
                    return Err((
                        at(k, n),
                        format!("`{p}` is not a Debian package name (lowercase letters, digits, `+-.`, at least 2)"),
                    ));
                }
            }
        }
        for (n, o) in fs.overlays.iter().enumerate() {
            tree_path(o, false)
                .map_err(|e| (at("overlays", n), format!("overlay {e} inside recipes/")))?;
        }
        if let Some(o) = &fs.os_release {
            if !r.files.contains(o) {
                return Err((
                    vec![key("rootfs"), key("os-release")],
                    format!("os-release `{o}` must also be listed in `files`"),
                ));
            }
        }
        for (n, l) in fs.library_path.iter().enumerate() {
            if l.split('/').any(|c| c == "..") || !l.starts_with('/') {
                return Err((at("library-path", n), format!("library-path `{l}` must be an absolute directory of the toolchain, without `..`")));
            }
        }
    }
    if let Some(img) = &r.image {
        let own = img.rootfs == r.name && r.rootfs.is_some();
        if !own && !r.deps.contains(&img.rootfs) {
            return Err((vec![key("image"), key("rootfs")], format!(
                "image rootfs `{}` must be a dependency (or this recipe itself, when it has [rootfs])",
                img.rootfs
            )));
        }
        let label_ok = !img.label.is_empty()
            && img.label.len() <= 16
            && img.label.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !label_ok {
            return Err((
                vec![key("image"), key("label")],
                format!("image label `{}`: 1 to 16 of A-Z a-z 0-9 . _ -", img.label),
            ));
        }
    }
    if let Some(v) = r.env.get("SOURCE_DATE_EPOCH") {
        if v.parse::<u64>().is_err() {
            return Err((
                vec![key("env"), key("SOURCE_DATE_EPOCH")],
                format!("SOURCE_DATE_EPOCH `{v}` must be a whole number of seconds"),
            ));
        }
    }
    if let Some(t) = &r.timeout {
        parse_duration(t).map_err(|e| (vec![key("timeout")], e))?;
    }
    if let Some(o) = &r.oci {
        validate_oci(o)?;
    }
    validate_media(r)?;
    if r.rootfs.is_none()
        && r.image.is_none()
        && r.oci.is_none()
        && r.initramfs.is_none()
        && r.uefi.is_none()
        && r.iso.is_none()
        && r.build.script.trim().is_empty()
    {
        return Err((
            vec![key("build")],
            "[build] needs a `script` (or the recipe needs [rootfs], [image], [oci], [initramfs], [uefi] or [iso])".into(),
        ));
    }
    Ok(())
}

/// `[[source]]` tables (of the recipe, or of one of its `[versions.KEY]` under `prefix`).
fn validate_sources(
    sources: &[super::SourcePin],
    prefix: &[super::position::Step],
) -> Result<(), Invalid> {
    for (n, s) in sources.iter().enumerate() {
        let at = |k: &str| [prefix, &[key("source"), index(n), key(k)]].concat();
        if !is_sha256_hex(&s.sha256) {
            return Err((
                at("sha256"),
                format!("source `{}`: sha256 must be 64 lowercase hex digits", s.file),
            ));
        }
        if s.file.contains('/') || s.file.is_empty() {
            return Err((
                at("file"),
                format!("source file name `{}` must be a plain file name", s.file),
            ));
        }
        if let Some(d) = &s.debian {
            let at = |k: &str| [prefix, &[key("source"), index(n), key("debian"), key(k)]].concat();
            if !is_debian_package(&d.package) {
                return Err((at("package"), format!(
                    "debian.package `{}` is not a Debian package name (lowercase letters, digits, `+-.`, at least 2)",
                    d.package
                )));
            }
            if !is_debian_version(&d.version) {
                return Err((
                    at("version"),
                    format!(
                        "debian.version `{}` is not a Debian version ([EPOCH:]UPSTREAM[-REVISION])",
                        d.version
                    ),
                ));
            }
            if let Some(t) =
                d.snapshot.as_deref().filter(|t| !crate::mechanisms::debian::is_snapshot_time(t))
            {
                return Err((
                    at("snapshot"),
                    format!("debian.snapshot `{t}` is not a snapshot time like 20261123T120000Z"),
                ));
            }
            if !is_debian_file(&d.file) {
                return Err((
                    at("file"),
                    format!("debian.file `{}` must be a plain file name of the pool", d.file),
                ));
            }
        }
    }
    Ok(())
}

/// `[versions.KEY]`: keys usable after `@`, versions distinct, their sources valid.
/// The shape of an SPDX license expression: identifiers (`GPL-2.0-or-later`,
/// `LicenseRef-x`) joined by AND, OR and WITH, with parentheses. Whether an identifier is on
/// SPDX's list is left to the SBOM's readers.
fn is_license_expression(s: &str) -> bool {
    let spaced = s.replace('(', " ( ").replace(')', " ) ");
    let mut depth = 0i32;
    let mut want_id = true;
    for t in spaced.split_whitespace() {
        match t {
            "(" if want_id => depth += 1,
            ")" if !want_id => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            "AND" | "OR" | "WITH" if !want_id => want_id = true,
            id if want_id
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.+:".contains(&b)) =>
            {
                want_id = false
            }
            _ => return false,
        }
    }
    depth == 0 && !want_id
}

fn validate_versions(r: &Recipe) -> Result<(), Invalid> {
    let mut seen = vec![r.version.as_str()];
    for (k, v) in &r.versions {
        let at = vec![key("versions"), key(k)];
        let key_ok = k.len() <= 64
            && k.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !key_ok {
            return Err((at, format!("versions key `{k}`: 1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or digit (it is used as `{}@{k}`)", r.name)));
        }
        let mut at_version = at.clone();
        at_version.push(key("version"));
        if v.version.is_empty() || placeholders::has_any(&v.version) {
            return Err((at_version, format!("versions.{k}.version must be a plain version")));
        }
        if seen.contains(&v.version.as_str()) {
            return Err((at_version, format!("version `{}` is listed twice", v.version)));
        }
        seen.push(&v.version);
        validate_sources(&v.sources, &at)?;
    }
    if !r.versions.is_empty() && placeholders::has_any(&r.version) {
        return Err((vec![key("version")], "a recipe with [versions] has a plain version".into()));
    }
    Ok(())
}

/// `[flavours.NAME]`: names usable in a node name and a tag, fragments of a kernel recipe;
/// `[matrix] exclude`: every field names a version, flavour or architecture the recipe has.
fn validate_flavours(r: &Recipe) -> Result<(), Invalid> {
    for (name, f) in &r.flavours {
        let at = vec![key("flavours"), key(name)];
        let name_ok = name.len() <= 32
            && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok || name == super::DEFAULT_FLAVOUR {
            return Err((at, format!("flavour `{name}`: 1 to 32 of a-z 0-9 -, starting with a letter, not `default` (it is used as `{}+{name}` and in tags)", r.name)));
        }
        if r.kconfig.is_none() {
            return Err((
                at,
                "[flavours] are kernel config fragments: the recipe needs [kconfig]".into(),
            ));
        }
        if f.fragments.is_empty() {
            return Err((at, format!("flavours.{name}.fragments is empty")));
        }
        if let Some(k) = f.append_env.keys().find(|k| !r.env.contains_key(*k)) {
            return Err((
                vec![key("flavours"), key(name), key("append-env"), key(k)],
                format!("flavours.{name}.append-env: `{k}` is not in [env]; it appends to a value the recipe sets (e.g. KERNEL_FRAGMENTS)"),
            ));
        }
        for (n, frag) in f.fragments.iter().enumerate() {
            tree_path(frag, false).map_err(|e| {
                (
                    vec![key("flavours"), key(name), key("fragments"), index(n)],
                    format!("file {e} inside recipes/"),
                )
            })?;
        }
    }
    for (n, e) in r.matrix.exclude.iter().enumerate() {
        let at = |k: &str| vec![key("matrix"), key("exclude"), index(n), key(k)];
        if let Some(v) = &e.version {
            let known = v == &r.version
                || r.versions.contains_key(v)
                || r.versions.values().any(|o| &o.version == v);
            if !known {
                let mut keys = vec![r.version.clone()];
                keys.extend(r.versions.keys().cloned());
                return Err((
                    at("version"),
                    format!(
                        "matrix.exclude: `{}` has no version `{v}` (one of {})",
                        r.name,
                        keys.join(", ")
                    ),
                ));
            }
        }
        if let Some(f) = &e.flavour {
            if f != super::DEFAULT_FLAVOUR && !r.flavours.contains_key(f) {
                let mut names = vec![super::DEFAULT_FLAVOUR.to_string()];
                names.extend(r.flavours.keys().cloned());
                return Err((
                    at("flavour"),
                    format!(
                        "matrix.exclude: `{}` has no flavour `{f}` (one of {})",
                        r.name,
                        names.join(", ")
                    ),
                ));
            }
        }
        if let Some(a) = &e.arch {
            if crate::model::arch::Arch::from_name(a).is_none() {
                let known: Vec<&str> =
                    crate::model::arch::Arch::VALUES.iter().map(|(_, n, _)| *n).collect();
                return Err((
                    at("arch"),
                    format!("matrix.exclude: no architecture `{a}` (one of {})", known.join(", ")),
                ));
            }
        }
        if e.reason.trim().is_empty() {
            return Err((at("reason"), "matrix.exclude: say why (`reason`)".into()));
        }
    }
    Ok(())
}

/// `{DEP.version}` / `{DEP.debian-version}` name dependencies; OCI tags are tags once filled.
fn validate_placeholders(r: &Recipe) -> Result<(), Invalid> {
    let check = |value: &str, at: KeyPath| -> Result<(), Invalid> {
        for p in placeholders::find(value) {
            if !r.deps.contains(&p.dep) {
                return Err((
                    at,
                    format!(
                        "`{{{}.{}}}` names `{}`, which is not in `deps`",
                        p.dep, p.field, p.dep
                    ),
                ));
            }
        }
        Ok(())
    };
    check(&r.version, vec![key("version")])?;
    for (k, v) in &r.env {
        check(v, vec![key("env"), key(k)])?;
    }
    if let Some(o) = &r.oci {
        for (n, t) in o.tags.iter().enumerate() {
            check(t, vec![key("oci"), key("tags"), index(n)])?;
        }
        for (k, v) in &o.annotations {
            check(v, vec![key("oci"), key("annotations"), key(k)])?;
        }
    }
    Ok(())
}

/// `[initramfs]`, `[uefi]`, `[iso]`: their dependencies are dependencies, their os-release a
/// declared file, formats and volume ids valid.
fn validate_media(r: &Recipe) -> Result<(), Invalid> {
    let dep = |d: &String, at: KeyPath, what: &str| -> Result<(), Invalid> {
        if r.deps.contains(d) {
            Ok(())
        } else {
            Err((at, format!("{what} `{d}` must be in `deps`")))
        }
    };
    let file = |f: &String, at: KeyPath| -> Result<(), Invalid> {
        if r.files.contains(f) {
            Ok(())
        } else {
            Err((at, format!("os-release `{f}` must also be listed in `files`")))
        }
    };
    if let Some(i) = &r.initramfs {
        dep(&i.rootfs, vec![key("initramfs"), key("rootfs")], "initramfs.rootfs")?;
    }
    if let Some(u) = &r.uefi {
        let at = |k: &str| vec![key("uefi"), key(k)];
        dep(&u.image, at("image"), "uefi.image")?;
        dep(&u.kernel, at("kernel"), "uefi.kernel")?;
        file(&u.os_release, at("os-release"))?;
        if let Some(b) = &u.bios {
            dep(b, at("bios"), "uefi.bios")?;
        }
        if let Some(n) = u.formats.iter().position(|f| !DISK_FORMATS.contains(&f.as_str())) {
            return Err((
                vec![key("uefi"), key("formats"), index(n)],
                format!("uefi format `{}`: one of {}", u.formats[n], DISK_FORMATS.join(", ")),
            ));
        }
        for (form, carried) in [("ova", "vmdk"), ("box", "qcow2")] {
            if u.formats.iter().any(|f| f == form) && !u.formats.iter().any(|f| f == carried) {
                return Err((
                    at("formats"),
                    format!("uefi format `{form}` carries the `{carried}`: name it too"),
                ));
            }
        }
        if u.esp_size_mib.is_some_and(|m| !(33..=4096).contains(&m)) {
            return Err((
                at("esp-size-mib"),
                "esp-size-mib: 33 to 4096 (a FAT32 EFI system partition)".into(),
            ));
        }
    }
    if let Some(i) = &r.iso {
        let at = |k: &str| vec![key("iso"), key(k)];
        dep(&i.kernel, at("kernel"), "iso.kernel")?;
        dep(&i.initramfs, at("initramfs"), "iso.initramfs")?;
        file(&i.os_release, at("os-release"))?;
        if let Some(b) = &i.bios {
            dep(b, at("bios"), "iso.bios")?;
        }
        let ok = (1..=32).contains(&i.volume_id.len())
            && i.volume_id
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err((
                at("volume-id"),
                format!("iso volume-id `{}`: 1 to 32 of A-Z 0-9 _", i.volume_id),
            ));
        }
    }
    Ok(())
}

/// `[oci]`: an image or an artifact, never both; valid tags, media types and paths.
fn validate_oci(o: &OciSpec) -> Result<(), Invalid> {
    let at = |k: &str| vec![key("oci"), key(k)];
    match (&o.layer, &o.artifact_type, o.files.is_empty()) {
        (Some(l), None, true) => {
            tree_path(l, false)
                .map_err(|e| (at("layer"), format!("oci.layer {e} inside the build directory")))?;
        }
        (None, Some(_), false) => {}
        _ => {
            return Err((
                vec![key("oci")],
                "[oci] is an image (`layer`) or an artifact (`artifact-type` and [[oci.file]]), not both or neither".into(),
            ))
        }
    }
    if o.artifact_type.is_some() && o.architecture.is_some() {
        return Err((at("architecture"), "oci.architecture is for images (`layer`)".into()));
    }
    let tags = o.tags.iter().enumerate().map(|(n, t)| (n, t, "tags"));
    let newest = o.newest_tags.iter().enumerate().map(|(n, t)| (n, t, "newest-tags"));
    for (n, t, field) in tags.chain(newest) {
        // A placeholder stands for a version: check the tag with a version in its place.
        let filled = placeholders::expand(t, |_, _| Ok("1.0".into())).unwrap_or_default();
        if !is_oci_tag(&filled) {
            return Err((
                vec![key("oci"), key(field), index(n)],
                format!("oci tag `{t}`: 1 to 128 of A-Z a-z 0-9 . _ -, not starting with . or -"),
            ));
        }
    }
    let media = |m: &str, at: KeyPath| -> Result<(), Invalid> {
        if is_media_type(m) {
            Ok(())
        } else {
            Err((at, format!("`{m}` is not a media type (type/subtype)")))
        }
    };
    let file = |f: &super::OciFile, at: KeyPath| -> Result<(), Invalid> {
        let mut m = at.clone();
        m.push(key("media-type"));
        media(&f.media_type, m)?;
        let mut p = at;
        p.push(key("path"));
        tree_path(&f.path, false)
            .map_err(|e| (p, format!("oci file {e} inside the build directory")))?;
        Ok(())
    };
    if let Some(t) = &o.artifact_type {
        media(t, at("artifact-type"))?;
    }
    for (n, f) in o.files.iter().enumerate() {
        file(f, vec![key("oci"), key("file"), index(n)])?;
    }
    for (n, r) in o.referrers.iter().enumerate() {
        let here = vec![key("oci"), key("referrer"), index(n)];
        let mut t = here.clone();
        t.push(key("artifact-type"));
        media(&r.artifact_type, t.clone())?;
        if r.files.is_empty() {
            return Err((t, "an oci referrer needs at least one [[file]]".into()));
        }
        for (j, f) in r.files.iter().enumerate() {
            let mut at = here.clone();
            at.extend([key("file"), index(j)]);
            file(f, at)?;
        }
    }
    if let Some(k) = o.annotations.keys().find(|k| k.is_empty() || k.contains(char::is_whitespace))
    {
        return Err((
            vec![key("oci"), key("annotations"), key(k)],
            format!("oci annotation key `{k}` is empty or has spaces"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn license_expressions() {
        for ok in [
            "MIT",
            "GPL-2.0-only",
            "(MIT OR Apache-2.0) AND BSD-3-Clause",
            "GPL-2.0-only WITH Linux-syscall-note",
        ] {
            assert!(super::is_license_expression(ok), "{ok}");
        }
        for bad in ["", "MIT OR", "(MIT", "MIT)", "GPL v2", "MIT AND AND BSD", "MIT; rm"] {
            assert!(!super::is_license_expression(bad), "{bad}");
        }
    }
}
