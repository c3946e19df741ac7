//! Builds at once (fast tier, tiny recipes over host programs). Two reprovm processes in one
//! out/: builds hold the store lock shared and each entry they write by its own lock, so two
//! commands build unrelated nodes at once, and a node both need is built by one while the
//! other waits and then takes it from the store. One process with `--max-nodes`: independent
//! nodes are built at once, into the same bytes; the first node to fail stops the others;
//! every make of every node takes its jobs from the build's one jobserver.

use crate::support::{self, Tiny};
use std::io::BufRead;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Instant;

/// One line a process wrote to stderr, when it was read.
struct Event {
    at: Instant,
    process: usize,
    line: String,
}

/// Run `args` in `tiny`'s out/, reading its stderr line by line as it comes.
fn spawn(
    tiny: &Tiny,
    out: &str,
    args: &[&str],
    process: usize,
    send: &mpsc::Sender<Event>,
) -> (std::process::Child, std::thread::JoinHandle<()>) {
    let mut child =
        tiny.command(out, args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let send = send.clone();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap();
            let _ = send.send(Event { at: Instant::now(), process, line });
        }
    });
    (child, reader)
}

/// When the one line starting with `prefix` was read (the test fails unless there is one).
fn at(events: &[Event], prefix: &str) -> Instant {
    let found: Vec<&Event> = events.iter().filter(|e| e.line.starts_with(prefix)).collect();
    let log: Vec<String> = events.iter().map(|e| format!("[{}] {}", e.process, e.line)).collect();
    assert_eq!(found.len(), 1, "`{prefix}` said {} times:\n{}", found.len(), log.join("\n"));
    found[0].at
}

/// The store's entries of `node` (`HASH-NODE-1`) and anything a build left half-written.
fn entries(store: &std::path::Path, node: &str) -> usize {
    std::fs::read_dir(store)
        .unwrap()
        .filter(|e| {
            e.as_ref().unwrap().file_name().to_string_lossy().contains(&format!("-{node}-1"))
        })
        .count()
}

#[test]
fn one_build_makes_independent_nodes_at_once_into_the_same_bytes() {
    let tiny = Tiny::new("concurrency");
    let (send, events) = mpsc::channel::<Event>();
    let (mut child, reader) =
        spawn(&tiny, "out", &["build", "both", "--max-nodes", "2", "--json"], 0, &send);
    drop(send);
    assert!(child.wait().unwrap().success(), "build --max-nodes 2 failed");
    reader.join().unwrap();
    let events: Vec<Event> = events.into_iter().collect();
    let (left, right) = (
        (at(&events, "build left "), at(&events, "built left ")),
        (at(&events, "build right "), at(&events, "built right ")),
    );
    assert!(left.0 < right.1 && right.0 < left.1, "left and right were not built at once");
    assert!(
        events.iter().any(|e| e.line.starts_with("starting ") && e.line.contains(" beside ")),
        "no line says which nodes run beside which"
    );
    // The same bytes as one node at a time with another -j: left's and right's environments
    // among them.
    let hashes = |out: &str, nodes: &str, jobs: &str| {
        let o = tiny
            .command(out, &["build", "both", "--json", "--max-nodes", nodes, "-j", jobs])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", support::stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (v[0]["input_hash"].clone(), v[0]["output_hash"].clone())
    };
    assert_eq!(hashes("out", "2", "2"), hashes("one-at-a-time", "1", "3"));
    support::store_is_clean(&tiny.path("out"));
}

#[test]
fn the_first_node_to_fail_stops_the_others_and_the_next_build_succeeds() {
    let tiny = Tiny::new("concurrency");
    let started = Instant::now();
    let o = tiny.command("out", &["build", "broken", "--max-nodes", "3"]).output().unwrap();
    let err = support::stderr(&o);
    assert!(!o.status.success());
    assert!(started.elapsed().as_secs() < 40, "slowpoke (60 s) was not stopped: {err}");
    let last = err.lines().filter(|l| l.starts_with("error:")).collect::<Vec<_>>();
    assert_eq!(last.len(), 1, "{err}");
    assert!(last[0].contains("build of fails 1 failed"), "the error names another node: {err}");
    assert!(err.contains("stopped slowpoke"), "{err}");
    let store = tiny.path("out/store");
    assert_eq!(entries(&store, "slowpoke"), 0, "a stopped node left an entry");
    assert_eq!(entries(&store, "fails"), 0);
    support::store_is_clean(&tiny.path("out"));
    let work = tiny.path("out/work");
    assert!(
        !work.exists() || std::fs::read_dir(&work).unwrap().next().is_none(),
        "work trees left in {}",
        work.display()
    );
    // Fixed, the same build succeeds.
    for (recipe, from, to) in [
        ("fails.toml", "exit 3", "echo fixed > \"$OUT\"/fails"),
        ("slowpoke.toml", "sleep 60", "sleep 1"),
    ] {
        let p = tiny.recipes.join(recipe);
        let text = std::fs::read_to_string(&p).unwrap().replace(from, to);
        std::fs::write(&p, text).unwrap();
    }
    let o = tiny.command("out", &["build", "broken", "--max-nodes", "3"]).output().unwrap();
    assert!(o.status.success(), "{}", support::stderr(&o));
    support::store_is_clean(&tiny.path("out"));
}

#[test]
fn two_builds_share_one_out_and_build_a_common_node_once() {
    let tiny = Tiny::new("concurrency");
    let (send, events) = mpsc::channel::<Event>();
    let mut children = Vec::new();
    let mut readers = Vec::new();
    for (process, target) in ["left", "right"].into_iter().enumerate() {
        let mut child = tiny
            .command("out", &["build", target])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let send = send.clone();
        readers.push(std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let line = line.unwrap();
                let _ = send.send(Event { at: Instant::now(), process, line });
            }
        }));
        children.push(child);
    }
    drop(send);
    for (i, mut c) in children.into_iter().enumerate() {
        assert!(c.wait().unwrap().success(), "build {i} failed");
    }
    for r in readers {
        r.join().unwrap();
    }
    let events: Vec<Event> = events.into_iter().collect();
    let log: Vec<String> = events.iter().map(|e| format!("[{}] {}", e.process, e.line)).collect();
    let at = |prefix: &str| {
        let found: Vec<&Event> = events.iter().filter(|e| e.line.starts_with(prefix)).collect();
        assert_eq!(found.len(), 1, "`{prefix}` said {} times:\n{}", found.len(), log.join("\n"));
        found[0].at
    };
    // The common node: built by one process, taken from the store by the other.
    let built = at("build shared ");
    let cached = at("cached shared ");
    assert!(built < cached, "the other process took `shared` before it was built");
    // Both targets built at once: each started before the other finished.
    let (left, right) =
        ((at("build left "), at("built left ")), (at("build right "), at("built right ")));
    assert!(
        left.0 < right.1 && right.0 < left.1,
        "the two builds did not overlap:\n{}",
        log.join("\n")
    );
    // One entry each in the store, nothing half-written left.
    let store = tiny.path("out/store");
    for node in ["shared", "left", "right"] {
        let n = std::fs::read_dir(&store)
            .unwrap()
            .filter(|e| {
                e.as_ref().unwrap().file_name().to_string_lossy().contains(&format!("-{node}-1"))
            })
            .count();
        assert_eq!(n, 1, "{node}: {n} entries");
    }
    support::store_is_clean(&tiny.path("out"));
    // Each entry had its lock; gc removes an entry's lock with the entry.
    let locks = || std::fs::read_dir(store.join(".locks")).unwrap().count();
    assert_eq!(locks(), 3, "a lock per entry built");
    let o = tiny.command("out", &["gc", "--keep-last", "0"]).output().unwrap();
    assert!(o.status.success(), "{}", support::stderr(&o));
    assert_eq!(locks(), 0, "gc left the locks of the entries it removed");
}

/// The most jobs (lines `START END` in nanoseconds) that ran at one moment.
fn most_at_once(jobs: &str) -> usize {
    let mut edges: Vec<(u128, i32)> = Vec::new();
    for line in jobs.lines() {
        let (s, e) = line.split_once(' ').unwrap_or_else(|| panic!("a job line: {line:?}"));
        edges.push((s.parse().unwrap(), 1));
        edges.push((e.parse().unwrap(), -1));
    }
    // An end before a start at the same instant: a slot handed on is not two jobs.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

#[test]
fn every_make_of_every_node_takes_its_jobs_from_one_jobserver() {
    let tiny = Tiny::new("concurrency");
    // make-a and make-b each run four one-second jobs with `make -j8`.
    let most = |out: &str, target: &str, args: &[&str]| {
        let o = tiny.command(out, &[&["build", target][..], args].concat()).output().unwrap();
        assert!(o.status.success(), "{}", support::stderr(&o));
        let entry = support::store_out(&tiny.path(out), target);
        let jobs = std::fs::read_to_string(entry.join("out/jobs")).unwrap();
        most_at_once(&jobs)
    };
    // Two nodes at once: -j is the total over both nodes' makes, whatever they ask for.
    assert_eq!(most("out", "make-both", &["--max-nodes", "2", "-j", "2"]), 2);
    assert_eq!(most("three", "make-both", &["--max-nodes", "2", "-j", "3"]), 3);
    // One node at a time: the same jobserver, so still -j.
    assert_eq!(most("alone", "make-both", &["--max-nodes", "1", "-j", "2"]), 2);
    // A make named by its path is not the wrapper: its own -j8 runs the four jobs at once.
    assert_eq!(most("own", "make-own", &["-j", "2"]), 4);
    // A make asked for no parallel jobs runs one at a time, jobserver or not.
    assert_eq!(most("plain", "make-plain", &["-j", "2"]), 1);
    support::store_is_clean(&tiny.path("out"));
}
