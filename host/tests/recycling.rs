//! Worker recycling (`--max-requests` with jitter, `--max-worker-memory`):
//! workers past a limit are replaced under load from kept-alive and fresh
//! clients, GET and POST, and no request fails. Counts and outcomes only;
//! every wait is bounded.

mod common;

use std::time::Duration;

use common::fleet::*;

/// Runs the mixed load until the log has `retirements` lines with
/// `reason`, then checks that no request failed, the workers changed and
/// the master lives.
fn recycles_without_loss(extra: &[&str], reason: &str, retirements: usize) {
    let _serial = one_at_a_time();
    let mut server = start(&echo(), extra);
    let master = server.pid();
    let first = worker_pids(master);
    let load = Load::clients(server.addr, mixed_clients());
    let log = wait_for_count(&server, reason, retirements, Duration::from_secs(90));
    let records = load.finish();
    let failed = records.iter().filter(|r| !r.ok()).count();
    let now = worker_pids(master);
    println!(
        "{extra:?}: {} requests, {failed} failed; {} retirements ({reason}); workers {first:?} → {now:?}",
        records.len(),
        log.matches(reason).count()
    );
    assert!(
        log.matches(reason).count() >= retirements,
        "fewer than {retirements} workers retired ({reason}):\n{log}"
    );
    assert_eq!(
        failed,
        0,
        "requests failed while workers were recycled: {:?}",
        failures(&records)
    );
    assert!(
        first.iter().all(|pid| !now.contains(pid)),
        "workers {first:?} still serve: {now:?}"
    );
    assert!(alive(&mut server), "the master died:\n{log}");
    server.stop();
}

#[test]
fn max_requests_recycles_workers_without_dropping_a_request() {
    recycles_without_loss(
        &["--max-requests", "400", "--max-requests-jitter", "100"],
        "served its",
        6,
    );
}

#[test]
fn max_worker_memory_recycles_a_worker_past_its_limit() {
    // Every worker is over 1 MiB: each is replaced about a second after it starts.
    recycles_without_loss(&["--max-worker-memory", "1MiB"], "over --max-worker-memory", 4);
}
