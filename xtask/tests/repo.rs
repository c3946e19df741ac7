//! Repository policy: facts that several files state and that must agree.

mod support;

use std::process::Command;
use support::repo;

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
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let o = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
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
