//! The docs held to the binary: `docs/reference/commands.md` is generated from the command
//! line's definition (and must be current), every `cargo xtask …` command line in README.md,
//! ARCHITECTURE.md and docs/ parses with the real parser, and the defaults the docs state
//! (ports, key file names, flag defaults) are the code's. `REPROVM_BLESS=1 cargo test -p xtask
//! docs` rewrites the generated reference.

use crate::cli::Cli;
use clap::{Arg, Command, CommandFactory, Parser};
use std::fmt::Write;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

/// README.md, ARCHITECTURE.md and every Markdown file under docs/, sorted.
fn documents() -> Vec<PathBuf> {
    let mut out = vec![repo().join("README.md"), repo().join("ARCHITECTURE.md")];
    let mut stack = vec![repo().join("docs")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn flag(a: &Arg) -> String {
    let mut s = match (a.get_short(), a.get_long()) {
        (Some(c), Some(l)) => format!("-{c}, --{l}"),
        (None, Some(l)) => format!("--{l}"),
        (Some(c), None) => format!("-{c}"),
        (None, None) => {
            let names = a.get_value_names().map(|n| n.join(" ")).unwrap_or_default();
            return if a.is_required_set() { names } else { format!("[{names}]") }
                + if matches!(a.get_num_args(), Some(r) if r.max_values() > 1) {
                    "..."
                } else {
                    ""
                };
        }
    };
    if a.get_action().takes_values() {
        let names = a
            .get_value_names()
            .map(|n| n.join(" "))
            .unwrap_or_else(|| a.get_id().as_str().to_uppercase().replace('_', "-"));
        let _ = write!(s, " {names}");
    }
    s
}

fn describe_arg(out: &mut String, a: &Arg) {
    let help = a.get_long_help().or(a.get_help()).map(|h| h.to_string()).unwrap_or_default();
    let _ = writeln!(out, "- `{}`: {}", flag(a), help.replace('\n', " "));
    let defaults: Vec<String> =
        a.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
    if !defaults.is_empty() && a.get_action().takes_values() {
        let _ = writeln!(out, "  Default: `{}`.", defaults.join(" "));
    }
    let values: Vec<String> = a
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| match v.get_help() {
            Some(h) => format!("`{}` ({h})", v.get_name()),
            None => format!("`{}`", v.get_name()),
        })
        .collect();
    if !values.is_empty() && a.get_action().takes_values() {
        let _ = writeln!(out, "  Values: {}.", values.join("; "));
    }
    if let Some(env) = a.get_env() {
        let _ = writeln!(out, "  Environment: `{}`.", env.to_string_lossy());
    }
}

fn describe_command(out: &mut String, path: &str, c: &Command) {
    if c.is_hide_set() {
        return;
    }
    let _ = writeln!(out, "## `{path}`\n");
    let about = c.get_long_about().or(c.get_about()).map(|h| h.to_string()).unwrap_or_default();
    let _ = writeln!(out, "{}\n", about.trim());
    let mut usage = c.clone().bin_name(path).render_usage().to_string();
    usage = usage.trim_start_matches("Usage: ").to_string();
    let _ = writeln!(out, "```text\n{usage}\n```\n");
    let args: Vec<&Arg> = c
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_global_set())
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .collect();
    if !args.is_empty() {
        for a in args {
            describe_arg(out, a);
        }
        out.push('\n');
    }
    for sub in c.get_subcommands() {
        if sub.get_name() != "help" {
            describe_command(out, &format!("{path} {}", sub.get_name()), sub);
        }
    }
}

/// docs/reference/commands.md, from the command line's definition.
pub fn commands_reference() -> String {
    let cli = Cli::command();
    let mut out = String::from(
        "# Command reference\n\n\
Generated from the command line's definition by `REPROVM_BLESS=1 cargo test -p xtask docs` \
(a test fails when it is not current): every command, its arguments, defaults, values and \
environment variables. The vocabulary behind the names is in `vocabulary.md`; exit statuses \
in `exit-status.md`.\n\n## Global options\n\nAccepted by every command, before or after its name.\n\n",
    );
    for a in cli.get_arguments().filter(|a| a.is_global_set() && !a.is_hide_set()) {
        describe_arg(&mut out, a);
    }
    out.push('\n');
    for sub in cli.get_subcommands() {
        if sub.get_name() != "help" {
            describe_command(&mut out, &format!("cargo xtask {}", sub.get_name()), sub);
        }
    }
    out.trim_end().to_string() + "\n"
}

/// A `cargo xtask` command line found in a document.
#[derive(Debug)]
pub struct Found {
    pub file: String,
    pub line: usize,
    pub words: Vec<String>,
}

/// The words of a shell line up to its first operator, if it runs `cargo xtask` (after
/// environment assignments).
fn xtask_words(line: &str) -> Option<Vec<String>> {
    let line = line.trim().trim_start_matches("$ ");
    let line = match line.find(" #") {
        Some(i) => &line[..i],
        None => line,
    };
    let words = shlex::split(line)?;
    let start = words.iter().position(|w| !w.contains('=') || w.starts_with('-'))?;
    let words = &words[start..];
    if words.len() < 2 || words[0] != "cargo" || words[1] != "xtask" {
        return None;
    }
    // Up to a shell operator, or an ellipsis standing for the rest.
    let end = words
        .iter()
        .position(|w| {
            ["|", "||", "&&", ";", "&", "…", "..."].contains(&w.as_str()) || w.starts_with('>')
        })
        .unwrap_or(words.len());
    Some(words[2..end].to_vec())
}

/// Every command line in fenced shell blocks and inline code spans of `text`.
pub fn command_lines(file: &str, text: &str) -> Vec<Found> {
    let mut found = Vec::new();
    let mut fence: Option<String> = None;
    let mut continued = String::new();
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        if let Some(rest) = trimmed.strip_prefix("```") {
            fence = match fence {
                Some(_) => None,
                None => Some(rest.trim().to_string()),
            };
            continue;
        }
        match &fence {
            Some(lang)
                if lang.is_empty()
                    || ["sh", "bash", "shell", "console"].contains(&lang.as_str()) =>
            {
                let line = format!("{continued}{}", raw.trim_end());
                if let Some(stripped) = line.strip_suffix('\\') {
                    continued = format!("{stripped} ");
                    continue;
                }
                continued.clear();
                if let Some(words) = xtask_words(&line) {
                    found.push(Found { file: file.to_string(), line: i + 1, words });
                }
            }
            Some(_) => {}
            None => {
                // Inline code spans.
                let mut parts = raw.split('`');
                parts.next();
                while let Some(span) = parts.next() {
                    if span.starts_with("cargo xtask ") || span == "cargo xtask" {
                        if let Some(words) = xtask_words(span) {
                            found.push(Found { file: file.to_string(), line: i + 1, words });
                        }
                    }
                    parts.next();
                }
            }
        }
    }
    found
}

/// The command lines of `found` the parser refuses, as `FILE:LINE: cargo xtask …: error`.
pub fn refused(found: &[Found]) -> Vec<String> {
    found
        .iter()
        .filter_map(|f| {
            let argv = std::iter::once("cargo-xtask".to_string()).chain(f.words.iter().cloned());
            match Cli::try_parse_from(argv) {
                Ok(_) => None,
                Err(e)
                    if matches!(
                        e.kind(),
                        clap::error::ErrorKind::DisplayHelp
                            | clap::error::ErrorKind::DisplayVersion
                            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                    ) =>
                {
                    None
                }
                // A command named in prose (`cargo xtask nix`): its words are commands only.
                Err(e)
                    if e.kind() == clap::error::ErrorKind::MissingRequiredArgument
                        && names_a_command(&f.words) =>
                {
                    None
                }
                Err(e) => Some(format!(
                    "{}:{}: cargo xtask {}: {}",
                    f.file,
                    f.line,
                    f.words.join(" "),
                    e.to_string().lines().next().unwrap_or_default()
                )),
            }
        })
        .collect()
}

/// Whether `words` are a command's path and nothing else (`cluster run`).
fn names_a_command(words: &[String]) -> bool {
    let mut c = Cli::command();
    for w in words {
        match c.find_subcommand(w) {
            Some(s) => c = s.clone(),
            None => return false,
        }
    }
    !words.is_empty()
}

fn all_command_lines() -> Vec<Found> {
    let root = repo();
    documents()
        .iter()
        .flat_map(|p| {
            let text =
                std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let name = p.strip_prefix(&root).unwrap_or(p).display().to_string();
            command_lines(&name, &text)
        })
        .collect()
}

/// The default of `--long` of the command at `path` (`["run"]`), as clap renders it.
fn default_of(path: &[&str], long: &str) -> String {
    let mut c = Cli::command();
    for p in path {
        c = c.find_subcommand(p).unwrap_or_else(|| panic!("no command {p}")).clone();
    }
    let a = c.get_arguments().find(|a| a.get_long() == Some(long)).expect("the flag");
    a.get_default_values()[0].to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commands_reference_is_generated_from_the_parser() {
        let path = repo().join("docs/reference/commands.md");
        let want = commands_reference();
        if std::env::var_os("REPROVM_BLESS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{} is not what the parser says: run `REPROVM_BLESS=1 cargo test -p xtask docs` and commit it",
            path.display()
        );
    }

    #[test]
    fn every_documented_command_line_parses() {
        let found = all_command_lines();
        assert!(found.len() > 50, "only {} command lines found in the docs", found.len());
        let bad = refused(&found);
        assert!(bad.is_empty(), "command lines the parser refuses:\n{}", bad.join("\n"));
    }

    /// The check fails when a documented flag is renamed, and names the file and line.
    #[test]
    fn a_renamed_flag_in_the_docs_fails_the_check() {
        let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
        let found = command_lines("README.md", &readme);
        let good = found
            .iter()
            .find(|f| f.words.iter().any(|w| w == "--ssh-key"))
            .expect("README shows `cargo xtask run --ssh-key …` (how to log in)");
        assert!(refused(std::slice::from_ref(good)).is_empty());
        let renamed = readme.replace("--ssh-key", "--ssh-pubkey");
        let bad = refused(&command_lines("README.md", &renamed));
        assert!(
            bad.iter().any(|b| b.starts_with(&format!("README.md:{}:", good.line))
                && b.contains("--ssh-pubkey")),
            "{bad:?}"
        );
        // Inline spans and shell blocks, continuation lines and pipes.
        let text = "Run `cargo xtask build hd-image` then\n```sh\ncargo xtask boot-test \\\n  --target hd-image | tail -n1  # ok\nREPROVM_OUT=/tmp/o cargo xtask --nope\n```\n";
        let found = command_lines("t.md", text);
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[1].words, ["boot-test", "--target", "hd-image"]);
        let bad = refused(&found);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].starts_with("t.md:5: cargo xtask --nope"), "{bad:?}");
    }

    /// Every REPROVM_ variable the code reads is in docs/reference/environment.md, and every
    /// one a user sets (those above its "Internal and test-only" section) is named by
    /// `cargo xtask --help`.
    #[test]
    fn every_environment_variable_is_documented_and_in_the_help() {
        let doc = std::fs::read_to_string(repo().join("docs/reference/environment.md")).unwrap();
        let mut code = std::collections::BTreeSet::new();
        let mut stack = vec![repo().join("crates"), repo().join("xtask/src")];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    for (i, _) in text.match_indices("\"REPROVM_") {
                        let name: String = text[i + 1..]
                            .chars()
                            .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                            .collect();
                        // A prefix (`"REPROVM_"`, as a filter) names no variable.
                        if !name.ends_with('_') {
                            code.insert(name);
                        }
                    }
                }
            }
        }
        assert!(code.len() >= 10, "{code:?}");
        let undocumented: Vec<&String> =
            code.iter().filter(|v| !doc.contains(&format!("`{v}`"))).collect();
        assert!(undocumented.is_empty(), "not in environment.md: {undocumented:?}");
        // The xtask's own (the farm scripts' variables and the internal ones follow them).
        let user = doc
            .split("## The build farm's scripts")
            .next()
            .unwrap()
            .split("## Internal and test-only")
            .next()
            .unwrap();
        let help = crate::cli::command().render_long_help().to_string();
        let missing: Vec<String> = user
            .split('`')
            .filter(|w| w.starts_with("REPROVM_") && !w.contains(' '))
            .filter(|w| !help.contains(*w))
            .map(String::from)
            .collect();
        assert!(missing.is_empty(), "environment.md names, --help does not: {missing:?}");
    }

    /// What the docs say of ports, key files and flag defaults is what the code does.
    #[test]
    fn documented_defaults_are_the_codes() {
        let ssh: u32 = default_of(&["run"], "ssh-port").parse().unwrap();
        assert_eq!(default_of(&["cluster", "run"], "ssh-port"), ssh.to_string());
        let flag_default = regex_lite_flag_defaults();
        let mut problems = Vec::new();
        for p in documents() {
            let text = std::fs::read_to_string(&p).unwrap();
            let name = p.strip_prefix(repo()).unwrap().display().to_string();
            for (i, line) in text.lines().enumerate() {
                let at = format!("{name}:{}", i + 1);
                // `ssh -p PORT root@127.0.0.1`: the default port, or a cluster node's
                // (base + K, where the line names vmK).
                if let Some(rest) = line.split("ssh -p ").nth(1) {
                    let port: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                    if let Ok(port) = port.parse::<u32>() {
                        let node = line
                            .split("vm")
                            .skip(1)
                            .find_map(|s| s.get(..3).and_then(|d| d.parse::<u32>().ok()));
                        let want = ssh + node.unwrap_or(0);
                        if port != want {
                            problems.push(format!("{at}: ssh -p {port}, but the port is {want}"));
                        }
                    }
                }
                if line.contains(".key.pub") {
                    problems.push(format!(
                        "{at}: `cache keygen F.key` writes F.pub (the extension replaced), not F.key.pub"
                    ));
                }
                if let Some(rest) = line.split("out/cluster/").nth(1) {
                    let first: String = rest.chars().take_while(|c| *c != '/').collect();
                    if !(first.chars().all(|c| c.is_ascii_digit()) || first == "SSH_PORT") {
                        problems.push(format!(
                            "{at}: a cluster's files are in out/cluster/SSH_PORT/, not out/cluster/{first}/"
                        ));
                    }
                }
                for (flag, value) in flag_default(line) {
                    let known = known_defaults();
                    if let Some(want) = known.iter().find(|(f, _)| *f == flag).map(|(_, v)| v) {
                        if *want != value {
                            problems.push(format!(
                                "{at}: says --{flag} defaults to {value}; the code's default is {want}"
                            ));
                        }
                    }
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// Every flag with one default across all commands: (flag, default).
    fn known_defaults() -> Vec<(String, String)> {
        fn walk(c: &Command, out: &mut Vec<(String, Vec<String>)>) {
            for a in c.get_arguments() {
                if let (Some(l), [d, ..]) = (a.get_long(), a.get_default_values()) {
                    let d = d.to_string_lossy().into_owned();
                    match out.iter_mut().find(|(f, _)| f == l) {
                        Some((_, ds)) if !ds.contains(&d) => ds.push(d),
                        Some(_) => {}
                        None => out.push((l.to_string(), vec![d])),
                    }
                }
            }
            for s in c.get_subcommands() {
                walk(s, out);
            }
        }
        let mut all = Vec::new();
        walk(&Cli::command(), &mut all);
        all.into_iter()
            .filter(|(_, ds)| ds.len() == 1)
            .map(|(f, mut ds)| (f, ds.remove(0)))
            .collect()
    }

    /// `--FLAG … (default V)` and `--FLAG … (default: V)` in one clause of a line.
    fn regex_lite_flag_defaults() -> impl Fn(&str) -> Vec<(String, String)> {
        |line: &str| {
            let mut out = Vec::new();
            for (i, _) in line.match_indices("`--") {
                let rest = &line[i + 3..];
                let flag: String =
                    rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
                let clause: String =
                    rest.chars().take(90).take_while(|c| !matches!(c, '.' | ';')).collect();
                if let Some(d) = clause.split("(default").nth(1) {
                    let value: String = d
                        .trim_start_matches(':')
                        .trim()
                        .trim_start_matches('`')
                        .chars()
                        .take_while(|c| !matches!(c, '`' | ')' | ',' | ' '))
                        .collect();
                    if !value.is_empty() {
                        out.push((flag.clone(), value));
                    }
                }
            }
            out
        }
    }
}
