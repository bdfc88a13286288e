//! Gives the C allocator's free memory back to the system at a steady pace, for the whole
//! process (one [`run`] per process: the process entry point starts it, whatever services it
//! serves).
//!
//! Events are decoded on the runtime's worker threads, handled on blocking threads and freed
//! wherever their last reference goes; glibc keeps one heap arena per such thread (up to eight
//! per core) and each arena keeps the free space of its own peak, in the middle of the heap
//! where its automatic trimming never reaches. At a steady 10,000 real detector events/s that
//! free space was a fifth of siem-export's resident memory and grew with every burst; in
//! attribution, on Windows records, it was a third of the heap. [`trim`] returns whole free
//! pages of every arena (`malloc_trim`); [`run`] calls it once per [`INTERVAL`], which costs a
//! walk of the free lists and a page fault per returned page that is used again: nothing next
//! to decoding the events that dirtied them.
//!
//! [`tune`] turns off glibc's fastbins for the process. An event is decoded into many small
//! allocations and freed later, often on another thread, so the fastbins fill; every request
//! above the small-bin range (an `EnrichedEvent` is about 1.2 KB, a batch's buffers far more)
//! then first merges all of them back into the heap (`malloc_consolidate`), which was 5–8 % of
//! siem-export's CPU. Without fastbins a small free is merged at once and the large request
//! finds nothing to consolidate.
//!
//! This module holds the crate's only unsafe code.
#![allow(unsafe_code)]

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Time between trims.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Returns the allocator's free pages to the system (blocking: call it off the async runtime).
/// Returns whether any memory was released; a no-op where the allocator is not glibc's.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `malloc_trim` only releases free memory, under each arena's own lock; it
        // takes no pointer and is safe to call from any thread at any time.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Sets the allocator up for the services' allocation pattern (see the module documentation).
/// Call it first thing in the process, so that every allocation follows it. A no-op where the
/// allocator is not glibc's.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` takes no pointer and changes the setting under the allocator's
        // lock, after merging the fastbins' chunks; it is safe from any thread at any time.
        // Calling it first only makes every later allocation follow the setting.
        unsafe {
            libc::mallopt(libc::M_MXFAST, 0);
        }
    }
}

/// Trims every [`INTERVAL`] until `stop` is cancelled.
pub async fn run(stop: CancellationToken) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if tokio::task::spawn_blocking(trim).await.is_err() {
                    return;
                }
            }
            () = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Held by the tests that read or trim the allocator's free lists, which are the whole
    /// process's: `cargo test` runs them on threads of one process.
    static ALLOCATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Bytes in glibc's fastbins, over every arena.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn in_fastbins() -> usize {
        // SAFETY: `mallinfo2` takes no pointer and only reads the arenas' counters under their
        // locks.
        unsafe { libc::mallinfo2().fsmblks }
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn after_tuning_small_frees_leave_nothing_in_the_fastbins() {
        let _lock = ALLOCATOR.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // More small blocks of one size than the per-thread cache holds: the rest go to the
        // fastbins when they exist.
        let free_many = || drop((0..200u8).map(|i| Box::new([i; 24])).collect::<Vec<_>>());
        free_many();
        let before = in_fastbins();
        tune();
        // `tune` merges the fastbins of the arena it runs in; other threads' arenas (other tests
        // here) keep theirs until a trim merges every arena's.
        trim();
        free_many();
        assert!(before > 0, "the default allocator keeps small frees in fastbins");
        assert_eq!(in_fastbins(), 0, "tuning merged the fastbins and keeps them empty");
    }

    #[test]
    fn trimming_leaves_live_memory_alone() {
        let _lock = ALLOCATOR.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let live: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i; 64 << 10]).collect();
        drop((0..64).map(|_| vec![0u8; 64 << 10]).collect::<Vec<_>>());
        trim();
        assert!(
            live.iter()
                .enumerate()
                .all(|(i, v)| v.iter().all(|b| usize::from(*b) == i))
        );
    }
}
