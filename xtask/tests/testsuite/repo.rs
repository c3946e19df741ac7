//! Repository policy: facts that several files state and that must agree.

use crate::support::repo;
use std::process::Command;

/// `cargo metadata EXTRA` of the workspace, as the lock has it.
fn cargo_metadata(extra: &[&str]) -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let o = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .args(extra)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// "1.88" and "1.88.0" are the same requirement.
fn version_key(v: &str) -> Vec<u64> {
    let mut k: Vec<u64> = v.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    k.resize(3, 0);
    k
}

/// `rust-version` is exactly the newest requirement of any crate in Cargo.lock, and README
/// says the same.
#[test]
fn rust_version_is_what_the_lock_needs_and_readme_says_so() {
    let m = cargo_metadata(&[]);
    let packages = m["packages"].as_array().unwrap();
    let ours = packages.iter().find(|p| p["name"] == "xtask").unwrap()["rust_version"]
        .as_str()
        .unwrap()
        .to_string();
    let (needed, by) = packages
        .iter()
        .filter(|p| p["name"] != "xtask")
        .filter_map(|p| {
            Some((p["rust_version"].as_str()?.to_string(), p["name"].as_str()?.to_string()))
        })
        .max_by_key(|(v, _)| version_key(v))
        .unwrap();
    assert_eq!(
        version_key(&ours),
        version_key(&needed),
        "rust-version {ours}, but {by} needs {needed}"
    );
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(readme.contains(&format!("Rust ≥ {ours}")), "README does not say `Rust ≥ {ours}`");
}

/// Every crate a member declares is used where it is declared for: a dependency by the
/// member's code outside its tests, a dev-dependency by its tests. (walkdir was declared and
/// used nowhere; filetime only by tests.)
#[test]
fn every_declared_dependency_is_used_where_it_is_declared() {
    let m = cargo_metadata(&["--no-deps"]);
    let mut problems = Vec::new();
    for p in m["packages"].as_array().unwrap() {
        let dir = std::path::Path::new(p["manifest_path"].as_str().unwrap()).parent().unwrap();
        let (mut code, mut tests) = (String::new(), String::new());
        for d in [dir.join("src"), dir.join("tests")].iter().filter(|d| d.exists()) {
            for e in walkdir::WalkDir::new(d) {
                let path = e.unwrap().into_path();
                if path.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    if path.starts_with(dir.join("tests")) {
                        tests.push_str(&text);
                    } else {
                        let cut = text.find("#[cfg(test)]").unwrap_or(text.len());
                        code.push_str(&text[..cut]);
                        tests.push_str(&text[cut..]);
                    }
                }
            }
        }
        let used = |text: &str, name: &str| {
            let ident = name.replace('-', "_");
            [format!("{ident}::"), format!("use {ident}"), format!("{ident}!")]
                .iter()
                .any(|pattern| text.contains(pattern.as_str()))
        };
        // Declared to choose what another crate gets, not to be called.
        const SELECTORS: [(&str, &str); 1] = [
            // url's IDNA without Unicode tables (see the workspace Cargo.toml).
            ("reprovm-oci", "idna_adapter"),
        ];
        for dep in p["dependencies"].as_array().unwrap() {
            let name = dep["rename"].as_str().or(dep["name"].as_str()).unwrap();
            let member = p["name"].as_str().unwrap();
            if SELECTORS.contains(&(member, name)) {
                continue;
            }
            match dep["kind"].as_str() {
                None if !used(&code, name) => problems.push(format!(
                    "{member}: `{name}` is a dependency its code does not use{}",
                    if used(&tests, name) {
                        " (only its tests: make it a dev-dependency)"
                    } else {
                        ""
                    }
                )),
                Some("dev") if !used(&tests, name) && !used(&code, name) => {
                    problems.push(format!("{member}: dev-dependency `{name}` is used by nothing"))
                }
                _ => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// One HTTP stack (ureq): a second client (reqwest, hyper, tokio's runtime and the rest) came
/// in through oci-client once and doubled the build; taking one in again needs this test and
/// docs/decisions/0032-own-registry-client.md changed together.
#[test]
fn one_http_stack() {
    let m = cargo_metadata(&[]);
    let names: Vec<&str> =
        m["packages"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"ureq"), "ureq is the HTTP client");
    let second: Vec<&&str> = names
        .iter()
        .filter(|n| {
            ["reqwest", "hyper", "h2", "tokio", "isahc", "curl", "attohttpc", "surf", "async-std"]
                .contains(n)
        })
        .collect();
    assert!(second.is_empty(), "a second HTTP stack is in Cargo.lock: {second:?}");
}

/// Dependencies build unoptimised except those `bench` measured (hashing, decompression,
/// crypto, the parsers): `opt-level` for every dependency (`[profile.dev.package."*"]`) cost
/// the cold build twice its time. Every per-package override is named in the profile's note,
/// and the flake builds the xtask with the same profile.
#[test]
fn optimisation_only_where_measured() {
    let text = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let manifest: toml::Table = text.parse().unwrap();
    let packages = manifest["profile"]["dev"]["package"].as_table().unwrap();
    assert!(
        packages.get("*").and_then(|p| p.get("opt-level")).is_none(),
        "Cargo.toml optimises every dependency again ([profile.dev.package.\"*\"] opt-level)"
    );
    let note: String =
        text.lines().filter(|l| l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
    for (name, settings) in packages {
        if name != "*" && settings.get("opt-level").is_some() {
            assert!(
                note.contains(name.as_str()),
                "[profile.dev.package.{name}] is optimised without a note naming it"
            );
        }
    }
    let flake = std::fs::read_to_string(repo().join("flake.nix")).unwrap();
    assert!(
        flake.contains("buildType = \"debug\""),
        "the flake's xtask must build with the dev profile, as `cargo xtask` does"
    );
}

/// The command line reaches the engine through its operations (`reprovm::ops`) and the two
/// values they take (`Arch`, `Project`), never through a step, the store or a mechanism: what
/// the engine exports beyond that is for this test suite (lib.rs, "The public surface").
#[test]
fn the_command_line_uses_the_operations_only() {
    let allowed =
        ["reprovm::ops", "reprovm::model::arch::Arch", "reprovm::model::project::Project"];
    let mut stray = Vec::new();
    for e in walkdir::WalkDir::new(repo().join("xtask/src")) {
        let p = e.unwrap().into_path();
        if p.is_file() {
            let text = std::fs::read_to_string(&p).unwrap();
            for (at, _) in text.match_indices("reprovm::") {
                // `reprovm_fs::…` and friends are the crates below the engine; these are the
                // engine's own paths.
                let path = &text[at..];
                let named = |a: &&str| {
                    path.starts_with(a)
                        && !path[a.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
                };
                if !allowed.iter().any(named) {
                    let line = path.lines().next().unwrap_or_default();
                    stray.push(format!("{}: {line}", p.strip_prefix(repo()).unwrap().display()));
                }
            }
        }
    }
    assert!(
        stray.is_empty(),
        "the command line reaches past the operations:\n{}",
        stray.join("\n")
    );
}

/// Every Rust file of the crates under `crates/`, with its text.
fn crate_sources() -> Vec<(std::path::PathBuf, String)> {
    walkdir::WalkDir::new(repo().join("crates"))
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.path().extension().is_some_and(|x| x == "rs"))
        .map(|e| (e.path().to_path_buf(), std::fs::read_to_string(e.path()).unwrap()))
        .collect()
}

/// The engine and the crates below it print nothing (their tests aside): progress goes through
/// `reprovm_fs::progress`, whose sink the command line sets, and results are returned.
#[test]
fn the_libraries_print_nothing() {
    let mut printing = Vec::new();
    for (path, text) in crate_sources() {
        if path.components().any(|c| c.as_os_str() == "tests") {
            continue;
        }
        let code = &text[..text.find("#[cfg(test)]").unwrap_or(text.len())];
        for (n, line) in code.lines().enumerate() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            if ["println!(", "eprintln!(", "print!(", "eprint!("].iter().any(|m| line.contains(m)) {
                printing.push(format!("{}:{}: {line}", path.display(), n + 1));
            }
        }
    }
    // Two that print by design: progress.rs's default sink (stderr, until the command line
    // sets its own), and the sandbox's init, which runs as the namespace's process 1 and
    // writes to the build log, not to any caller.
    printing.retain(|p| {
        !p.contains("crates/fs/src/progress.rs") && !p.contains("crates/sandbox/src/init.rs")
    });
    assert!(printing.is_empty(), "library code prints:\n{}", printing.join("\n"));
}

/// No source file of the crates is a giant: a concern that outgrows 700 lines becomes a folder
/// of its own (as `steps/media/`, `ops/boot/`).
#[test]
fn no_crate_file_over_700_lines() {
    let giants: Vec<String> = crate_sources()
        .into_iter()
        .filter(|(_, text)| text.lines().count() > 700)
        .map(|(path, text)| format!("{} ({} lines)", path.display(), text.lines().count()))
        .collect();
    assert!(giants.is_empty(), "split these: {giants:?}");
}
