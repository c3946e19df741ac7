//! The spellings of the command line before its vocabulary was settled
//! (docs/reference/vocabulary.md), still accepted until reprovm 0.2: each is rewritten to the
//! new one before parsing, with a warning naming both. Nothing else reads them, and the docs
//! test parses the docs without this step, so the docs cannot use an old spelling.
//!
//! Only reprovm's own words are rewritten: nothing after `--`, and nothing among the
//! arguments `tool`, `nix`, `vagrant` and `sandbox-exec` pass to another program.

/// The arguments with every old spelling replaced, and one warning per replacement.
pub struct Rewritten {
    pub args: Vec<String>,
    pub warnings: Vec<String>,
}

/// Commands whose arguments after their name belong to another program.
const PASS_THROUGH: [&str; 4] = ["tool", "nix", "vagrant", "sandbox-exec"];

/// Old options that were one word and are rewritten wherever reprovm reads options.
fn option(t: &str, verify: bool) -> Option<(&'static str, &'static str, Vec<&'static str>)> {
    Some(match t {
        "--legacy-bios" => ("--legacy-bios", "--firmware bios", vec!["--firmware", "bios"]),
        "--kvm" => ("--kvm", "--accel kvm", vec!["--accel", "kvm"]),
        "--trusted-key" if verify => (
            "verify --trusted-key",
            "verify --trusted-attestation-key",
            vec!["--trusted-attestation-key"],
        ),
        "--trusted-key" => ("--trusted-key", "--trusted-cache-key", vec!["--trusted-cache-key"]),
        _ => return None,
    })
}

/// Rewrite `args` (without the program name). `global_values` are the global options that
/// take a value (`--out`): the subcommand is the first word that is neither an option nor
/// such an option's value.
pub fn rewrite(args: &[String], global_values: &[String]) -> Rewritten {
    let mut warnings = Vec::new();
    let mut warn = |old: &str, new: &str| {
        warnings.push(format!(
            "warning: `{old}` is now `{new}`; the old spelling is accepted until reprovm 0.2"
        ))
    };
    // `--flag=value` of the options rewritten below, as two words.
    let mut a: Vec<String> = Vec::new();
    for t in args {
        match t.split_once('=') {
            Some((f, v))
                if ["--trusted-key", "--target", "--push", "--timeout", "--nodes"].contains(&f) =>
            {
                a.extend([f.to_string(), v.to_string()])
            }
            _ => a.push(t.clone()),
        }
    }
    let sub = subcommand(&a, global_values);
    // Where reprovm's own words end: `--`, or the first argument of a pass-through command.
    let end = match sub {
        Some(s) if PASS_THROUGH.contains(&a[s].as_str()) => s + 1,
        _ => a.iter().position(|t| t == "--").unwrap_or(a.len()),
    };
    let tail = a.split_off(end.min(a.len()));
    let verify = sub.is_some_and(|s| a[s] == "verify");
    let mut out = Vec::new();
    let mut k = 0;
    while k < a.len() {
        let t = &a[k];
        if let Some((old, new, words)) = option(t, verify && sub.is_some_and(|s| k > s)) {
            warn(old, new);
            out.extend(words.into_iter().map(String::from));
        } else if t == "--target" && a.get(k + 1).is_some_and(|v| v == "image") {
            warn("--target image", "--target hd-image");
            out.extend(["--target".to_string(), "hd-image".to_string()]);
            k += 1;
        } else {
            out.push(t.clone());
        }
        k += 1;
    }
    let a = out;
    let Some(s) = subcommand(&a, global_values) else {
        return Rewritten { args: a.into_iter().chain(tail).collect(), warnings };
    };
    let (head, rest) = a.split_at(s);
    let (head, word, mut rest) = (head.to_vec(), rest[0].clone(), rest[1..].to_vec());
    let mut words: Vec<String> = vec![word.clone()];
    // The positional words of `rest` from `from` on: not options, nor options' values.
    let positional = |rest: &[String], from: usize| -> Vec<usize> {
        let mut out = Vec::new();
        let mut j = from;
        while j < rest.len() {
            let t = &rest[j];
            if global_values.contains(t) || t == "--sign-key" {
                j += 2;
                continue;
            }
            if !t.starts_with('-') {
                out.push(j);
            }
            j += 1;
        }
        out
    };
    match word.as_str() {
        "cluster-test" => {
            warn("cluster-test", "cluster test");
            words = vec!["cluster".into(), "test".into()];
        }
        "run" if rest.iter().any(|t| t == "--nodes") => {
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
                if rest.get(p + 1).is_some_and(|r| !r.starts_with('-')) {
                    warn("multiarch TARGET --push REF", "multiarch TARGET REF");
                    let reference = rest.remove(p + 1);
                    rest.remove(p);
                    rest.push(reference);
                }
            }
        }
        "cache" if rest.first().is_some_and(|t| t == "push") => {
            // `cache push REF [TARGET]`: a registry reference has a `/`, a target never.
            let positional = positional(&rest, 1);
            if let Some(&first) = positional.first() {
                if rest[first].contains('/') {
                    let reference = rest.remove(first);
                    if positional.len() == 1 {
                        warn("cache push REF", "cache push hd-image REF");
                        rest.push("hd-image".into());
                    } else {
                        warn("cache push REF TARGET", "cache push TARGET REF");
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
    args.extend(tail);
    Rewritten { args, warnings }
}

/// Where the subcommand is: the first word that is neither an option nor a global option's
/// value.
fn subcommand(a: &[String], global_values: &[String]) -> Option<usize> {
    let mut i = 0;
    while i < a.len() {
        let t = &a[i];
        if t == "--" {
            return None;
        }
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
        let globals = ["--out", "--mirror", "--trusted-cache-key", "--trusted-key"];
        let globals: Vec<String> = globals.iter().map(|s| s.to_string()).collect();
        let r = rewrite(&args, &globals);
        (r.args.join(" "), r.warnings.len())
    }

    #[test]
    fn old_spellings_become_new_ones_with_a_warning() {
        for (old, new) in [
            ("run --nodes 4 --timeout 30", "cluster run --nodes 4 --lifetime 30"),
            ("run --nodes=4 --timeout=30", "cluster run --nodes 4 --lifetime 30"),
            ("--out o cluster-test --nodes 2", "--out o cluster test --nodes 2"),
            ("boot-test --target iso --legacy-bios", "boot-test --target iso --firmware bios"),
            ("boot-test --target image", "boot-test --target hd-image"),
            ("boot-test --target=image --kvm", "boot-test --target hd-image --accel kvm"),
            ("--trusted-key k.pub build x", "--trusted-cache-key k.pub build x"),
            ("--trusted-key=k.pub build x", "--trusted-cache-key k.pub build x"),
            ("verify e.json --trusted-key k.pub", "verify e.json --trusted-attestation-key k.pub"),
            ("cache push h/r busybox", "cache push busybox h/r"),
            ("cache push --sign-key k h/r", "cache push --sign-key k hd-image h/r"),
            ("multiarch t --push h/r --pin", "multiarch t --pin h/r"),
            ("multiarch t --push=h/r", "multiarch t h/r"),
        ] {
            let (got, warnings) = re(old);
            assert_eq!(got, new, "{old}");
            assert!(warnings >= 1, "{old}: no warning");
        }
        for new in [
            "cluster run --nodes 4 --lifetime 30",
            "run --target hd-image",
            "cache push busybox dropbear h/r",
            "cache push --mirror /m busybox h/r",
            "cache push --trusted-cache-key /k busybox h/r",
            "multiarch t h/r",
            "multiarch t --push --plain-http",
            "--out run build run",
            "sandbox-exec echo --legacy-bios --target image",
            "tool qemu-img --kvm",
            "nix nix-build --trusted-key x",
            "build x -- --legacy-bios",
        ] {
            assert_eq!(re(new), (new.to_string(), 0), "{new}");
        }
    }
}
