//! Work done on several threads and used in its own order: `map_in_order`.

use anyhow::Result;
use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};

struct State<R> {
    /// The next item a worker takes.
    next: usize,
    /// Items before this one are out of `ready` (used, or being used).
    taken: usize,
    ready: BTreeMap<usize, Result<R>>,
    stop: bool,
}

/// `work` each item on up to `workers` threads, at most `ahead` items beyond the one being
/// used, and `use_item` each result on the calling thread in the items' order: what
/// `use_item` does cannot depend on how many threads worked. The first error (of `work`, in
/// the items' order, or of `use_item`) stops the workers taking more and is returned; a
/// panic in `work` is that item's error. With `workers` 0, no thread: each item worked and
/// used on the calling thread, one after another.
pub fn map_in_order<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    ahead: usize,
    work: impl Fn(&T) -> Result<R> + Sync,
    mut use_item: impl FnMut(&T, R) -> Result<()>,
) -> Result<()> {
    if workers == 0 {
        for item in items {
            use_item(item, work(item)?)?;
        }
        return Ok(());
    }
    let ahead = ahead.max(1);
    let state = Mutex::new(State { next: 0, taken: 0, ready: BTreeMap::new(), stop: false });
    let wake = Condvar::new();
    let lock = || state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let worker = || loop {
        let i = {
            let mut st = lock();
            while !st.stop && st.next < items.len() && st.next >= st.taken + ahead {
                st = wake.wait(st).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if st.stop || st.next >= items.len() {
                return;
            }
            st.next += 1;
            st.next - 1
        };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&items[i])))
            .unwrap_or_else(|_| Err(anyhow::anyhow!("item {i}: the worker panicked (a bug)")));
        lock().ready.insert(i, r);
        wake.notify_all();
    };
    std::thread::scope(|s| {
        for n in 0..workers.clamp(1, items.len().max(1)) {
            if let Err(e) = std::thread::Builder::new().spawn_scoped(s, worker) {
                // Without its threads the work cannot go on; the ones started stop.
                lock().stop = true;
                wake.notify_all();
                return Err(anyhow::Error::new(e).context(format!("starting worker thread {n}")));
            }
        }
        // A panic of `use_item` stops the workers too, or the scope would wait for them.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for (i, item) in items.iter().enumerate() {
                let r = {
                    let mut st = lock();
                    loop {
                        if let Some(r) = st.ready.remove(&i) {
                            st.taken = i + 1;
                            break r;
                        }
                        st = wake.wait(st).unwrap_or_else(std::sync::PoisonError::into_inner);
                    }
                };
                wake.notify_all();
                use_item(item, r?)?;
            }
            Ok(())
        }));
        if !matches!(outcome, Ok(Ok(()))) {
            lock().stop = true;
            wake.notify_all();
        }
        outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn results_are_used_in_order_whatever_finishes_first() {
        let items: Vec<u64> = (0..40).collect();
        let mut seen = Vec::new();
        // Early items take longest, so later ones finish first.
        map_in_order(
            &items,
            4,
            8,
            |&n| {
                std::thread::sleep(std::time::Duration::from_millis(40 - n));
                Ok(n * 2)
            },
            |&n, r| {
                assert_eq!(r, n * 2);
                seen.push(n);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, items);
        let mut seen = Vec::new();
        map_in_order(
            &items,
            0,
            8,
            |&n| Ok(n),
            |&n, r| {
                assert_eq!(n, r);
                seen.push(n);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, items);
    }

    #[test]
    fn no_worker_runs_more_than_ahead_items_beyond_the_one_used() {
        let items: Vec<usize> = (0..30).collect();
        let started = AtomicUsize::new(0);
        let mut used = 0;
        map_in_order(
            &items,
            3,
            4,
            |_| {
                started.fetch_add(1, Ordering::SeqCst);
                Ok(())
            },
            |&i, ()| {
                // Item i is being used: at most the 4 after it have been started as well.
                assert!(started.load(Ordering::SeqCst) <= i + 1 + 4, "item {i}");
                used += 1;
                std::thread::sleep(std::time::Duration::from_millis(2));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(used, 30);
    }

    #[test]
    fn a_panic_while_using_an_item_stops_the_workers_and_goes_on() {
        let items: Vec<usize> = (0..100).collect();
        let caught = std::panic::catch_unwind(|| {
            map_in_order(
                &items,
                2,
                2,
                |&i| Ok(i),
                |&i, _| {
                    assert!(i != 5, "item 5");
                    Ok(())
                },
            )
        });
        assert!(caught.is_err());
    }

    #[test]
    fn the_first_error_in_order_is_returned_and_stops_the_rest() {
        let items: Vec<usize> = (0..1000).collect();
        let worked = AtomicUsize::new(0);
        let err = map_in_order(
            &items,
            2,
            4,
            |&i| {
                worked.fetch_add(1, Ordering::SeqCst);
                match i {
                    7 => Err(anyhow::anyhow!("item 7 is bad")),
                    9 => panic!("item 9"),
                    _ => Ok(i),
                }
            },
            |_, _| Ok(()),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "item 7 is bad");
        assert!(worked.load(Ordering::SeqCst) < 20);
        let err = map_in_order(
            &items,
            2,
            4,
            |&i| Ok(i),
            |&i, _| {
                anyhow::ensure!(i != 3, "using item 3 failed");
                Ok(())
            },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "using item 3 failed");
    }
}
