//! The spellings of the command line before its vocabulary was settled
//! (docs/reference/vocabulary.md), still accepted for one release: each is rewritten to the
//! new one before parsing, with a warning naming both. Nothing else reads them, and the docs
//! test parses the docs without this step, so the docs cannot use an old spelling.

/// The arguments with every old spelling replaced, and one warning per replacement.
pub struct Rewritten {
    pub args: Vec<String>,
    pub warnings: Vec<String>,
}

/// Rewrite `args` (without the program name). `global_values` are the global options that
/// take a value (`--out DIR`): the subcommand is the first word that is neither an option nor
/// such an option's value.
pub fn rewrite(args: &[String], global_values: &[String]) -> Rewritten {
    let mut warnings = Vec::new();
    let mut warn = |old: &str, new: &str| {
        warnings.push(format!(
            "warning: `{old}` is now `{new}`; the old spelling goes in the next release"
        ))
    };
    let mut a: Vec<String> = args.to_vec();
    let sub = subcommand(&a, global_values);
    // Options, anywhere.
    let mut out = Vec::new();
    let mut k = 0;
    while k < a.len() {
        let t = a[k].clone();
        let after_sub = sub.is_some_and(|s| k > s);
        let verify = sub.is_some_and(|s| a[s] == "verify") && after_sub;
        match t.as_str() {
            "--legacy-bios" => {
                warn("--legacy-bios", "--firmware bios");
                out.extend(["--firmware".to_string(), "bios".to_string()]);
            }
            "--target" if a.get(k + 1).is_some_and(|v| v == "image") => {
                warn("--target image", "--target hd-image");
                out.extend(["--target".to_string(), "hd-image".to_string()]);
                k += 1;
            }
            "--target=image" => {
                warn("--target image", "--target hd-image");
                out.push("--target=hd-image".to_string());
            }
            "--trusted-key" if verify => {
                warn("verify --trusted-key", "verify --trusted-attestation-key");
                out.push("--trusted-attestation-key".to_string());
            }
            "--trusted-key" => {
                warn("--trusted-key", "--trusted-cache-key");
                out.push("--trusted-cache-key".to_string());
            }
            _ => out.push(t),
        }
        k += 1;
    }
    a = out;
    let Some(s) = subcommand(&a, global_values) else {
        return Rewritten { args: a, warnings };
    };
    let (head, rest) = a.split_at(s);
    let (head, word, mut rest) = (head.to_vec(), rest[0].clone(), rest[1..].to_vec());
    let mut words: Vec<String> = vec![word.clone()];
    match word.as_str() {
        "cluster-test" => {
            warn("cluster-test", "cluster test");
            words = vec!["cluster".into(), "test".into()];
        }
        "run" if rest.iter().any(|t| t == "--nodes" || t.starts_with("--nodes=")) => {
            warn("run --nodes", "cluster run --nodes");
            words = vec!["cluster".into(), "run".into()];
            for t in rest.iter_mut() {
                if t == "--timeout" {
                    warn("run --nodes N --timeout", "cluster run --lifetime");
                    *t = "--lifetime".into();
                }
            }
        }
        "multiarch" => {
            if let Some(p) = rest.iter().position(|t| t == "--push") {
                if p + 1 < rest.len() {
                    warn("multiarch TARGET --push REF", "multiarch TARGET REF");
                    let reference = rest.remove(p + 1);
                    rest.remove(p);
                    rest.push(reference);
                }
            }
        }
        "cache" if rest.first().is_some_and(|t| t == "push") => {
            // `cache push REF [TARGET]`: a registry reference has a `/`, a target never.
            let positional: Vec<usize> = (1..rest.len())
                .filter(|&j| !(rest[j].starts_with('-') || j > 1 && rest[j - 1] == "--sign-key"))
                .collect();
            if let Some(&first) = positional.first() {
                if rest[first].contains('/') {
                    warn("cache push REF TARGET", "cache push TARGET REF");
                    let reference = rest.remove(first);
                    if positional.len() == 1 {
                        rest.push("hd-image".into());
                    }
                    rest.push(reference);
                }
            }
        }
        _ => {}
    }
    let mut args = head;
    args.extend(words);
    args.extend(rest);
    Rewritten { args, warnings }
}

/// Where the subcommand is: the first word that is neither an option nor a global option's
/// value.
fn subcommand(a: &[String], global_values: &[String]) -> Option<usize> {
    let mut i = 0;
    while i < a.len() {
        let t = &a[i];
        if global_values.iter().any(|g| g == t) {
            i += 2;
            continue;
        }
        if !t.starts_with('-') {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(line: &str) -> (String, usize) {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        let r = rewrite(&args, &["--out".to_string(), "--trusted-key".to_string()]);
        (r.args.join(" "), r.warnings.len())
    }

    #[test]
    fn old_spellings_become_new_ones_with_a_warning() {
        for (old, new) in [
            ("run --nodes 4 --timeout 30", "cluster run --nodes 4 --lifetime 30"),
            ("--out o cluster-test --nodes 2", "--out o cluster test --nodes 2"),
            ("boot-test --target iso --legacy-bios", "boot-test --target iso --firmware bios"),
            ("boot-test --target image", "boot-test --target hd-image"),
            ("--trusted-key k.pub build x", "--trusted-cache-key k.pub build x"),
            ("verify e.json --trusted-key k.pub", "verify e.json --trusted-attestation-key k.pub"),
            ("cache push h/r busybox", "cache push busybox h/r"),
            ("cache push --sign-key k h/r", "cache push --sign-key k hd-image h/r"),
            ("multiarch t --push h/r --pin", "multiarch t --pin h/r"),
        ] {
            let (got, warnings) = re(old);
            assert_eq!(got, new, "{old}");
            assert!(warnings >= 1, "{old}: no warning");
        }
        for new in [
            "cluster run --nodes 4 --lifetime 30",
            "run --target hd-image",
            "cache push busybox dropbear h/r",
            "multiarch t h/r",
            "--out run build run",
        ] {
            assert_eq!(re(new), (new.to_string(), 0), "{new}");
        }
    }
}
