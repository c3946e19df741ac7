//! The flake's recipe reader (nix/recipe.nix), evaluated offline with no nixpkgs, must produce
//! exactly the pins and origins the xtask reads from the same TOML.

use std::path::Path;
use std::process::Command;

#[test]
fn nix_reads_the_same_pins_and_urls_as_the_xtask() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let Ok(nix) = Command::new("nix-instantiate")
        .args(["--store", "dummy://", "--eval", "--strict", "--json", "-E", "(import ./nix/recipe.nix).allSources ./recipes"])
        .current_dir(repo)
        .output()
    else {
        assert!(std::env::var("REPROVM_FULL").is_err(), "nix-instantiate is required in the full tier (apt-get install nix-bin)");
        eprintln!("skipped: nix-instantiate not installed");
        return;
    };
    assert!(nix.status.success(), "{}", String::from_utf8_lossy(&nix.stderr));
    let nix: serde_json::Value = serde_json::from_slice(&nix.stdout).unwrap();
    let x = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["fetch", "--list"])
        .env("REPROVM_DEBIAN_MIRROR", "http://mirror.invalid/debian")
        .env_remove("REPROVM_RECIPES")
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", String::from_utf8_lossy(&x.stderr));
    let xtask: Vec<serde_json::Value> = serde_json::from_slice(&x.stdout).unwrap();
    let mut compared = 0;
    for s in &xtask {
        let recipe = s["recipe"].as_str().unwrap();
        let file = s["file"].as_str().unwrap();
        let n = nix[recipe].as_array().unwrap().iter().find(|n| n["name"] == file).unwrap_or_else(|| panic!("nix lacks {recipe}/{file}"));
        assert_eq!(n["sha256"], s["sha256"], "{recipe}/{file}");
        let nix_urls: Vec<&str> = n["urls"].as_array().unwrap().iter().map(|u| u.as_str().unwrap()).collect();
        let x_urls: Vec<&str> = s["urls"].as_array().unwrap().iter().map(|u| u.as_str().unwrap()).collect();
        // Upstream URLs: identical and in the same order.
        let up = |v: &[&str]| {
            v.iter().filter(|u| !u.starts_with("mirror://") && !u.starts_with("http://mirror.invalid/")).map(|u| u.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(up(&nix_urls), up(&x_urls), "{recipe}/{file}");
        // Debian origin: the same pool path (Nix resolves mirror://debian, the xtask its configured mirror).
        for m in nix_urls.iter().filter_map(|u| u.strip_prefix("mirror://debian/")) {
            assert!(x_urls.contains(&format!("http://mirror.invalid/debian/{m}").as_str()), "{recipe}/{file}: {m} not among {x_urls:?}");
        }
        compared += 1;
    }
    let nix_count: usize = nix.as_object().unwrap().values().map(|v| v.as_array().unwrap().len()).sum();
    assert_eq!(compared, nix_count, "nix and the xtask see different numbers of sources");
    assert!(compared >= 4);
    for f in ["flake.nix", "nix/recipe.nix", "nix/package.nix"] {
        let o = Command::new("nix-instantiate").args(["--parse", f]).current_dir(repo).output().unwrap();
        assert!(o.status.success(), "{f}: {}", String::from_utf8_lossy(&o.stderr));
    }
}
