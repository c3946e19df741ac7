//! Reproducibility audits: rebuild targets from scratch under deliberate variations of what
//! the sandbox claims to normalise, compare every output file with the store entry and with
//! `pins/outputs.toml`, and explain each difference (ELF sections and symbols, the kernel's
//! compressed payload, ext4 inodes, text diffs). Like reprotest + diffoscope, built in.

use crate::build::{self, Options};
use crate::explain::{self, FileDiff, Tools};
use crate::fetch::Fetcher;
use crate::manifest::{self, Manifest};
use crate::project::Project;
use crate::{progress, store, toolchain};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const DEFAULT_TARGETS: [&str; 6] =
    ["kernel", "busybox", "dropbear", "iproute2", "rootfs", "hd-image"];

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// Targets to rebuild and compare (default: kernel busybox dropbear iproute2 rootfs hd-image).
    pub targets: Vec<String>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Write a deterministic zip with the report, both manifests and the logs.
    #[arg(long, value_name = "FILE.zip")]
    pub bundle: Option<PathBuf>,
    /// Parallel jobs of the rebuild (the first build used the CPU count; default 1).
    #[arg(long, default_value_t = 1)]
    pub rebuild_jobs: usize,
    /// Keep the rebuilt outputs even when they match.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TargetReport {
    pub name: String,
    pub input_hash: String,
    pub store_output_hash: String,
    pub rebuild_output_hash: String,
    pub pinned_output_hash: Option<String>,
    pub matches_store: bool,
    /// None when no pin exists for this target.
    pub matches_pin: Option<bool>,
    pub variations: Vec<String>,
    pub differences: Vec<FileDiff>,
    pub rebuild_dir: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Report {
    pub schema: String,
    pub toolchain: String,
    pub ok: bool,
    pub targets: Vec<TargetReport>,
}

pub const SCHEMA: &str = "reprovm-audit/1";

// ---------------------------------------------------------------------------------------
// pins/outputs.toml

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct PinnedOutput {
    pub version: String,
    pub input_hash: String,
    pub output_hash: String,
    pub files: BTreeMap<String, String>,
}

pub fn read_pins(project: &Project) -> Result<BTreeMap<String, PinnedOutput>> {
    let p = project.outputs_pin();
    match fs::read_to_string(&p) {
        Ok(text) => toml::from_str(&text)
            .map_err(|e| anyhow::format_err!("{}: {}", p.display(), e.message())),
        Err(_) => Ok(BTreeMap::new()),
    }
}

fn pin_of(m: &Manifest) -> PinnedOutput {
    let files =
        m.files.iter().filter_map(|f| f.sha256.clone().map(|s| (f.path.clone(), s))).collect();
    PinnedOutput {
        version: m.version.clone(),
        input_hash: m.input_hash.clone(),
        output_hash: m.output_hash.clone(),
        files,
    }
}

/// `cargo xtask pin outputs [TARGETS]`: build (or reuse) and record, showing what changed.
pub fn pin_outputs(project: &Project, fetcher: &Fetcher, targets: &[String]) -> Result<()> {
    let graph = project.graph()?;
    let targets: Vec<String> = if targets.is_empty() {
        DEFAULT_TARGETS.iter().map(|s| s.to_string()).collect()
    } else {
        targets.to_vec()
    };
    let mut pins = read_pins(project)?;
    let old = pins.clone();
    for t in &targets {
        let res = build::build(
            project,
            &graph,
            fetcher,
            t,
            &Options { jobs: crate::cli::default_jobs(), ..Default::default() },
        )?;
        pins.insert(t.clone(), pin_of(&res.manifest));
    }
    let mut changes = Vec::new();
    for (name, new) in &pins {
        match old.get(name) {
            None => changes.push(format!("+ {name}: {}", new.output_hash)),
            Some(o) if o.output_hash != new.output_hash => {
                changes.push(format!("~ {name}: {} -> {}", o.output_hash, new.output_hash));
                for (f, h) in &new.files {
                    match o.files.get(f) {
                        None => changes.push(format!("    + {f} {h}")),
                        Some(oh) if oh != h => changes.push(format!("    ~ {f} {oh} -> {h}")),
                        _ => {}
                    }
                }
                for f in o.files.keys().filter(|f| !new.files.contains_key(*f)) {
                    changes.push(format!("    - {f}"));
                }
            }
            _ => {}
        }
    }
    let body = format!(
        "# Expected output hashes, written by `cargo xtask pin outputs`. `cargo xtask audit` compares\n# fresh rebuilds with these; they are produced with the pinned toolchain (pins/toolchain.lock).\n{}",
        toml::to_string(&pins)?
    );
    toolchain::write_atomic(&project.outputs_pin(), body.as_bytes())?;
    if changes.is_empty() {
        println!("{}: unchanged", project.outputs_pin().display());
    } else {
        println!("{}:", project.outputs_pin().display());
        for c in changes {
            println!("{c}");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The audit run

/// Host-side variations of the rebuild (the sandbox must make all of them irrelevant).
fn variations(jobs: usize) -> Vec<(String, String)> {
    vec![
        (
            "build root path".into(),
            "a different, longer work directory on another file system when possible".into(),
        ),
        ("wall-clock time".into(), "the rebuild runs later than the first build".into()),
        ("TZ".into(), "Pacific/Kiritimati (UTC+14) instead of the caller's".into()),
        ("umask".into(), "0002".into()),
        ("locale".into(), "LANG/LC_ALL=et_EE.UTF-8".into()),
        ("hostname".into(), "reprovm-audit-other (UTS namespace, when root)".into()),
        ("parallelism".into(), format!("-j{jobs}")),
        (
            "directory order".into(),
            "every source directory's entries re-created in reverse order".into(),
        ),
    ]
}

pub fn run(project: &Project, fetcher: &Fetcher, args: &AuditArgs) -> Result<()> {
    let graph = project.graph()?;
    let targets: Vec<String> = if args.targets.is_empty() {
        DEFAULT_TARGETS.iter().map(|s| s.to_string()).collect()
    } else {
        args.targets.clone()
    };
    let pins = read_pins(project)?;
    let tc = toolchain::ensure(project, fetcher)?;
    let audit_root = project.out.join("audit");
    fs::create_dir_all(&audit_root)?;
    let mut reports = Vec::new();
    for t in &targets {
        // 1. The reference: the store entry (built now if missing, never overwritten).
        let first = build::build(
            project,
            &graph,
            fetcher,
            t,
            &Options { jobs: crate::cli::default_jobs(), quiet: true, ..Default::default() },
        )?;
        // 2. The rebuild, in another process under varied host conditions, into the audit dir.
        let into = audit_root.join(format!("{t}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&into);
        fs::create_dir_all(&into)?;
        let work_root = varied_work_root(project, t);
        progress::say(&format!(
            "audit {t}: rebuilding from scratch with -j{} under varied conditions (work {}, log in {})",
            args.rebuild_jobs,
            work_root.display(),
            into.join("logs").display()
        ));
        let rebuilt = rebuild(project, t, &into, &work_root, args.rebuild_jobs)?;
        let _ = fs::remove_dir_all(&work_root);
        let entry_rebuilt = into.join(format!("{}-{t}", &first.manifest.input_hash[..16]));
        let pin = pins.get(t);
        let mut diffs = explain::compare(
            &first.manifest.files,
            &rebuilt.files,
            &store::out_dir(&first.entry),
            &store::out_dir(&entry_rebuilt),
            &Tools::Sandbox(&tc.root),
        );
        if let Some(p) = pin {
            if p.output_hash != first.manifest.output_hash {
                diffs.extend(compare_with_pin(p, &first.manifest));
            }
        }
        let matches_store = rebuilt.output_hash == first.manifest.output_hash;
        let matches_pin = pin.map(|p| p.output_hash == rebuilt.output_hash);
        let keep = !matches_store || matches_pin == Some(false) || args.keep;
        let rebuild_dir = if keep { Some(entry_rebuilt.display().to_string()) } else { None };
        reports.push(TargetReport {
            name: t.clone(),
            input_hash: first.manifest.input_hash.clone(),
            store_output_hash: first.manifest.output_hash.clone(),
            rebuild_output_hash: rebuilt.output_hash.clone(),
            pinned_output_hash: pin.map(|p| p.output_hash.clone()),
            matches_store,
            matches_pin,
            variations: variations(args.rebuild_jobs)
                .into_iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect(),
            differences: diffs,
            rebuild_dir,
        });
        if !keep {
            let logs = into.join("logs");
            let keep_logs = audit_root.join(format!("{t}-last-logs"));
            let _ = fs::remove_dir_all(&keep_logs);
            let _ = fs::rename(&logs, &keep_logs);
            let _ = fs::remove_dir_all(&into);
        }
    }
    let ok = reports.iter().all(|r| r.matches_store && r.matches_pin != Some(false));
    let report = Report { schema: SCHEMA.into(), toolchain: tc.id.clone(), ok, targets: reports };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    if let Some(b) = &args.bundle {
        write_bundle(project, &report, b)?;
        progress::say(&format!("bundle written to {}", b.display()));
    }
    if !ok {
        bail!("audit found differences (see the report above)");
    }
    Ok(())
}

/// A work root on a different file system and path (tmpfs when it has room), so that path
/// length, file system and directory order all differ from the first build.
fn varied_work_root(project: &Project, target: &str) -> PathBuf {
    let shm = Path::new("/dev/shm");
    let big = matches!(target, "kernel");
    if !big && shm.is_dir() {
        return shm.join(format!(
            "reprovm-audit-variant-build-root-{}-{}",
            target,
            std::process::id()
        ));
    }
    project.out.join(format!(
        "audit/a-much-longer-variant-build-root-path/{target}-{}",
        std::process::id()
    ))
}

fn rebuild(
    project: &Project,
    target: &str,
    into: &Path,
    work_root: &Path,
    jobs: usize,
) -> Result<Manifest> {
    let exe = std::env::current_exe()?;
    let mut inner = format!(
        "umask 0002; exec '{}' --recipes '{}' --out '{}' --cache '{}' build '{target}' --jobs {jobs} --rebuild '{target}' --rebuild-into '{}' --work-root '{}' --shuffle-dirents",
        exe.display(),
        project.recipes.display(),
        project.out.display(),
        project.cache.display(),
        into.display(),
        work_root.display()
    );
    if project.host_toolchain {
        inner = inner.replacen("' --recipes", "' --host-toolchain --recipes", 1);
    }
    for u in &project.uses {
        inner.push_str(&format!(" --use '{u}'"));
    }
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    let mut c = if root && crate::qemu::which("unshare").is_some() {
        let mut c = Command::new("unshare");
        c.args(["--uts", "sh", "-c", &format!("hostname reprovm-audit-other; {inner}")]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", &inner]);
        c
    };
    c.env("TZ", "Pacific/Kiritimati")
        .env("LANG", "et_EE.UTF-8")
        .env("LC_ALL", "et_EE.UTF-8")
        .env("REPROVM_AUDIT_CANARY", "1");
    c.stdout(std::process::Stdio::from(std::io::stderr()));
    let st = c.status().context("starting the rebuild")?;
    anyhow::ensure!(
        st.success(),
        "the audit rebuild of {target} failed (logs in {})",
        into.join("logs").display()
    );
    let entry = fs::read_dir(into)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("manifest.json").is_file())
        .context("the rebuild produced no entry")?;
    manifest::read(&entry.join("manifest.json"))
}

fn compare_with_pin(pin: &PinnedOutput, m: &Manifest) -> Vec<FileDiff> {
    let mut out = Vec::new();
    let now: BTreeMap<&str, &str> =
        m.files.iter().filter_map(|f| f.sha256.as_deref().map(|s| (f.path.as_str(), s))).collect();
    let note = if pin.input_hash != m.input_hash {
        " (the pin was recorded for other inputs: re-pin with `cargo xtask pin outputs` if the change is intended)"
    } else {
        ""
    };
    for (p, h) in &pin.files {
        match now.get(p.as_str()) {
            Some(x) if x == h => {}
            Some(x) => out.push(FileDiff {
                path: p.clone(),
                kind: "pin".into(),
                explanation: vec![format!("pinned {h}, store has {x}{note}")],
            }),
            None => out.push(FileDiff {
                path: p.clone(),
                kind: "pin".into(),
                explanation: vec![format!("pinned but not produced{note}")],
            }),
        }
    }
    for p in now.keys().filter(|p| !pin.files.contains_key(**p)) {
        out.push(FileDiff {
            path: p.to_string(),
            kind: "pin".into(),
            explanation: vec![format!("produced but not pinned{note}")],
        });
    }
    out
}

pub fn render(r: &Report) -> String {
    let mut s = String::new();
    for t in &r.targets {
        let pin = match t.matches_pin {
            Some(true) => "matches pins/outputs.toml",
            Some(false) => "DIFFERS from pins/outputs.toml",
            None => "no pin",
        };
        let store =
            if t.matches_store { "identical to the store" } else { "DIFFERS from the store" };
        s.push_str(&format!(
            "{:<10} {} rebuild {}; {}\n",
            t.name,
            &t.rebuild_output_hash[..16],
            store,
            pin
        ));
        for d in &t.differences {
            s.push_str(&format!("  {} [{}]\n", d.path, d.kind));
            for e in &d.explanation {
                s.push_str(&format!("    {e}\n"));
            }
        }
        if let Some(dir) = &t.rebuild_dir {
            s.push_str(&format!("  rebuilt outputs kept in {dir}\n"));
        }
    }
    s.push_str(if r.ok {
        "audit: all outputs reproduced bit for bit\n"
    } else {
        "audit: NOT reproducible\n"
    });
    s
}

/// A zip whose bytes depend only on its contents: sorted names, fixed times, fixed method.
pub fn write_bundle(project: &Project, report: &Report, path: &Path) -> Result<()> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    files.insert("report.json".into(), serde_json::to_vec_pretty(report)?);
    files.insert("report.txt".into(), render(report).into_bytes());
    let graph = project.graph()?;
    for t in &report.targets {
        let l = graph.get(&t.name)?;
        let entry = store::entry_dir(project, &t.name, &l.recipe.version, &t.input_hash);
        if let Ok(m) = fs::read(entry.join("manifest.json")) {
            files.insert(format!("{}/store-manifest.json", t.name), m);
        }
        if let Ok(log) =
            fs::read(project.logs().join(format!("{}-{}.log", t.name, &t.input_hash[..16])))
        {
            files.insert(format!("{}/store-build.log", t.name), log);
        }
        let logs = match &t.rebuild_dir {
            Some(d) => Path::new(d).parent().map(|p| p.join("logs")).unwrap_or_default(),
            None => project.out.join("audit").join(format!("{}-last-logs", t.name)),
        };
        if let Some(d) = &t.rebuild_dir {
            if let Ok(m) = fs::read(Path::new(d).join("manifest.json")) {
                files.insert(format!("{}/rebuild-manifest.json", t.name), m);
            }
        }
        if let Ok(log) = fs::read(logs.join(format!("{}-{}.log", t.name, &t.input_hash[..16]))) {
            files.insert(format!("{}/rebuild.log", t.name), log);
        }
    }
    write_zip(path, &files)
}

pub fn write_zip(path: &Path, files: &BTreeMap<String, Vec<u8>>) -> Result<()> {
    let tmp = path.with_extension("zip.tmp");
    {
        let f = fs::File::create(&tmp)?;
        let mut z = zip::ZipWriter::new(f);
        let time = zip::DateTime::from_date_and_time(1980, 1, 1, 0, 0, 0)
            .map_err(|_| anyhow::format_err!("bad zip time"))?;
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(6))
            .last_modified_time(time)
            .unix_permissions(0o644);
        for (name, data) in files {
            z.start_file(name.as_str(), opts)?;
            z.write_all(data)?;
        }
        z.finish()?.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_json_round_trips() {
        let r = Report {
            schema: SCHEMA.into(),
            toolchain: "t".into(),
            ok: false,
            targets: vec![TargetReport {
                name: "busybox".into(),
                input_hash: "a".repeat(64),
                store_output_hash: "b".repeat(64),
                rebuild_output_hash: "c".repeat(64),
                pinned_output_hash: None,
                matches_store: false,
                matches_pin: None,
                variations: vec!["umask: 0002".into()],
                differences: vec![FileDiff {
                    path: "bin/busybox".into(),
                    kind: "content".into(),
                    explanation: vec!["section .rodata differs".into()],
                }],
                rebuild_dir: Some("/x".into()),
            }],
        };
        let text = serde_json::to_string(&r).unwrap();
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(r, back);
        // Unknown schema shapes are refused rather than half-read.
        assert!(serde_json::from_str::<Report>("{\"schema\":\"x\"}").is_err());
    }

    #[test]
    fn zip_bundle_is_deterministic() {
        let t = tempfile::tempdir().unwrap();
        let mut files = BTreeMap::new();
        files.insert("b.txt".to_string(), b"two".to_vec());
        files.insert("a.txt".to_string(), b"one".to_vec());
        write_zip(&t.path().join("1.zip"), &files).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        write_zip(&t.path().join("2.zip"), &files).unwrap();
        assert_eq!(
            fs::read(t.path().join("1.zip")).unwrap(),
            fs::read(t.path().join("2.zip")).unwrap()
        );
    }
}
