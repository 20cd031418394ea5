//! How the process's allocator (mimalloc, set as the global allocator in `main.rs`)
//! gives memory back to the system: freed ranges wait a short delay, so steady load
//! reuses them instead of faulting them in again, and a timer collects so that memory
//! freed after a burst goes back even while the proxy is quiet.

/// mimalloc 3's `mi_option_purge_delay` (its place in `mi_option_e`; the Rust bindings
/// name no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long a freed range of memory stays with the allocator before it goes back to the
/// system. With no delay, every page that fell empty under steady load was given back and
/// faulted in again a moment later: 0.7 page faults and 0.04 madvise calls per S1 request,
/// about 5 µs of kernel time (docs/performance.md, "S1 overhead"). A range reused within
/// the delay is never given back.
const PURGE_DELAY_MS: std::ffi::c_long = 500;

/// How often [`purge_freed_memory`] wakes: a freed range goes back to the system between
/// `PURGE_DELAY_MS` and the sum of both after it fell free.
const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Sets the allocator's purge delay. mimalloc purges expired ranges only when some thread
/// next allocates a page or collects: [`purge_freed_memory`] does that on a timer, so
/// memory freed after a burst goes back within about a second even when the proxy is
/// quiet (after 500 stalled downloads left, a quiet proxy kept 160 MB resident for good
/// without it; see docs/performance.md, "Memory budget" (S8)). Call it first thing in
/// `main`, before any other thread exists.
pub fn set_purge_delay() {
    // SAFETY: sets one integer option of the allocator; no pointers are passed, and it
    // runs before any other thread of ours exists.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
}

/// Gives ranges freed more than `PURGE_DELAY_MS` ago back to the system, once every
/// [`PURGE_EVERY`]. The allocator's arenas are shared by all threads, so collecting on
/// whichever worker runs this task purges them all.
pub async fn purge_freed_memory() {
    let mut ticker = tokio::time::interval(PURGE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // SAFETY: a plain call into the allocator with no arguments but a flag; it
        // touches only the calling thread's heap and the shared arenas.
        unsafe { libmimalloc_sys::mi_collect(false) };
    }
}
