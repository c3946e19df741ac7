//! The recipe graph: every recipe in `recipes/`, their other versions, dependency resolution
//! and topological order.
//!
//! Nodes are named like targets: `kernel` (a recipe), `kernel@6.18` (the recipe with the
//! version and sources of its `[versions."6.18"]`), and `hd-image@6.18` (a recipe over one
//! of those: every dependency that has a `@6.18` node is taken at it). `{DEP.version}`
//! placeholders are filled per node, so `firecracker-kernel-bin-oci@6.18` carries kernel@6.18's
//! version, and `[oci] newest-tags` go to the layout over the newest version.

use crate::model::arch::Arch;
use crate::model::recipe::{self, placeholders, Cell, Exclusion, Loaded, Recipe};
use anyhow::{bail, Context, Result};
use reprovm_fs::util::display_rel;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[derive(Debug)]
pub(crate) struct Graph {
    /// Every node by name: each recipe, each of its other versions (`kernel@6.18`) and each
    /// recipe over one of those (`hd-image@6.18`).
    pub recipes: BTreeMap<String, Loaded>,
    /// Dependency substitutions (`--use kernel=kernel@6.18`): every dependency named by the
    /// key is built from the node named by the value, and still appears under the key's name.
    pub aliases: BTreeMap<String, String>,
    /// The architecture every node is built for (`--arch`).
    pub arch: Arch,
}

impl Graph {
    /// Load and validate every `*.toml` directly in `dir` for the default architecture, and
    /// add the nodes of their other versions.
    #[cfg(test)]
    pub(crate) fn load(dir: &Path) -> Result<Graph> {
        Graph::load_for(dir, Arch::X86_64)
    }

    /// The graph for `arch`: every recipe with its `[arch.NAME]` table merged over it.
    pub(crate) fn load_for(dir: &Path, arch: Arch) -> Result<Graph> {
        let base = dir.parent().unwrap_or(dir);
        let mut recipes = BTreeMap::new();
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("reading recipe directory {}", dir.display()))?;
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let display = display_rel(&path, base);
            let text =
                std::fs::read_to_string(&path).with_context(|| format!("reading {display}"))?;
            let recipe = recipe::parse_for(&path, &text, &display, arch)?;
            let identity = identity(&recipe, &text, None, arch)
                .with_context(|| format!("{display}: reading [versions]"))?;
            recipes.insert(
                recipe.name.clone(),
                Loaded::new(recipe.clone(), path, text, Cell::default(), identity),
            );
        }
        let mut graph = Graph { recipes, aliases: BTreeMap::new(), arch };
        graph.check_deps(base)?;
        graph.add_versions()?;
        graph.exclude_cells();
        graph.fill()?;
        for l in graph.recipes.values_mut() {
            l.arch = arch;
        }
        Ok(graph)
    }

    /// `NAME@KEY`, `NAME+FLAVOUR` and `NAME@KEY+FLAVOUR` for every `[versions.KEY]` and
    /// `[flavours.FLAVOUR]`, then `R` at each such cell for every recipe R with a dependency
    /// that has a node there (dependencies first).
    fn add_versions(&mut self) -> Result<()> {
        let mut cells = BTreeSet::new();
        let mut added = Vec::new();
        for (name, l) in &self.recipes {
            let t = &l.template;
            let versions = std::iter::once(None).chain(t.versions.iter().map(Some));
            for v in versions {
                let flavours = std::iter::once(None).chain(t.flavours.keys().map(Some));
                for f in flavours {
                    let cell = Cell { version: v.map(|(k, _)| k.clone()), flavour: f.cloned() };
                    if cell.is_default() {
                        continue;
                    }
                    let mut r = match f {
                        Some(f) => t.with_flavour(f),
                        None => t.clone(),
                    };
                    r.flavours.clear();
                    if let Some((_, ov)) = v {
                        r.version = ov.version.clone();
                        r.sources = ov.sources.clone();
                    }
                    r.versions.clear();
                    let at = v.map(|(k, ov)| (k, &ov.version));
                    let mut identity = identity(t, &l.text, at, self.arch)?;
                    if let Some(f) = f {
                        let fl = &t.flavours[f];
                        identity.push_str(&format!(
                            "\n# reprovm: flavour {f}: fragments {:?}, append-env {:?}\n",
                            fl.fragments, fl.append_env
                        ));
                    }
                    let node =
                        Loaded::new(r, l.path.clone(), l.text.clone(), cell.clone(), identity);
                    added.push((format!("{name}{}", cell.suffix()), node));
                    cells.insert(cell);
                }
            }
        }
        self.recipes.extend(added);
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        let names: Vec<String> = self.recipes.keys().filter(|n| is_base(n)).cloned().collect();
        for n in &names {
            self.visit(n, &mut Vec::new(), &mut done, &mut order, Path::new("/"))?;
        }
        for cell in &cells {
            let suffix = cell.suffix();
            for name in &order {
                let over = format!("{name}{suffix}");
                if self.recipes.contains_key(&over) {
                    continue;
                }
                let l = &self.recipes[name];
                if l.template
                    .deps
                    .iter()
                    .any(|d| self.recipes.contains_key(&format!("{d}{suffix}")))
                {
                    let mut node = l.clone();
                    node.cell = cell.clone();
                    self.recipes.insert(over, node);
                }
            }
        }
        Ok(())
    }

    /// Mark the cells `[matrix] exclude` leaves out for this architecture, and every node over
    /// one, unavailable (a build of one is refused, naming the reason).
    fn exclude_cells(&mut self) {
        let mut excluded: Vec<(String, String)> = Vec::new();
        for (node, l) in &self.recipes {
            let (base, cell) = Cell::of(node);
            let Some(b) = self.recipes.get(base) else { continue };
            if let Some(e) = b
                .template
                .matrix
                .exclude
                .iter()
                .find(|e| excludes(e, &b.template, &cell, self.arch))
            {
                excluded.push((
                    node.clone(),
                    format!(
                        "{EXCLUDED} ({}: [matrix] exclude): {}",
                        display_rel(
                            &l.path,
                            l.path.parent().and_then(Path::parent).unwrap_or(Path::new("/"))
                        ),
                        e.reason
                    ),
                ));
            }
        }
        // Everything over an excluded cell.
        let mut changed = true;
        while changed {
            changed = false;
            let names: Vec<String> = self.recipes.keys().cloned().collect();
            for n in names {
                if excluded.iter().any(|(e, _)| *e == n) {
                    continue;
                }
                let deps = self.recipes[&n].template.deps.clone();
                if let Some(why) = deps.iter().find_map(|d| {
                    let dn = self.dep_node(&n, d);
                    excluded.iter().find(|(e, _)| *e == dn).map(|(_, w)| w.clone())
                }) {
                    excluded.push((n, why));
                    changed = true;
                }
            }
        }
        for (n, why) in excluded {
            let l = self.recipes.get_mut(&n).unwrap();
            if l.recipe.unavailable.is_none() {
                l.recipe.unavailable = Some(why.clone());
                l.template.unavailable = Some(why);
            }
        }
    }

    /// Fill every node's placeholders from its dependencies (after `--use`), add the newest
    /// tags where they belong, and check what the filling made.
    fn fill(&mut self) -> Result<()> {
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        let names: Vec<String> = self.recipes.keys().cloned().collect();
        for n in &names {
            self.visit(n, &mut Vec::new(), &mut done, &mut order, Path::new("/"))?;
        }
        for name in &order {
            let l = &self.recipes[name];
            let mut r = l.template.clone();
            let at = |what: &str| format!("{}: {what} of {name}", l.path.display());
            let lookup = |dep: &str, field: &str| -> Result<String, String> {
                let dn = self.dep_node(name, dep);
                let d = &self.recipes[&dn].recipe;
                match field {
                    "version" => Ok(d.version.clone()),
                    _ => d
                        .sources
                        .iter()
                        .find_map(|s| s.debian.as_ref().map(|x| x.version.clone()))
                        .ok_or_else(|| {
                            format!(
                                "`{{{dep}.{field}}}`: {dn} has no source from the Debian archive"
                            )
                        }),
                }
            };
            let fill = |v: &str| placeholders::expand(v, lookup);
            r.version =
                fill(&r.version).map_err(|e| anyhow::format_err!("{}: {e}", at("version")))?;
            if r.version.is_empty()
                || r.version.contains(|c: char| c.is_whitespace() || "{}/".contains(c))
            {
                bail!(
                    "{}: version `{}` is not a version (an unknown placeholder?)",
                    at("the version"),
                    r.version
                );
            }
            for v in r.env.values_mut() {
                *v = fill(v).map_err(|e| anyhow::format_err!("{}: {e}", at("[env]")))?;
            }
            let newest = self.is_newest(name)?;
            if let Some(o) = &mut r.oci {
                for t in o.tags.iter_mut() {
                    *t = fill(t).map_err(|e| anyhow::format_err!("{}: {e}", at("[oci] tags")))?;
                }
                if newest {
                    let moving = std::mem::take(&mut o.newest_tags);
                    o.tags.extend(moving);
                } else {
                    o.newest_tags.clear();
                }
                // A flavour's layouts are told apart by their tags: `6.18.15-kvm`, `latest-kvm`.
                if let Some(f) = &l.cell.flavour {
                    for t in o.tags.iter_mut() {
                        *t = format!("{t}-{f}");
                    }
                }
                if let Some(t) = o.tags.iter().find(|t| !recipe::is_oci_tag(t)) {
                    bail!("{}: `{t}` is not an OCI tag", at("[oci] tags"));
                }
                let mut seen = BTreeSet::new();
                if let Some(t) = o.tags.iter().find(|t| !seen.insert(t.as_str())) {
                    bail!("{}: tag `{t}` twice", at("[oci] tags"));
                }
                for v in o.annotations.values_mut() {
                    *v = fill(v)
                        .map_err(|e| anyhow::format_err!("{}: {e}", at("[oci.annotations]")))?;
                }
            }
            self.recipes.get_mut(name).unwrap().recipe = r;
        }
        Ok(())
    }

    /// Whether the node is over the newest version of every recipe with versions beneath it.
    fn is_newest(&self, name: &str) -> Result<bool> {
        for n in self.closure(name)? {
            let l = &self.recipes[&n];
            let (base, _) = Cell::of(&n);
            let Some(b) = self.recipes.get(base) else { continue };
            if b.template.versions.is_empty() {
                continue;
            }
            let newest = b
                .template
                .versions
                .values()
                .map(|v| v.version.as_str())
                .chain([b.template.version.as_str()])
                .max_by(|x, y| placeholders::compare_versions(x, y))
                .unwrap_or_default();
            if l.template.version != newest {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Apply `DEP=NODE` substitutions, checking that NODE exists.
    pub(crate) fn with_aliases(mut self, subs: &[String]) -> Result<Graph> {
        for s in subs {
            let (dep, recipe) = s.split_once('=').with_context(|| {
                format!("--use {s}: expected DEP=NODE, e.g. kernel=kernel@6.18")
            })?;
            let substitute = self.get(recipe).with_context(|| format!("--use {s}"))?.recipe.kind();
            if let Some(prev) = self.aliases.get(dep) {
                bail!("--use {s}: `{dep}` is already substituted by --use {dep}={prev}; give one");
            }
            if let Some(original) = self.recipes.get(dep).map(|l| l.recipe.kind()) {
                if original != substitute {
                    bail!(
                        "--use {s}: `{dep}` makes a {original}, `{recipe}` a {substitute}; substitute a {original}"
                    );
                }
            }
            let used: BTreeSet<&str> = self
                .recipes
                .values()
                .flat_map(|l| l.recipe.deps.iter().map(String::as_str))
                .collect();
            if !used.contains(dep) {
                bail!(
                    "--use {s}: no recipe depends on `{dep}`; dependencies that can be substituted: {}",
                    used.into_iter().collect::<Vec<_>>().join(", ")
                );
            }
            self.aliases.insert(dep.to_string(), recipe.to_string());
        }
        if !subs.is_empty() {
            self.fill()?;
        }
        Ok(self)
    }

    /// The node a target name stands for (`--use` applies to targets too).
    pub(crate) fn resolve<'a>(&'a self, name: &'a str) -> &'a str {
        self.aliases.get(name).map(String::as_str).unwrap_or(name)
    }

    /// The node that dependency `dep` of node `node` is: a `--use` substitution, else the
    /// dependency at the node's version key when it has one (`hd-image@6.18`'s `kernel` is
    /// `kernel@6.18`), else the dependency itself.
    pub(crate) fn dep_node(&self, node: &str, dep: &str) -> String {
        if let Some(a) = self.aliases.get(dep) {
            return a.clone();
        }
        if let Some(cell) = self.recipes.get(node).map(|l| &l.cell) {
            // The dependency at the node's cell, else at as much of it as it has.
            let partial = [
                cell.clone(),
                Cell { version: cell.version.clone(), flavour: None },
                Cell { version: None, flavour: cell.flavour.clone() },
            ];
            for c in partial.iter().filter(|c| !c.is_default()) {
                let at = format!("{dep}{}", c.suffix());
                if self.recipes.contains_key(&at) {
                    return at;
                }
            }
        }
        dep.to_string()
    }

    /// Refuse a list of targets with one that is not a node, before any is built.
    pub(crate) fn require_targets(&self, targets: &[String]) -> Result<()> {
        for t in targets {
            self.get(self.resolve(t))?;
        }
        Ok(())
    }

    /// Refuse a target whose recipe makes no OCI layout (`push`, `multiarch`), before
    /// anything is built.
    pub(crate) fn require_oci(&self, target: &str, command: &str) -> Result<()> {
        let l = self.get(self.resolve(target))?;
        if l.recipe.oci.is_none() {
            let oci: Vec<&str> = self
                .recipes
                .iter()
                .filter(|(n, l)| is_base(n) && l.recipe.oci.is_some())
                .map(|(n, _)| n.as_str())
                .collect();
            let file = l.path.file_name().map(|f| f.to_string_lossy()).unwrap_or_default();
            bail!(
                "{target} makes no OCI layout (recipes/{file} has no [oci]); `{command}` takes one of {}",
                oci.join(", ")
            );
        }
        Ok(())
    }

    pub(crate) fn get(&self, name: &str) -> Result<&Loaded> {
        match self.recipes.get(name) {
            Some(l) => Ok(l),
            None => {
                let known: Vec<&str> =
                    self.recipes.keys().filter(|n| is_base(n)).map(String::as_str).collect();
                if known.is_empty() {
                    bail!("unknown target `{name}`: there are no recipes (no *.toml in the recipe directory)");
                }
                let keys: BTreeSet<&str> = self
                    .recipes
                    .values()
                    .flat_map(|l| l.template.versions.keys().map(String::as_str))
                    .collect();
                let flavours: BTreeSet<&str> = self
                    .recipes
                    .values()
                    .flat_map(|l| l.template.flavours.keys().map(String::as_str))
                    .collect();
                let (base, cell) = Cell::of(name);
                let list = |s: &BTreeSet<&str>| s.iter().copied().collect::<Vec<_>>().join(", ");
                if self.recipes.contains_key(base) && !cell.is_default() {
                    if let Some(k) = cell.version.as_deref().filter(|k| !keys.contains(k)) {
                        bail!(
                            "unknown target `{name}`: no recipe has a version {k}{}",
                            if keys.is_empty() {
                                String::new()
                            } else {
                                format!(" (NAME@KEY: KEY one of {})", list(&keys))
                            }
                        );
                    }
                    if let Some(f) = cell.flavour.as_deref().filter(|f| !flavours.contains(f)) {
                        bail!(
                            "unknown target `{name}`: no recipe has a flavour {f}{}",
                            if flavours.is_empty() {
                                String::new()
                            } else {
                                format!(" (NAME+FLAVOUR: FLAVOUR one of {})", list(&flavours))
                            }
                        );
                    }
                    let suffix = cell.suffix();
                    let at: Vec<&str> = self
                        .recipes
                        .keys()
                        .filter(|n| n.ends_with(&suffix) && Cell::of(n).1 == cell)
                        .map(String::as_str)
                        .collect();
                    let what = match (&cell.version, &cell.flavour) {
                        (Some(k), None) => format!("version {k}"),
                        (None, Some(f)) => format!("flavour {f}"),
                        (Some(k), Some(f)) => format!("version {k} in flavour {f}"),
                        (None, None) => unreachable!(),
                    };
                    bail!(
                        "unknown target `{name}`: {base} has no {what} and depends on nothing that has{}",
                        if at.is_empty() {
                            String::new()
                        } else {
                            format!(" (the nodes at {}: {})", suffix, at.join(", "))
                        }
                    );
                }
                let mut more = String::new();
                if !keys.is_empty() {
                    more.push_str(&format!(
                        "; NAME@KEY builds NAME over another version, KEY one of {}",
                        list(&keys)
                    ));
                }
                if !flavours.is_empty() {
                    more.push_str(&format!(
                        "; NAME+FLAVOUR in a flavour, FLAVOUR one of {}",
                        list(&flavours)
                    ));
                }
                bail!("unknown target `{name}`: known recipes are {}{more}", known.join(", "))
            }
        }
    }

    fn check_deps(&self, base: &Path) -> Result<()> {
        for l in self.recipes.values() {
            for (n, d) in l.recipe.deps.iter().enumerate() {
                if !self.recipes.contains_key(d) {
                    use recipe::position::{index, key};
                    let (line, col) = recipe::position::of(&l.text, &[key("deps"), index(n)]);
                    bail!("{}:{line}:{col}: unknown dependency `{d}`: no recipes/{d}.toml (add it or remove it from `deps`)", display_rel(&l.path, base));
                }
            }
        }
        // Cycle detection over the whole graph, so a cycle is reported even if unreachable.
        let mut done = BTreeSet::new();
        for name in self.recipes.keys() {
            let mut stack = Vec::new();
            self.visit(name, &mut stack, &mut done, &mut Vec::new(), base)?;
        }
        Ok(())
    }

    fn visit(
        &self,
        name: &str,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        order: &mut Vec<String>,
        base: &Path,
    ) -> Result<()> {
        if done.contains(name) {
            return Ok(());
        }
        if let Some(pos) = stack.iter().position(|s| s == name) {
            let mut cycle: Vec<&str> = stack[pos..].iter().map(String::as_str).collect();
            cycle.push(name);
            let l = &self.recipes[name];
            // Named from the recipes directory's parent (`recipes/a.toml`) unless the caller
            // gave a base.
            let base = match (base == Path::new("/"), l.path.parent().and_then(Path::parent)) {
                (true, Some(parent)) => parent,
                _ => base,
            };
            let substituted = if self.aliases.is_empty() {
                String::new()
            } else {
                let uses: Vec<String> =
                    self.aliases.iter().map(|(k, v)| format!("--use {k}={v}")).collect();
                format!("; or drop {}", uses.join(", "))
            };
            bail!(
                "{}: dependency cycle: {} (remove one of these `deps`{substituted})",
                display_rel(&l.path, base),
                cycle.join(" -> ")
            );
        }
        let l = self.get(name)?;
        stack.push(name.to_string());
        for d in &l.template.deps {
            self.visit(&self.dep_node(name, d), stack, done, order, base)?;
        }
        stack.pop();
        done.insert(name.to_string());
        order.push(name.to_string());
        Ok(())
    }

    /// The target and everything it depends on, dependencies first.
    pub(crate) fn closure(&self, target: &str) -> Result<Vec<String>> {
        let target = self.resolve(target);
        self.get(target)?;
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        self.visit(target, &mut Vec::new(), &mut done, &mut order, Path::new("/"))?;
        Ok(order)
    }
}

/// How an excluded cell's `unavailable` reason starts.
pub(crate) const EXCLUDED: &str = "excluded from the matrix";

/// Whether a node name is a recipe's own (`kernel`), not a cell of it (`kernel@6.18+kvm`).
pub(crate) fn is_base(node: &str) -> bool {
    !node.contains(['@', '+'])
}

/// Whether exclusion `e` of recipe `r` leaves out `cell` on `arch`.
fn excludes(e: &Exclusion, r: &Recipe, cell: &Cell, arch: crate::model::arch::Arch) -> bool {
    let version_ok = match &e.version {
        None => true,
        Some(v) => match &cell.version {
            None => v == &r.version,
            Some(k) => v == k || r.versions.get(k).is_some_and(|o| &o.version == v),
        },
    };
    let flavour_ok = match &e.flavour {
        None => true,
        Some(f) => cell.flavour.as_deref().unwrap_or(recipe::DEFAULT_FLAVOUR) == f,
    };
    let arch_ok = e.arch.as_deref().is_none_or(|a| a == arch.name());
    version_ok && flavour_ok && arch_ok
}

/// What defines a node besides its sources, files and dependencies: the recipe file's text,
/// without its `[versions]` table when it has one (so listing another version leaves every
/// existing node's input hash alone) and without its `license` (what the SBOM says of the
/// output, not what makes it: Nix's `meta`) and its `[arch]` tables (so that teaching a
/// recipe another architecture leaves its x86_64 nodes alone), followed by the version the
/// node is at and, for another architecture than x86_64, its name and the `[arch.NAME]`
/// table merged for it.
fn identity(r: &Recipe, text: &str, at: Option<(&String, &String)>, arch: Arch) -> Result<String> {
    if r.versions.is_empty()
        && r.flavours.is_empty()
        && r.matrix.exclude.is_empty()
        && r.license.is_none()
        && r.arch.is_empty()
        && arch.is_default()
    {
        return Ok(text.to_string());
    }
    let mut doc: toml_edit::DocumentMut = text.parse()?;
    doc.remove("versions");
    doc.remove("flavours");
    doc.remove("matrix");
    doc.remove("license");
    doc.remove("arch");
    let mut out = doc.to_string();
    if let Some((key, version)) = at {
        out.push_str(&format!("\n# reprovm: at [versions.{key}] version {version}\n"));
    }
    // The table merged for this architecture is part of the node (x86_64's too, if a recipe
    // has one); another architecture is named even without one.
    if !arch.is_default() || r.arch.contains_key(arch.name()) {
        out.push_str(&format!("\n# reprovm: for {arch}\n"));
        if let Some(over) = r.arch.get(arch.name()) {
            // Its flavours are the flavour nodes' (see `add_versions`), not every node's.
            let mut over = over.clone();
            over.remove("flavours");
            let mut t = toml::Table::new();
            t.insert(arch.name().to_string(), toml::Value::Table(over));
            out.push_str(&toml::to_string(&t)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
