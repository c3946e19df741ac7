//! Two reprovm processes in one out/ (fast tier, tiny recipes over host programs): builds hold
//! the store lock shared and each entry they write by its own lock, so two commands build
//! unrelated nodes at once, and a node both need is built by one while the other waits and
//! then takes it from the store.

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
