//! The engine's layers, held by reading its imports (in the style of rust-analyzer's `tidy`):
//! a module imports only from its own layer or a lower one, and the modules form no cycle.
//! The layers, top to bottom, are the engine's top-level directories:
//!
//! `ops` (operations) > `steps` (steps and providers) > `model` > `mechanisms`
//!
//! A module is a top-level directory's child (`steps/media`, `model/store`); files of one
//! module (`steps/media/gpt.rs`, `steps/media/mod.rs`) may import each other freely. Tests
//! (`#[cfg(test)]` blocks) are held to the same line. The crates below the engine (reprovm-oci,
//! reprovm-sandbox, reprovm-fs) cannot import it at all: the compiler holds that.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The engine's layers, highest first.
const LAYERS: [&str; 4] = ["ops", "steps", "model", "mechanisms"];

/// An import of another module: where, what, and from which module.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Import {
    file: String,
    line: usize,
    /// The importing module (`steps::media`).
    from: String,
    /// The imported module (`model::store`).
    to: String,
    /// What is imported (`store::InputHashes`).
    names: String,
}

/// The module a file belongs to: its layer and the first path component below it.
fn module_of(file: &str) -> Option<String> {
    let mut parts = file.trim_end_matches(".rs").split('/');
    let layer = parts.next()?;
    let module = parts.next().unwrap_or("mod");
    LAYERS.contains(&layer).then(|| format!("{layer}::{module}"))
}

fn layer_rank(module: &str) -> Option<usize> {
    let layer = module.split("::").next()?;
    LAYERS.iter().position(|l| *l == layer)
}

/// `line` with every `super::` path written from the crate root (`use super::boot` in
/// `ops/cluster.rs` is `use crate::ops::boot`), so that relative imports are held to the
/// same line as absolute ones.
fn from_the_root(file: &str, line: &str) -> String {
    let mut module: Vec<&str> = file.trim_end_matches(".rs").split('/').collect();
    if module.last() == Some(&"mod") {
        module.pop();
    }
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find("super::") {
        let (before, mut tail) = rest.split_at(at);
        // Part of a longer name or path (`xsuper::`, `self::super::`): left as it is.
        if before.chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            out.push_str(&rest[..at + "super::".len()]);
            rest = &rest[at + "super::".len()..];
            continue;
        }
        let mut up = 0;
        while let Some(t) = tail.strip_prefix("super::") {
            up += 1;
            tail = t;
        }
        out.push_str(before);
        out.push_str("crate::");
        for segment in &module[..module.len().saturating_sub(up)] {
            out.push_str(segment);
            out.push_str("::");
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Every `crate::LAYER::MODULE` path in a file (`super::` paths resolved from the file's
/// place), with the names used (`use` groups expanded).
fn imports(file: &str, text: &str) -> Vec<Import> {
    let Some(from) = module_of(file) else { return Vec::new() };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = from_the_root(file, line.split("//").next().unwrap_or(""));
        let mut rest = code.as_str();
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let path: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let path = path.trim_end_matches([':', '{']).to_string();
            let mut segments = path.split("::");
            let layer = segments.next().unwrap_or("");
            if !LAYERS.contains(&layer) {
                rest = &after[path.len().min(after.len())..];
                continue;
            }
            let mut found = |module: &str, names: String| {
                let to = format!("{layer}::{module}");
                if to != from {
                    out.push(Import {
                        file: file.into(),
                        line: i + 1,
                        from: from.clone(),
                        to,
                        names,
                    });
                }
            };
            match segments.next() {
                Some(module) => {
                    let names = if segments.clone().next().is_some() {
                        path.trim_start_matches(&format!("{layer}::")).to_string()
                    } else {
                        // `crate::model::store::{self, InputHashes}`: the group's names.
                        let group = &after[path.len()..];
                        let group = group.trim_start_matches([':', '{']);
                        format!(
                            "{module}::{{{}}}",
                            group.split(['}', ';']).next().unwrap_or("").trim()
                        )
                    };
                    found(module, names);
                }
                None => {
                    // `crate::steps::{sources, toolchain::X}`: each listed module.
                    let group = after[path.len()..].trim_start_matches([':', '{']);
                    for item in group.split('}').next().unwrap_or("").split(',') {
                        let item = item.trim();
                        let module = item.split("::").next().unwrap_or("").trim();
                        if !module.is_empty() && module != "self" && !module.starts_with('*') {
                            found(module, item.to_string());
                        }
                    }
                }
            }
            rest = &after[path.len().min(after.len())..];
        }
    }
    out
}

/// The violations in a set of files (path relative to `src/`, text): upward imports, and
/// cycles among modules, each naming the files and what they import.
fn violations(files: &[(String, String)]) -> Vec<String> {
    let all: Vec<Import> = files.iter().flat_map(|(f, t)| imports(f, t)).collect();
    let mut out = Vec::new();
    // Where each module is defined, to name the imported file.
    let defined: BTreeMap<String, String> = files
        .iter()
        .filter_map(|(f, _)| module_of(f).map(|m| (m, f.clone())))
        .fold(BTreeMap::new(), |mut m, (k, f)| {
            let e = m.entry(k).or_insert(f.clone());
            if f.ends_with("mod.rs") || f.len() < e.len() {
                *e = f;
            }
            m
        });
    for i in &all {
        if let (Some(a), Some(b)) = (layer_rank(&i.from), layer_rank(&i.to)) {
            if b < a {
                out.push(format!(
                    "upward import: {}:{} ({}) imports {} from {} ({}), a higher layer",
                    i.file,
                    i.line,
                    i.from,
                    i.names,
                    defined.get(&i.to).map(String::as_str).unwrap_or("?"),
                    i.to
                ));
            }
        }
    }
    // Cycles: strongly connected components of the module graph (Tarjan).
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for i in &all {
        edges.entry(&i.from).or_default().insert(&i.to);
        edges.entry(&i.to).or_default();
    }
    for scc in strongly_connected(&edges) {
        if scc.len() < 2 {
            continue;
        }
        let inside: Vec<String> = all
            .iter()
            .filter(|i| scc.contains(&i.from.as_str()) && scc.contains(&i.to.as_str()))
            .map(|i| format!("{}:{} ({} -> {}: {})", i.file, i.line, i.from, i.to, i.names))
            .collect();
        out.push(format!("cycle among {}: {}", scc.join(", "), inside.join("; ")));
    }
    out
}

fn strongly_connected<'a>(edges: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<Vec<&'a str>> {
    struct State<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(v: &'a str, edges: &BTreeMap<&'a str, BTreeSet<&'a str>>, s: &mut State<'a>) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on.insert(v);
        for &w in &edges[v] {
            if !s.index.contains_key(w) {
                visit(w, edges, s);
                let lw = s.low[w];
                let lv = s.low[v];
                s.low.insert(v, lv.min(lw));
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low[v];
                s.low.insert(v, lv.min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                scc.push(w);
                if w == v {
                    break;
                }
            }
            scc.sort();
            s.out.push(scc);
        }
    }
    let mut s = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for &v in edges.keys() {
        if !s.index.contains_key(v) {
            visit(v, edges, &mut s);
        }
    }
    s.out
}

fn engine_files() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut todo = vec![src.clone()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_engine_keeps_its_layers_and_has_no_cycle() {
    let files = engine_files();
    assert!(
        files.iter().any(|(f, _)| f == "model/store/mod.rs"),
        "the engine's sources were not found"
    );
    let v = violations(&files);
    assert!(v.is_empty(), "the engine's layering is broken:\n{}", v.join("\n"));
}

/// The checker itself: an upward import and a cycle in a small fixture are reported, naming
/// both files and the imported names; a clean fixture passes.
#[test]
fn the_checker_finds_upward_imports_and_cycles() {
    let f = |path: &str, text: &str| (path.to_string(), text.to_string());
    let clean = vec![
        f(
            "ops/build.rs",
            "use crate::steps::sources::wants;\nuse crate::model::store::{self, InputHashes};\n",
        ),
        f("steps/sources.rs", "use crate::model::recipe::Recipe;\n"),
        f("model/store.rs", "use crate::model::graph::Graph;\nuse crate::mechanisms::fetch;\n"),
        f("model/graph.rs", "// crate::ops::build is mentioned in a comment only\n"),
        f("steps/media/gpt.rs", "use crate::steps::media::cpio;\n"),
        f("steps/media/mod.rs", "pub mod gpt;\n"),
    ];
    assert_eq!(violations(&clean), Vec::<String>::new());

    // An upward import (which here also closes a cycle through steps::sources).
    let mut upward = clean.clone();
    upward.push(f("model/recipe.rs", "use crate::ops::build::DEFAULT_SOURCE_DATE_EPOCH;\n"));
    let v = violations(&upward);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(
        v[0],
        "upward import: model/recipe.rs:1 (model::recipe) imports build::DEFAULT_SOURCE_DATE_EPOCH from ops/build.rs (ops::build), a higher layer"
    );
    assert!(v[1].starts_with("cycle among model::recipe, ops::build, steps::sources"), "{v:?}");

    let mut cycle = clean;
    cycle.push(f("model/graph.rs", "fn g() { crate::model::store::lookup(); }\n"));
    let v = violations(&cycle);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].starts_with("cycle among model::graph, model::store")
            && v[0].contains("model/graph.rs:1")
            && v[0].contains("model/store.rs:1"),
        "{v:?}"
    );

    // A relative import is an import: `super::super::ops` from a step is upward.
    let mut relative = vec![
        f("ops/cluster.rs", "use super::boot::{self, Target};\n"),
        f("ops/boot.rs", "pub struct Target;\n"),
        f("steps/media/gpt.rs", "use super::cpio;\nmod tests { use super::*; }\n"),
        f("steps/media/cpio.rs", "\n"),
    ];
    assert_eq!(violations(&relative), Vec::<String>::new());
    relative.push(f("steps/sources.rs", "use super::super::ops::build::Target;\n"));
    let v = violations(&relative);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].starts_with(
            "upward import: steps/sources.rs:1 (steps::sources) imports build::Target"
        ),
        "{v:?}"
    );
    assert_eq!(
        from_the_root("ops/cluster.rs", "use super::boot::{self, Accel};"),
        "use crate::ops::boot::{self, Accel};"
    );

    let grouped = vec![
        f("steps/sequence.rs", "use crate::steps::{image, rootfs};\n"),
        f("steps/image.rs", "use crate::steps::sequence::StepPaths;\n"),
    ];
    let v = violations(&grouped);
    assert!(v.len() == 1 && v[0].contains("steps::image, steps::sequence"), "{v:?}");
}
