//! The recipe graph: every recipe in `recipes/`, dependency resolution and topological order.

use crate::model::recipe::{self, Loaded};
use anyhow::{bail, Context, Result};
use reprovm_fs::util::display_rel;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[derive(Debug)]
pub struct Graph {
    pub recipes: BTreeMap<String, Loaded>,
    /// Dependency substitutions (`--use kernel=kernel-lts`): every dependency named by the key
    /// is built from the recipe named by the value, and still appears under the key's name.
    pub aliases: BTreeMap<String, String>,
}

impl Graph {
    /// Load and validate every `*.toml` directly in `dir`.
    pub fn load(dir: &Path) -> Result<Graph> {
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
            let recipe = recipe::parse(&path, &text, &display)?;
            recipes.insert(recipe.name.clone(), Loaded { recipe, path, text });
        }
        let graph = Graph { recipes, aliases: BTreeMap::new() };
        graph.check_deps(base)?;
        Ok(graph)
    }

    /// Apply `DEP=RECIPE` substitutions, checking that RECIPE exists.
    pub fn with_aliases(mut self, subs: &[String]) -> Result<Graph> {
        for s in subs {
            let (dep, recipe) = s.split_once('=').with_context(|| {
                format!("--use {s}: expected DEP=RECIPE, e.g. kernel=kernel-krata")
            })?;
            self.get(recipe).with_context(|| format!("--use {s}"))?;
            let used: std::collections::BTreeSet<&str> = self
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
        Ok(self)
    }

    /// The recipe a dependency name stands for.
    pub fn resolve<'a>(&'a self, dep: &'a str) -> &'a str {
        self.aliases.get(dep).map(String::as_str).unwrap_or(dep)
    }

    pub fn get(&self, name: &str) -> Result<&Loaded> {
        match self.recipes.get(name) {
            Some(l) => Ok(l),
            None => {
                let known: Vec<&str> = self.recipes.keys().map(String::as_str).collect();
                bail!("unknown target `{name}`: known recipes are {}", known.join(", "))
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
            bail!(
                "{}: dependency cycle: {} (remove one of these `deps`)",
                display_rel(&l.path, base),
                cycle.join(" -> ")
            );
        }
        stack.push(name.to_string());
        for d in &self.recipes[name].recipe.deps {
            self.visit(self.resolve(d), stack, done, order, base)?;
        }
        stack.pop();
        done.insert(name.to_string());
        order.push(name.to_string());
        Ok(())
    }

    /// The target and everything it depends on, dependencies first.
    pub fn closure(&self, target: &str) -> Result<Vec<String>> {
        let target = self.resolve(target);
        self.get(target)?;
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        self.visit(target, &mut Vec::new(), &mut done, &mut order, Path::new("/"))?;
        Ok(order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, deps: &[&str]) {
        let deps: Vec<String> = deps.iter().map(|d| format!("\"{d}\"")).collect();
        let text = format!(
            "name = \"{name}\"\nversion = \"1\"\ndeps = [{}]\n[build]\nscript = \"true\"\n",
            deps.join(", ")
        );
        std::fs::write(dir.join(format!("{name}.toml")), text).unwrap();
    }

    #[test]
    fn use_of_an_unknown_dependency_name_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        for (n, deps) in [("a", "[]"), ("b", "[\"a\"]"), ("a2", "[]")] {
            std::fs::write(
                t.path().join(format!("{n}.toml")),
                format!(
                    "name = \"{n}\"\nversion = \"1\"\ndeps = {deps}\n[build]\nscript = \"true\"\n"
                ),
            )
            .unwrap();
        }
        let g = || Graph::load(t.path()).unwrap();
        assert_eq!(g().with_aliases(&["a=a2".into()]).unwrap().resolve("a"), "a2");
        let e = g().with_aliases(&["typo=a2".into()]).unwrap_err().to_string();
        assert!(e.contains("no recipe depends on `typo`") && e.contains("substituted: a"), "{e}");
        let e = format!("{:#}", g().with_aliases(&["a=nope".into()]).unwrap_err());
        assert!(e.contains("unknown target `nope`"), "{e}");
    }

    #[test]
    fn closure_is_topological() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("recipes");
        std::fs::create_dir(&d).unwrap();
        write(&d, "a", &["b", "c"]);
        write(&d, "b", &["c"]);
        write(&d, "c", &[]);
        let g = Graph::load(&d).unwrap();
        assert_eq!(g.closure("a").unwrap(), vec!["c", "b", "a"]);
    }

    #[test]
    fn cycle_and_unknown_dependency_name_the_file() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("recipes");
        std::fs::create_dir(&d).unwrap();
        write(&d, "a", &["b"]);
        write(&d, "b", &["a"]);
        let e = format!("{:#}", Graph::load(&d).unwrap_err());
        assert!(e.starts_with("recipes/a.toml: dependency cycle: a -> b -> a"), "{e}");
        assert!(!e.contains('\n'));
        write(&d, "b", &["zzz"]);
        let e = format!("{:#}", Graph::load(&d).unwrap_err());
        assert!(e.starts_with("recipes/b.toml:3:"), "{e}");
        assert!(e.contains("unknown dependency `zzz`"), "{e}");
    }
}
