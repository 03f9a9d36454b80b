//! SIGTERM is a graceful stop: a produce the agent already read is flushed, committed and answered
//! before the process exits, and the record is there after a restart.

use anyhow::{ensure, Result};
use floe_e2e::wire::{produce_batch, RawConnection};
use floe_e2e::{kafka, records, Playground};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_produce_in_flight_at_sigterm_is_flushed_and_answered_before_exit() -> Result<()> {
    // Flushes 20 s apart (the first 20 s after start): the batch stays in the open segment until
    // the shutdown flushes it.
    let mut playground = Playground::start(&["--flush-interval", "20s"])?;
    kafka::create_topic(&playground.bootstrap, "last-words", 1).await?;
    let mut connection = RawConnection::connect(&playground.bootstrap)?;
    let producing = std::thread::spawn(move || -> Result<i64> {
        produce_batch(&mut connection, "last-words", 0, &[(records::key(7), records::value(7))])
    });
    // Wait until the agent has read and appended the batch, then ask it to stop.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while floe_e2e::http_get(&playground.http, "/metrics")
        .map(|(_, metrics)| floe_e2e::metric_value(&metrics, "floe_bytes_in_total").unwrap_or_default())?
        <= 0.0
    {
        ensure!(std::time::Instant::now() < deadline, "the agent never received the batch");
        std::thread::sleep(Duration::from_millis(20));
    }
    ensure!(!producing.is_finished(), "the produce was answered before any flush: the test proves nothing");
    playground.stop()?;
    let offset = producing.join().map_err(|_| anyhow::anyhow!("producer thread panicked"))??;
    ensure!(offset == 0, "the in-flight produce was answered with offset {offset}");
    playground.restart()?;
    let stored = kafka::read_all(&playground.bootstrap, "last-words", 1, Duration::from_secs(30))?;
    let record =
        stored.get(&0).and_then(|records| records.first()).ok_or_else(|| anyhow::anyhow!("the record is gone after the restart"))?;
    ensure!(record.key == records::key(7) && record.value == records::value(7), "a different record came back");
    Ok(())
}
