//! Giving memory back. A flood of connections (thousands at once) leaves
//! glibc's heaps holding the memory their buffers used; without help it
//! stays with the process for good. Two things bring it back: fewer malloc
//! arenas (each thread otherwise gets its own, up to eight per core, and
//! each keeps its free memory), set before the runtime starts; and a trim
//! of the heaps once most of a flood's connections are gone.

use std::sync::Arc;
use std::time::Duration;

use crate::server::net::drain::Drain;

/// malloc arenas per process (glibc's default is eight per core).
const ARENAS: libc::c_int = 2;

/// How often the connection count is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// A peak of at least this many connections counts as a flood.
const FLOOD: usize = 256;

/// Limits glibc's malloc arenas; call before any thread starts.
pub fn limit_arenas() {
    // SAFETY: mallopt only sets an allocator parameter; it is called before
    // the process starts its threads.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Trims the heaps whenever a flood of connections has mostly ended.
pub async fn trim_after_floods(drain: Arc<Drain>) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let peak = drain.take_peak();
        let open = drain.open();
        if peak >= FLOOD && open <= peak / 2 {
            log::debug!("{peak} connections came and {} went: trimming the heap", peak - open);
            // SAFETY: malloc_trim has no preconditions; it may take a few
            // milliseconds, so it runs on a blocking thread.
            let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
        }
    }
}
