//! Kernel configuration checks: after `olddefconfig`, every option a fragment asked for must
//! hold in the final `.config`; each one that was dropped is named.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Parse `CONFIG_X=v` and `# CONFIG_X is not set` lines; "n" stands for not set.
pub(crate) fn parse(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# ") {
            if let Some(name) = rest.strip_suffix(" is not set") {
                if name.starts_with("CONFIG_") {
                    out.insert(name.to_string(), "n".to_string());
                }
            }
        } else if line.starts_with("CONFIG_") {
            if let Some((k, v)) = line.split_once('=') {
                out.insert(k.to_string(), v.to_string());
            }
        }
    }
    out
}

/// Options of `wanted` that `final_config` does not hold, as "CONFIG_X=want (got: have)".
pub(crate) fn dropped(
    wanted: &BTreeMap<String, String>,
    final_config: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (k, want) in wanted {
        let have = final_config.get(k).map(String::as_str).unwrap_or("n");
        if have != want {
            let have = if have == "n" { "not set" } else { have };
            out.push(format!("{k}={want} (got: {have})"));
        }
    }
    out
}

pub(crate) fn check_files(config: &Path, fragments: &[PathBuf]) -> Result<()> {
    let final_text = std::fs::read_to_string(config)
        .with_context(|| format!("reading the final {}", config.display()))?;
    let final_cfg = parse(&final_text);
    let mut missing = Vec::new();
    for f in fragments {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading fragment {}", f.display()))?;
        for d in dropped(&parse(&text), &final_cfg) {
            let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            missing.push(format!("{d} [{name}]"));
        }
    }
    if !missing.is_empty() {
        bail!(
            "options a fragment asked for did not survive olddefconfig (unmet dependencies?): {}",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Lines (`CONFIG_X=v` / `# CONFIG_X is not set`) for every option whose value changed.
pub(crate) fn changed_lines(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    let line =
        |k: &str, v: &str| if v == "n" { format!("# {k} is not set") } else { format!("{k}={v}") };
    keys.into_iter()
        .filter_map(|k| {
            let (b, a) = (
                before.get(k).map(String::as_str).unwrap_or("n"),
                after.get(k).map(String::as_str).unwrap_or("n"),
            );
            (b != a).then(|| line(k, a))
        })
        .collect()
}

/// Replace or append the given option lines in a fragment, keeping everything else.
pub(crate) fn apply_to_fragment(text: &str, lines: &[String]) -> String {
    let new = parse(&lines.join("\n"));
    let mut out: Vec<String> = text
        .lines()
        .filter(|l| parse(l).keys().all(|k| !new.contains_key(k)))
        .map(str::to_string)
        .collect();
    out.push("# changed with `cargo xtask menuconfig`".into());
    out.extend(lines.iter().cloned());
    out.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn menuconfig_changes_become_fragment_lines() {
        let before = parse("CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\n");
        let after = parse("CONFIG_A=y\nCONFIG_C=y\nCONFIG_D=\"x\"\n");
        let ch = changed_lines(&before, &after);
        assert_eq!(ch, vec!["# CONFIG_B is not set", "CONFIG_C=y", "CONFIG_D=\"x\""]);
        let frag = apply_to_fragment("# comment\nCONFIG_A=y\nCONFIG_B=m\n", &ch);
        assert_eq!(frag, "# comment\nCONFIG_A=y\n# changed with `cargo xtask menuconfig`\n# CONFIG_B is not set\nCONFIG_C=y\nCONFIG_D=\"x\"\n");
        assert!(dropped(&parse(&frag), &after).is_empty());
    }

    #[test]
    fn names_every_dropped_option() {
        let want = parse("CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D=\"x\"\n");
        let have = parse("CONFIG_A=y\nCONFIG_B=y\nCONFIG_C=y\n");
        assert_eq!(
            dropped(&want, &have),
            vec!["CONFIG_B=m (got: y)", "CONFIG_C=n (got: y)", "CONFIG_D=\"x\" (got: not set)"]
        );
        assert!(dropped(&parse("# CONFIG_Z is not set"), &have).is_empty());
    }
}
