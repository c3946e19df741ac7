//! The graph's tests: versions, flavours, exclusions, placeholders, cycles.
use super::*;

fn write(dir: &Path, name: &str, deps: &[&str]) {
    let deps: Vec<String> = deps.iter().map(|d| format!("\"{d}\"")).collect();
    let text = format!(
        "name = \"{name}\"\nversion = \"1\"\ndeps = [{}]\n[build]\nscript = \"true\"\n",
        deps.join(", ")
    );
    std::fs::write(dir.join(format!("{name}.toml")), text).unwrap();
}

#[test]
fn use_of_an_unknown_dependency_name_is_an_error() {
    let t = tempfile::tempdir().unwrap();
    for (n, deps) in [("a", "[]"), ("b", "[\"a\"]"), ("a2", "[]")] {
        std::fs::write(
            t.path().join(format!("{n}.toml")),
            format!("name = \"{n}\"\nversion = \"1\"\ndeps = {deps}\n[build]\nscript = \"true\"\n"),
        )
        .unwrap();
    }
    let g = || Graph::load(t.path()).unwrap();
    assert_eq!(g().with_aliases(&["a=a2".into()]).unwrap().resolve("a"), "a2");
    let e = g().with_aliases(&["typo=a2".into()]).unwrap_err().to_string();
    assert!(e.contains("no recipe depends on `typo`") && e.contains("substituted: a"), "{e}");
    let e = format!("{:#}", g().with_aliases(&["a=nope".into()]).unwrap_err());
    assert!(e.contains("unknown target `nope`"), "{e}");
}

#[test]
fn closure_is_topological() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("recipes");
    std::fs::create_dir(&d).unwrap();
    write(&d, "a", &["b", "c"]);
    write(&d, "b", &["c"]);
    write(&d, "c", &[]);
    let g = Graph::load(&d).unwrap();
    assert_eq!(g.closure("a").unwrap(), vec!["c", "b", "a"]);
}

#[test]
fn cycle_and_unknown_dependency_name_the_file() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("recipes");
    std::fs::create_dir(&d).unwrap();
    write(&d, "a", &["b"]);
    write(&d, "b", &["a"]);
    let e = format!("{:#}", Graph::load(&d).unwrap_err());
    assert!(e.starts_with("recipes/a.toml: dependency cycle: a -> b -> a"), "{e}");
    assert!(!e.contains('\n'));
    write(&d, "b", &["zzz"]);
    let e = format!("{:#}", Graph::load(&d).unwrap_err());
    assert!(e.starts_with("recipes/b.toml:3:"), "{e}");
    assert!(e.contains("unknown dependency `zzz`"), "{e}");
}

/// A kernel with another version, an image and an OCI layout over it.
fn versioned(d: &Path, extra_version: bool) -> Graph {
    let versions = if extra_version {
        "[versions.\"2.1\"]\nversion = \"2.1.5\"\n[[versions.\"2.1\".source]]\nfile = \"k-2.1.5.tar\"\nsha256 = \"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"\nsize = 2\ndebian = { package = \"linux\", version = \"2.1.5-1~bpo13+1\", file = \"linux_2.1.5.orig.tar.xz\" }\n\n"
    } else {
        ""
    };
    let kernel = format!("name = \"k\"\nversion = \"1.9.0\"\n\n[[source]]\nfile = \"k-1.9.0.tar\"\nsha256 = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\nsize = 1\ndebian = {{ package = \"linux\", version = \"1.9.0-1\", file = \"linux_1.9.0.orig.tar.xz\" }}\n\n{versions}[build]\nscript = \"true\"\n");
    std::fs::write(d.join("k.toml"), kernel).unwrap();
    write(d, "tool", &[]);
    write(d, "image", &["k", "tool"]);
    std::fs::write(
        d.join("layout.toml"),
        "name = \"layout\"\nversion = \"{k.version}\"\ndeps = [\"k\"]\n[env]\nTAGS = \"{k.version}\"\n[build]\nscript = \"true\"\n[oci]\ntags = [\"{k.version}\"]\nnewest-tags = [\"latest\"]\nlayer = \"root\"\n[oci.annotations]\nrevision = \"debian/{k.debian-version}\"\n",
    )
    .unwrap();
    Graph::load(d).unwrap()
}

#[test]
fn other_versions_are_nodes_and_what_is_over_them_follows() {
    let t = tempfile::tempdir().unwrap();
    let g = versioned(t.path(), true);
    let names: Vec<&str> = g.recipes.keys().map(String::as_str).collect();
    assert_eq!(names, ["image", "image@2.1", "k", "k@2.1", "layout", "layout@2.1", "tool"]);
    assert_eq!(g.closure("image@2.1").unwrap(), ["k@2.1", "tool", "image@2.1"]);
    assert_eq!(g.dep_node("image@2.1", "tool"), "tool");
    let k = &g.recipes["k@2.1"].recipe;
    assert_eq!((k.version.as_str(), k.sources[0].file.as_str()), ("2.1.5", "k-2.1.5.tar"));
    // Placeholders follow the node's dependency; the newest version gets the moving tag.
    let oci = |n: &str| {
        let r = &g.recipes[n].recipe;
        let o = r.oci.as_ref().unwrap();
        (
            r.version.clone(),
            o.tags.clone(),
            o.annotations["revision"].clone(),
            r.env["TAGS"].clone(),
        )
    };
    assert_eq!(
        oci("layout"),
        ("1.9.0".into(), vec!["1.9.0".to_string()], "debian/1.9.0-1".into(), "1.9.0".into())
    );
    assert_eq!(
        oci("layout@2.1"),
        (
            "2.1.5".into(),
            vec!["2.1.5".to_string(), "latest".into()],
            "debian/2.1.5-1~bpo13+1".into(),
            "2.1.5".into()
        )
    );
    // --use applies: `layout` over k@2.1 is at k@2.1's version, and the newest.
    let g = versioned(t.path(), true).with_aliases(&["k=k@2.1".into()]).unwrap();
    let o = g.recipes["layout"].recipe.oci.clone().unwrap();
    assert_eq!(o.tags, ["2.1.5", "latest"]);
    let e = format!("{:#}", g.get("k@9").unwrap_err());
    assert!(e.contains("no recipe has a version 9 (NAME@KEY: KEY one of 2.1)"), "{e}");
}

/// The versioned kernel and its layout, with flavours `kvm` and `bpf` when `flavours`.
fn flavoured(d: &Path, flavours: bool) -> Graph {
    versioned(d, true);
    let path = d.join("k.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut text = text.replace(
        "[build]",
        "[kconfig]\nconfig = \"c\"\nfragments = [\"k/base.config\"]\n\n[env]\nFRAGMENTS = \"k/base.config\"\n\n[build]",
    );
    text =
        text.replace("version = \"1.9.0\"\n", "version = \"1.9.0\"\nfiles = [\"k/base.config\"]\n");
    if flavours {
        text.push_str("\n[flavours.kvm]\nfragments = [\"k/kvm.config\"]\nappend-env = { FRAGMENTS = \"k/kvm.config\" }\n[flavours.bpf]\nfragments = [\"k/bpf.config\"]\n[matrix]\nexclude = [{ version = \"2.1\", flavour = \"bpf\", reason = \"not this one\" }]\n");
    }
    std::fs::write(&path, text).unwrap();
    Graph::load(d).unwrap()
}

#[test]
fn flavours_are_cells_that_leave_every_other_node_alone() {
    let t = tempfile::tempdir().unwrap();
    let plain = flavoured(t.path(), false);
    let g = flavoured(t.path(), true);
    // Every node the recipe had before is defined as before.
    for (name, l) in &plain.recipes {
        assert_eq!(g.recipes[name].identity, l.identity, "{name}");
    }
    // A cell per version and flavour, and the layout over each.
    for n in ["k+kvm", "k+bpf", "k@2.1+kvm", "k@2.1+bpf", "layout+kvm", "layout@2.1+kvm"] {
        assert!(g.recipes.contains_key(n), "{n}: {:?}", g.recipes.keys().collect::<Vec<_>>());
    }
    let kvm = &g.recipes["k@2.1+kvm"];
    assert_eq!(kvm.recipe.version, "2.1.5");
    assert_eq!(kvm.recipe.files, ["k/base.config", "k/kvm.config"]);
    assert_eq!(kvm.recipe.kconfig.as_ref().unwrap().fragments, ["k/base.config", "k/kvm.config"]);
    assert_eq!(kvm.recipe.env["FRAGMENTS"], "k/base.config k/kvm.config");
    assert_ne!(kvm.identity, g.recipes["k@2.1"].identity);
    assert_ne!(g.recipes["k+kvm"].identity, g.recipes["k+bpf"].identity);
    // Dependencies follow the cell; tags get the flavour.
    assert_eq!(g.dep_node("layout@2.1+kvm", "k"), "k@2.1+kvm");
    assert_eq!(g.dep_node("layout+bpf", "k"), "k+bpf");
    let tags = |n: &str| g.recipes[n].recipe.oci.clone().unwrap().tags;
    assert_eq!(tags("layout@2.1+kvm"), ["2.1.5-kvm", "latest-kvm"]);
    assert_eq!(tags("layout+kvm"), ["1.9.0-kvm"]);
    assert_eq!(tags("layout@2.1"), ["2.1.5", "latest"]);
    // The excluded cell, and what is over it, are unavailable with the reason.
    for n in ["k@2.1+bpf", "layout@2.1+bpf"] {
        let why = g.recipes[n].recipe.unavailable.clone().unwrap_or_default();
        assert!(
            why.contains("excluded from the matrix") && why.contains("not this one"),
            "{n}: {why}"
        );
    }
    assert!(g.recipes["k+bpf"].recipe.unavailable.is_none());
    let e = format!("{:#}", g.get("k+btf").unwrap_err());
    assert!(
        e.contains("no recipe has a flavour btf (NAME+FLAVOUR: FLAVOUR one of bpf, kvm)"),
        "{e}"
    );
}

#[test]
fn listing_another_version_leaves_existing_nodes_alone() {
    let t = tempfile::tempdir().unwrap();
    let one = versioned(t.path(), false);
    let two = versioned(t.path(), true);
    assert_eq!(one.recipes["k"].identity, two.recipes["k"].identity);
    assert_ne!(two.recipes["k"].identity, two.recipes["k@2.1"].identity);
    // Alone, k is the newest version: its layout carries the moving tag.
    assert_eq!(one.recipes["layout"].recipe.oci.as_ref().unwrap().tags, ["1.9.0", "latest"]);
    assert_eq!(two.recipes["layout"].recipe.oci.as_ref().unwrap().tags, ["1.9.0"]);
}

#[test]
fn a_placeholder_naming_no_dependency_is_refused_where_it_is() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("recipes");
    std::fs::create_dir(&d).unwrap();
    write(&d, "k", &[]);
    std::fs::write(
        d.join("x.toml"),
        "name = \"x\"\nversion = \"{kernel.version}\"\ndeps = [\"k\"]\n[build]\nscript = \"true\"\n",
    )
    .unwrap();
    let e = format!("{:#}", Graph::load(&d).unwrap_err());
    assert!(
        e.starts_with(
            "recipes/x.toml:2:11: `{kernel.version}` names `kernel`, which is not in `deps`"
        ),
        "{e}"
    );
    // A dependency without a Debian source has no debian-version.
    std::fs::write(
        d.join("x.toml"),
        "name = \"x\"\nversion = \"{k.debian-version}\"\ndeps = [\"k\"]\n[build]\nscript = \"true\"\n",
    )
    .unwrap();
    let e = format!("{:#}", Graph::load(&d).unwrap_err());
    assert!(e.contains("`{k.debian-version}`: k has no source from the Debian archive"), "{e}");
}
