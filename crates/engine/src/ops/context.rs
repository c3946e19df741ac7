//! What an operation needs, in one value (as cargo's `GlobalContext`): the project, the
//! fetcher (the download cache, `--mirror` directories, and the binary caches as source
//! mirrors), and the binary caches to substitute from with the keys that make their entries
//! trusted. The command line makes one from its global options; operations take `&RunContext`.

use crate::mechanisms::fetch::Fetcher;
use crate::model::graph::Graph;
use crate::model::project::Project;
use crate::steps::substitution::Substituters;
use anyhow::Result;
use std::path::PathBuf;

/// The binary caches of a run.
#[derive(Debug, Clone, Default)]
pub struct SubstitutionSettings {
    /// `--substituter REPO`: registries asked for every node before it is built.
    pub repositories: Vec<String>,
    /// `--trusted-cache-key FILE`: public keys whose signatures make entries trusted.
    pub trusted_keys: Vec<PathBuf>,
    /// `--substitute-only`: building a node no substituter has is an error.
    pub only: bool,
}

pub struct RunContext {
    pub project: Project,
    pub fetcher: Fetcher,
    pub substitution: SubstitutionSettings,
    substituters: Option<Substituters>,
}

impl RunContext {
    /// Connect the substituters (their keys loaded) and hand their source mirrors to the
    /// fetcher.
    pub fn new(
        project: Project,
        mirrors: Vec<PathBuf>,
        offline: bool,
        substitution: SubstitutionSettings,
    ) -> Result<RunContext> {
        let mut fetcher = Fetcher::new(&project.downloads, mirrors, offline);
        let substituters = if substitution.repositories.is_empty() {
            anyhow::ensure!(!substitution.only, "--substitute-only needs a --substituter");
            None
        } else {
            let s = Substituters::new(
                &substitution.repositories,
                &substitution.trusted_keys,
                substitution.only,
            )?;
            for mirror in s.source_mirrors() {
                fetcher.add_blob_source(mirror);
            }
            Some(s)
        };
        Ok(RunContext { project, fetcher, substitution, substituters })
    }

    /// A context over `project` with the download cache only: no mirror, no substituter.
    pub(crate) fn plain(project: Project) -> RunContext {
        let fetcher = Fetcher::new(&project.downloads, Vec::new(), false);
        RunContext {
            project,
            fetcher,
            substitution: SubstitutionSettings::default(),
            substituters: None,
        }
    }

    /// The connected substituters, if the run has any.
    pub(crate) fn substituters(&self) -> Option<&Substituters> {
        self.substituters.as_ref()
    }

    /// The recipe graph with this run's `--use` substitutions applied.
    pub(crate) fn graph(&self) -> Result<Graph> {
        self.project.graph()
    }
}
