//! The store: input hashes of build nodes (Nix-style input addressing) and the entries
//! `out/store/<hash>-<name>-<version>/` that hold their outputs and manifests, sealed
//! read-only once committed and checked where they are used (`seal.rs`).

pub(crate) mod seal;

use crate::model::graph::Graph;
use crate::model::manifest::{self, Manifest};
use crate::model::project::Project;
use anyhow::{bail, Context, Result};
use reprovm_fs::beneath::{Dir, Kind};
use reprovm_fs::hash::{sha256_reader, Hasher};
use reprovm_fs::lock::Lock;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Input hashes of a set of nodes, memoised: each is computed once per run.
pub(crate) struct InputHashes<'a> {
    graph: &'a Graph,
    recipes: Dir,
    pins: PathBuf,
    toolchain_id: String,
    memo: BTreeMap<String, String>,
}

impl<'a> InputHashes<'a> {
    pub(crate) fn new(graph: &'a Graph, project: &Project, toolchain_id: &str) -> Result<Self> {
        let recipes = Dir::open(&project.recipes)?;
        Ok(InputHashes {
            graph,
            recipes,
            pins: project.pins.clone(),
            toolchain_id: toolchain_id.to_string(),
            memo: BTreeMap::new(),
        })
    }

    /// sha256 over: the recipe text, the hash of every declared file and overlay, the pinned
    /// hash of every source, the input hash of every dependency, the versions of the engine's
    /// steps it uses (`steps::versions`), and the toolchain identity.
    /// Not over where the checkout is, nor `-j`: outputs must not depend on them.
    pub(crate) fn get(&mut self, name: &str) -> Result<String> {
        if let Some(h) = self.memo.get(name) {
            return Ok(h.clone());
        }
        let l = self.graph.get(name)?;
        let mut h = Hasher::new("reprovm-input-v1");
        h.field("name", name.as_bytes());
        h.field("recipe", l.identity.as_bytes());
        // Values the graph filled in (`{kernel.version}`, newest tags) come from elsewhere than
        // the text: hash what they became (nothing is added for a recipe without any).
        let filled = filled_values(&l.recipe);
        if filled != filled_values(&l.template) {
            h.field("filled", filled.as_bytes());
        }
        for f in &l.recipe.files {
            let mut file = self
                .recipes
                .open_file(Path::new(f))
                .with_context(|| format!("recipe {name}: file `{f}` listed in `files`"))?;
            let (sha, _) = sha256_reader(&mut file)?;
            h.field("file", format!("{f} {sha}").as_bytes());
        }
        if let Some(rootfs) = &l.recipe.rootfs {
            for o in &rootfs.overlays {
                let th = tree_hash(&self.recipes, Path::new(o))
                    .with_context(|| format!("recipe {name}: overlay `{o}`"))?;
                h.field("overlay", format!("{o} {th}").as_bytes());
            }
        }
        for s in &l.recipe.sources {
            h.field("source", format!("{} {} {}", s.file, s.sha256, s.strip_components).as_bytes());
        }
        // `[rootfs] debian`: the lock's bytes (every .deb by sha256). Recipes without it
        // hash as before.
        if l.recipe.rootfs.as_ref().is_some_and(|r| !r.debian.is_empty()) {
            let lock = crate::model::pins::debian_lock(&self.pins, &l.recipe.name, self.graph.arch);
            let bytes = std::fs::read(&lock).with_context(|| {
                format!(
                    "{}: recipes/{}.toml installs Debian packages: run `cargo xtask pin debian {}`",
                    lock.display(),
                    l.recipe.name,
                    l.recipe.name
                )
            })?;
            h.field("debian-lock", reprovm_fs::hash::sha256_bytes(&bytes).as_bytes());
        }
        for d in &l.recipe.deps {
            let dh = self.get(&self.graph.dep_node(name, d))?;
            h.field("dep", format!("{d} {dh}").as_bytes());
        }
        for v in crate::model::step_versions::of(&l.recipe) {
            h.field("step", v.as_bytes());
        }
        h.field("toolchain", self.toolchain_id.as_bytes());
        // Another architecture is named even though its toolchain already differs (so that a
        // host-toolchain build for it cannot pass for an x86_64 one); x86_64 adds nothing.
        if !self.graph.arch.is_default() {
            h.field("arch", self.graph.arch.name().as_bytes());
        }
        let out = h.finish();
        self.memo.insert(name.to_string(), out.clone());
        Ok(out)
    }
}

/// The values of a recipe that placeholders and `[oci] newest-tags` can change, one per line.
fn filled_values(r: &crate::model::recipe::Recipe) -> String {
    let mut out = format!("version {}\n", r.version);
    for (k, v) in &r.env {
        out.push_str(&format!("env {k}={v}\n"));
    }
    if let Some(o) = &r.oci {
        for t in &o.tags {
            out.push_str(&format!("tag {t}\n"));
        }
        for (k, v) in &o.annotations {
            out.push_str(&format!("annotation {k}={v}\n"));
        }
    }
    out
}

/// Content hash of a file or directory tree beneath `base` (types, modes of files, contents,
/// link targets); symlinks are hashed as symlinks.
pub(crate) fn tree_hash(base: &Dir, rel: &Path) -> Result<String> {
    let meta = base
        .metadata(rel)?
        .with_context(|| format!("{} does not exist", base.path().join(rel).display()))?;
    match meta.kind {
        Kind::File => Ok(sha256_reader(&mut base.open_file(rel)?)?.0),
        Kind::Dir => Ok(manifest::output_hash(&manifest::scan_dir(&base.open_dir(rel)?)?)),
        _ => bail!("{}: an overlay is a directory or a tarball", base.path().join(rel).display()),
    }
}

/// Store entry directory for a node.
pub(crate) fn entry_dir(project: &Project, name: &str, version: &str, input_hash: &str) -> PathBuf {
    project.store().join(format!("{}-{name}-{version}", &input_hash[..32]))
}

/// The entry's manifest: None when the node is not built (entries appear by atomic rename
/// only, with their manifest). An entry whose manifest cannot be read or does not belong to
/// it is an error naming the fix, never "not built".
pub(crate) fn lookup(
    project: &Project,
    name: &str,
    version: &str,
    input_hash: &str,
) -> Result<Option<Manifest>> {
    let dir = entry_dir(project, name, version, input_hash);
    if std::fs::symlink_metadata(&dir).is_err() {
        return Ok(None);
    }
    let fix = format!("remove {} and build again", dir.display());
    let m = manifest::read(&dir.join("manifest.json"))
        .with_context(|| format!("damaged store entry; {fix}"))?;
    if m.input_hash != input_hash || m.name != name {
        bail!(
            "store entry {} holds {} [{}], not {name} [{input_hash}]; {fix}",
            dir.display(),
            m.name,
            m.input_hash
        );
    }
    Ok(Some(m))
}

/// A node of a build's closure and the store entry that holds it.
#[derive(Debug, Clone)]
pub struct BuiltNode {
    pub name: String,
    pub entry: PathBuf,
    pub manifest: crate::model::manifest::Manifest,
}

/// The outputs of a built node.
pub(crate) fn out_dir(entry: &Path) -> PathBuf {
    entry.join("out")
}

/// The store lock of an output directory, held shared or exclusively: no gc runs while it
/// lives. Builders hold it shared, so that several reprovm processes build in one out/ at
/// once; each store entry they write is guarded by its own lock ([`entry_lock`]), and each
/// toolchain root they make by its own. Functions that write the store, the toolchain roots or
/// the work trees take a `&StoreLock`, so holding it is a fact the compiler checks, not a
/// comment.
#[derive(Debug)]
pub(crate) struct StoreLock {
    _lock: Lock,
}

/// The store lock held exclusively: nobody else builds, substitutes or collects in this
/// out/ while it lives (gc, the store's repair, a benchmark's cold build). It is also a
/// [`StoreLock`].
#[derive(Debug)]
pub(crate) struct StoreExclusive(StoreLock);

impl std::ops::Deref for StoreExclusive {
    type Target = StoreLock;
    fn deref(&self) -> &StoreLock {
        &self.0
    }
}

fn store_lock_path(out: &Path) -> PathBuf {
    out.join("store").join(".lock")
}

/// The store lock of an output directory, taken exclusively; on the way in, the temp entries
/// and work trees of killed processes are removed (nobody else can be writing them).
pub(crate) fn store_exclusive(out: &Path) -> Result<StoreExclusive> {
    let lock = Lock::exclusive(&store_lock_path(out))?;
    sweep_stale(out)?;
    Ok(StoreExclusive(StoreLock { _lock: lock }))
}

/// The store lock of an output directory, taken shared (what builds hold): several processes
/// at once, none beside a gc. The first holder sweeps what killed processes left (it takes the
/// lock exclusively for that, then shares it); while another process holds it, nothing is
/// swept: what a live process is writing is never taken for stale.
pub(crate) fn store_shared(out: &Path) -> Result<StoreLock> {
    let path = store_lock_path(out);
    let lock = match Lock::try_exclusive(&path)? {
        Some(exclusive) => {
            sweep_stale(out)?;
            exclusive.downgrade()?
        }
        None => Lock::shared(&path)?,
    };
    Ok(StoreLock { _lock: lock })
}

/// The lock of one store entry (`store/.locks/NAME.lock`), held exclusively while the entry is
/// substituted or built: a second process that needs the same entry waits, then finds it
/// committed. Taken only under the store lock (so a gc, which removes the lock files of the
/// entries it removes, never sees it held). None when `stopped` said to give up waiting.
pub(crate) fn entry_lock(
    entry: &Path,
    _store: &StoreLock,
    stopped: &dyn Fn() -> bool,
) -> Result<Option<Lock>> {
    let (Some(store), Some(name)) = (entry.parent(), entry.file_name()) else {
        anyhow::bail!("{}: not a store entry", entry.display());
    };
    let mut file = name.to_os_string();
    file.push(".lock");
    Lock::exclusive_unless(&store.join(ENTRY_LOCKS).join(file), stopped)
}

/// Where the entries' locks live, under `store/` (a dot name: never an entry).
pub(crate) const ENTRY_LOCKS: &str = ".locks";

/// Remove `store/.tmp-*`, `toolchain/.tmp-*` and everything in `work/`.
fn sweep_stale(out: &Path) -> Result<()> {
    for (dir, prefix) in [("store", Some(".tmp-")), ("toolchain", Some(".tmp-")), ("work", None)] {
        let path = out.join(dir);
        if !path.is_dir() {
            continue;
        }
        let d = Dir::open(&path)?;
        for name in d.names()? {
            let stale = match prefix {
                Some(p) => name.to_string_lossy().starts_with(p),
                None => true,
            };
            if stale {
                reprovm_fs::progress::say(&format!(
                    "removing {} (left by an interrupted run)",
                    path.join(&name).display()
                ));
                d.remove_all(Path::new(&name))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::arch::Arch;
    use crate::model::graph::Graph;

    const SHA: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn setup(root: &Path) {
        let r = root.join("recipes");
        std::fs::create_dir_all(r.join("over/etc")).unwrap();
        std::fs::write(
            r.join("dep.toml"),
            "name = \"dep\"\nversion = \"1\"\n[build]\nscript = \"true\"\n",
        )
        .unwrap();
        std::fs::write(
            r.join("top.toml"),
            format!(
                "name = \"top\"\nversion = \"1\"\ndeps = [\"dep\"]\nfiles = [\"conf\"]\n\
                 [[source]]\nfile = \"s.tar.gz\"\nsha256 = \"{SHA}\"\nsize = 3\n\
                 [rootfs]\noverlays = [\"over\"]\n[build]\nscript = \"true\"\n"
            ),
        )
        .unwrap();
        std::fs::write(r.join("conf"), "x=1\n").unwrap();
        std::fs::write(r.join("over/etc/motd"), "hi\n").unwrap();
    }

    fn hash(root: &Path, toolchain: &str) -> String {
        let mut p = Project::new(Some(root.join("recipes")), Some(root.join("out")), None);
        p.root = root.to_path_buf();
        let g = Graph::load(&p.recipes).unwrap();
        InputHashes::new(&g, &p, toolchain).unwrap().get("top").unwrap()
    }

    /// The core invariant: the input hash changes with each input and with nothing else.
    #[test]
    fn an_arch_table_leaves_the_default_architecture_alone_and_enters_the_other() {
        let t = tempfile::tempdir().unwrap();
        let (plain, with) = (t.path().join("plain"), t.path().join("with"));
        for d in [&plain, &with] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(
                d.join("a.toml"),
                "name = \"a\"\nversion = \"1\"\n[build]\nscript = \"true\"\n",
            )
            .unwrap();
            std::fs::write(
                d.join("b.toml"),
                "name = \"b\"\nversion = \"1\"\ndeps = [\"a\"]\n[build]\nscript = \"true\"\n",
            )
            .unwrap();
        }
        let text = std::fs::read_to_string(with.join("a.toml")).unwrap();
        let arm = "\n[arch.aarch64.env]\nCROSS_COMPILE = \"aarch64-linux-gnu-\"\n";
        std::fs::write(with.join("a.toml"), format!("{text}{arm}")).unwrap();
        let p = Project::new(Some(plain.clone()), None, None);
        let hashes = |dir: &Path, arch: Arch| {
            let g = Graph::load_for(dir, arch).unwrap();
            let mut h = InputHashes::new(&g, &p, "tc").unwrap();
            (h.get("a").unwrap(), h.get("b").unwrap())
        };
        assert_eq!(hashes(&plain, Arch::X86_64), hashes(&with, Arch::X86_64));
        let (a, b) = hashes(&with, Arch::Aarch64);
        let (a0, b0) = hashes(&plain, Arch::Aarch64);
        assert_ne!(a, a0, "the merged table is part of the aarch64 node");
        assert_ne!(b, b0, "and of every node over it");
        assert_ne!(a0, hashes(&plain, Arch::X86_64).0, "the architecture is in every input hash");
        let g = Graph::load_for(&with, Arch::Aarch64).unwrap();
        assert_eq!(g.get("a").unwrap().recipe.env["CROSS_COMPILE"], "aarch64-linux-gnu-");
        assert_eq!(g.get("b").unwrap().arch, Arch::Aarch64);
    }

    #[test]
    fn input_hash_follows_every_input_and_nothing_else() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a");
        setup(&a);
        let base = hash(&a, "tc1");
        // Not the checkout path.
        let b = t.path().join("a-much-longer/checkout/path");
        setup(&b);
        assert_eq!(hash(&b, "tc1"), base, "moved checkout changed the input hash");
        let r = a.join("recipes");
        let edit = |f: &str, from: &str, to: &str| {
            let p = r.join(f);
            let s = std::fs::read_to_string(&p).unwrap();
            assert!(s.contains(from), "{f} lacks {from}");
            std::fs::write(&p, s.replacen(from, to, 1)).unwrap();
        };
        let mut seen = vec![base.clone()];
        let mut check = |what: &str| {
            let h = hash(&a, "tc1");
            assert!(!seen.contains(&h), "{what} did not change the input hash");
            seen.push(h);
        };
        edit("top.toml", "script = \"true\"", "script = \"true \"");
        check("the recipe text");
        edit("conf", "x=1", "x=2");
        check("a declared file");
        edit("over/etc/motd", "hi", "ho");
        check("an overlay file");
        edit("top.toml", "size = 3\n", "size = 3\nstrip-components = 2\n");
        check("a source's unpacking");
        edit("top.toml", SHA, &SHA.replace("ba78", "ba79"));
        check("a source pin");
        edit("dep.toml", "script = \"true\"", "script = \"false\"");
        check("a dependency");
        assert!(
            !seen.contains(&hash(&a, "tc2")),
            "the toolchain identity did not change the input hash"
        );
    }

    #[test]
    fn a_damaged_entry_is_an_error_not_a_cache_miss() {
        let t = tempfile::tempdir().unwrap();
        let p = Project::new(Some(t.path().join("recipes")), Some(t.path().join("out")), None);
        let ih = "c".repeat(64);
        assert!(lookup(&p, "n", "1", &ih).unwrap().is_none());
        let dir = entry_dir(&p, "n", "1", &ih);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("manifest.json"), "{ truncated").unwrap();
        let e = format!("{:#}", lookup(&p, "n", "1", &ih).unwrap_err());
        assert!(e.contains("damaged store entry") && e.contains("remove"), "{e}");
    }

    #[test]
    fn taking_the_store_lock_sweeps_stale_temp_entries() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path();
        for p in [
            "store/.tmp-kernel-123/out",
            "store/abc-kernel-1/out",
            "work/abc-kernel/build",
            "toolchain/.tmp-x/root",
        ] {
            std::fs::create_dir_all(out.join(p)).unwrap();
        }
        let _l = store_exclusive(out).unwrap();
        assert!(!out.join("store/.tmp-kernel-123").exists());
        assert!(!out.join("toolchain/.tmp-x").exists());
        assert!(!out.join("work/abc-kernel").exists());
        assert!(out.join("store/abc-kernel-1/out").exists(), "a real entry was swept");
    }
}
