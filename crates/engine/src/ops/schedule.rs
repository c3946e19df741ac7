//! The build's scheduler: the nodes of a closure realised (`build::realise`: found, substituted
//! or built) as soon as their dependencies are, up to `--max-nodes` at once, each on a thread
//! of its own. The first node to fail stops the others: no node starts after it, each running
//! sandbox is killed, and a node between sandbox phases stops at its next step (a download or
//! a toolchain being made finishes first); their temp entries and work trees are removed as
//! for any failed build, and what was committed before stays, complete. The error is that
//! node's. A panic in a node is its failure.
//!
//! Of the nodes ready at once, the one with the longest path of work still after it starts
//! first (`critical_path`): the kernel before busybox, so that the long compile is not left
//! to run alone at the end while the small nodes finish beside each other at the start.
//!
//! Outputs do not depend on the schedule: each node sees only its own inputs, and its `JOBS`
//! stays out of its bytes.

use anyhow::Result;
use reprovm_fs::progress;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// What the threads share.
struct State<T> {
    done: BTreeMap<String, T>,
    /// Started (running or done), with when.
    started: BTreeMap<String, Instant>,
    running: BTreeSet<String>,
    failed: Option<anyhow::Error>,
}

/// How to schedule: at most `max_nodes` at once; `stop` is set at the first failure (the
/// running nodes watch it); `quiet` says nothing of what runs beside what; of the nodes
/// ready, the highest `priority` starts first (a node not in it counts 0; ties go to the
/// closure's order).
pub(crate) struct Slots<'a> {
    pub max_nodes: usize,
    pub stop: &'a AtomicBool,
    pub quiet: bool,
    pub priority: BTreeMap<String, u64>,
}

/// Each node's priority: its own `weight` plus the largest priority among the nodes that
/// depend on it, i.e. the heaviest chain of work from it to the end of the closure (`nodes`
/// dependencies first, `deps` by node name).
pub(crate) fn critical_path(
    nodes: &[(String, String)],
    deps: &BTreeMap<String, Vec<String>>,
    weight: impl Fn(&str) -> u64,
) -> BTreeMap<String, u64> {
    let mut after: BTreeMap<&str, u64> = BTreeMap::new();
    let mut priority = BTreeMap::new();
    // Dependents come later in the closure: walked backwards, each is final when reached.
    for (name, _) in nodes.iter().rev() {
        let p = weight(name).saturating_add(after.get(name.as_str()).copied().unwrap_or(0));
        for d in deps.get(name).into_iter().flatten() {
            let e = after.entry(d.as_str()).or_insert(0);
            *e = (*e).max(p);
        }
        priority.insert(name.clone(), p);
    }
    priority
}

/// What realises one node: its name, its input hash, and what its dependencies gave.
pub(crate) type Realise<'a, T> = dyn Fn(&str, &str, &BTreeMap<String, T>) -> Result<T> + Sync + 'a;

/// Realise `nodes` (name and input hash, dependencies first; `deps` gives each node's
/// dependencies by node name) with `realise(name, input hash, what its dependencies gave)`.
/// Every node is realised, or the first failure is returned.
pub(crate) fn schedule<T: Send + Clone>(
    slots: &Slots,
    nodes: &[(String, String)],
    deps: &BTreeMap<String, Vec<String>>,
    realise: &Realise<'_, T>,
) -> Result<BTreeMap<String, T>> {
    let no_deps = Vec::new();
    let deps_of = |name: &str| deps.get(name).unwrap_or(&no_deps);
    let given = |done: &BTreeMap<String, T>, name: &str| -> BTreeMap<String, T> {
        deps_of(name).iter().filter_map(|d| done.get(d).map(|x| (d.clone(), x.clone()))).collect()
    };
    if slots.max_nodes == 1 || nodes.len() == 1 {
        let mut done = BTreeMap::new();
        for (name, ih) in nodes {
            let d = realise(name, ih, &given(&done, name))?;
            done.insert(name.clone(), d);
        }
        return Ok(done);
    }
    let state = Mutex::new(State {
        done: BTreeMap::new(),
        started: BTreeMap::new(),
        running: BTreeSet::new(),
        failed: None,
    });
    let wake = Condvar::new();
    let worker = || loop {
        // Take the first node (in the closure's order) whose dependencies are done.
        let (name, ih, entries) = {
            // A thread that panicked holding the lock left the state as it was: go on with it.
            let mut st = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            loop {
                if st.failed.is_some() || st.done.len() == nodes.len() {
                    return;
                }
                let ready = nodes
                    .iter()
                    .enumerate()
                    .filter(|(_, (n, _))| {
                        !st.started.contains_key(n)
                            && deps_of(n).iter().all(|d| st.done.contains_key(d))
                    })
                    .max_by_key(|(i, (n, _))| {
                        (slots.priority.get(n).copied().unwrap_or(0), std::cmp::Reverse(*i))
                    })
                    .map(|(_, node)| node);
                if let Some((n, ih)) = ready {
                    if !st.running.is_empty() && !slots.quiet {
                        let beside: Vec<String> = st
                            .running
                            .iter()
                            .map(|r| format!("{r} ({} s)", st.started[r].elapsed().as_secs()))
                            .collect();
                        progress::say(&format!("starting {n} beside {}", beside.join(", ")));
                    }
                    st.started.insert(n.clone(), Instant::now());
                    st.running.insert(n.clone());
                    break (n.clone(), ih.clone(), given(&st.done, n));
                }
                if st.running.is_empty() {
                    // Nothing runs and nothing is ready: a dependency outside the closure.
                    st.failed = Some(anyhow::anyhow!("the closure's order left nodes unreachable"));
                    wake.notify_all();
                    return;
                }
                st = wake.wait(st).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        };
        // A panic is this node's failure, not a thread that never reports.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            realise(&name, &ih, &entries)
        }))
        .unwrap_or_else(|_| Err(anyhow::anyhow!("{name}: the build panicked (a bug: report it)")));
        let mut st = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        st.running.remove(&name);
        match outcome {
            Ok(d) => {
                st.done.insert(name, d);
            }
            // Stopped because another failed: not the error to report.
            Err(e) if is_stopped(&e) => {}
            Err(e) => {
                if st.failed.is_none() {
                    slots.stop.store(true, Ordering::SeqCst);
                    if !st.running.is_empty() {
                        progress::say(&format!(
                            "{name} failed: stopping {}",
                            st.running.iter().cloned().collect::<Vec<_>>().join(", ")
                        ));
                    }
                    st.failed = Some(e);
                }
            }
        }
        wake.notify_all();
    };
    std::thread::scope(|s| {
        for _ in 0..slots.max_nodes.min(nodes.len()) {
            s.spawn(worker);
        }
    });
    let st = state.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    match st.failed {
        Some(e) => Err(e),
        None => Ok(st.done),
    }
}

/// Whether `e` is a node stopped because another failed.
pub(crate) fn is_stopped(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<reprovm_sandbox::Stopped>().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Nodes = Vec<(String, String)>;
    type Deps = BTreeMap<String, Vec<String>>;

    fn graph(edges: &[(&str, &[&str])]) -> (Nodes, Deps) {
        let nodes = edges.iter().map(|(n, _)| (n.to_string(), format!("{n}-hash"))).collect();
        let deps = edges
            .iter()
            .map(|(n, d)| (n.to_string(), d.iter().map(|x| x.to_string()).collect()))
            .collect();
        (nodes, deps)
    }

    #[test]
    fn the_heaviest_chain_ranks_first() {
        // hd-image's shape: the kernel beside busybox -> rootfs, both under the image.
        let (nodes, deps) = graph(&[
            ("busybox", &[]),
            ("rootfs", &["busybox"]),
            ("kernel", &[]),
            ("image", &["kernel", "rootfs"]),
        ]);
        let weight = |n: &str| match n {
            "kernel" => 100,
            "busybox" => 3,
            "rootfs" => 5,
            _ => 1,
        };
        let p = critical_path(&nodes, &deps, weight);
        assert_eq!(p["image"], 1);
        assert_eq!(p["rootfs"], 6);
        assert_eq!(p["busybox"], 9);
        assert_eq!(p["kernel"], 101);
    }

    #[test]
    fn ready_nodes_start_by_priority_then_closure_order() {
        let (nodes, deps) = graph(&[
            ("a", &[]),
            ("b", &[]),
            ("c", &[]),
            ("d", &[]),
            ("top", &["a", "b", "c", "d"]),
        ]);
        let stop = AtomicBool::new(false);
        let priority: BTreeMap<String, u64> =
            [("c".to_string(), 9), ("b".to_string(), 5), ("d".to_string(), 5)].into();
        let slots = Slots { max_nodes: 2, stop: &stop, quiet: true, priority };
        let started = Mutex::new(Vec::new());
        // The first two nodes chosen wait for each other before either ends, so both were
        // chosen before anything was done, and both are recorded before anything after them.
        // A scheduler that ran one node at a time fails here after 30 s rather than hanging.
        let (calls, arrived) = (Mutex::new(0usize), Condvar::new());
        let done = schedule(&slots, &nodes, &deps, &|name, _, _| {
            started.lock().unwrap().push(name.to_string());
            let mut n = calls.lock().unwrap();
            *n += 1;
            if *n <= 2 {
                arrived.notify_all();
                let wait = std::time::Duration::from_secs(30);
                let (n, waited) = arrived.wait_timeout_while(n, wait, |n| *n < 2).unwrap();
                drop(n);
                anyhow::ensure!(!waited.timed_out(), "the first two nodes did not run at once");
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(done.len(), 5);
        let started = started.into_inner().unwrap();
        // The two threads take c (9) and b (5, before d in the closure) first; which of the two
        // records itself first is the threads' race, what was chosen is not. Then d and a.
        let set = |s: &[String]| s.iter().cloned().collect::<BTreeSet<String>>();
        assert_eq!(set(&started[..2]), set(&["c".into(), "b".into()]), "{started:?}");
        assert_eq!(set(&started[2..4]), set(&["d".into(), "a".into()]), "{started:?}");
        assert_eq!(started[4], "top");
    }
}
