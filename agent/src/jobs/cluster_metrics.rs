//! Metrics about the whole virtual cluster rather than this agent: consumer lag (from the metadata
//! replica) and, in cluster mode, etcd's database size. Every agent holds the same replica, so
//! only the agent running the background jobs exports them (the jobs leader, or the playground's
//! sole agent): one set of series per virtual cluster. Refreshed every `lag_metrics_interval`
//! while it runs the jobs; series of groups and partitions that disappeared are removed, and all
//! of them when the agent stops running the jobs (`clear`).

use super::consumer_lag::{self, LagReport};
use super::JobContext;
use crate::metrics::{ConsumerLagMetrics, Metrics};
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Refreshes the metrics now and then every `lag_metrics_interval`; never returns (the caller
/// drops it when the agent stops running the jobs, then calls [`clear`]).
pub async fn run(context: &JobContext) -> Infallible {
    let mut exported = ExportedSeries::default();
    loop {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as i64);
        let max_series = context.settings.lag_metrics_max_series;
        let report = context.metadata.read(|state| consumer_lag::compute(state, now_ms, max_series));
        exported.export(&context.metrics.consumer_lag, &report);
        if let Some(etcd) = &context.etcd {
            // Bounded: a hung etcd must not stop the lag from being refreshed.
            let size = match tokio::time::timeout(ETCD_STATUS_TIMEOUT, etcd.database_size()).await {
                Ok(answer) => answer.map_err(|error| error.to_string()),
                Err(_) => Err(format!("no answer within {ETCD_STATUS_TIMEOUT:?}")),
            };
            match size {
                Ok(size) => {
                    context.metrics.etcd_database_bytes.with_label_values::<&str>(&[]).set(size.bytes as i64);
                    match size.quota_bytes {
                        Some(quota) => context.metrics.etcd_database_quota_bytes.with_label_values::<&str>(&[]).set(quota as i64),
                        None => context.metrics.etcd_database_quota_bytes.reset(),
                    }
                }
                // The last size stays: a scrape between two failures still sees the trend, and the
                // etcd problem itself shows in the jobs' and the journal's errors.
                Err(error) => tracing::debug!(%error, "failed to read etcd's status for floe_etcd_db_size_bytes"),
            }
        }
        tokio::time::sleep(context.settings.lag_metrics_interval).await;
    }
}

const ETCD_STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// Removes every series [`run`] exported: the agent no longer runs the jobs.
pub fn clear(metrics: &Metrics) {
    metrics.consumer_lag.clear();
    metrics.etcd_database_bytes.reset();
    metrics.etcd_database_quota_bytes.reset();
}

/// The label sets exported by the last refresh, to remove those the next one no longer has.
#[derive(Default)]
struct ExportedSeries {
    partitions: BTreeSet<(String, String, String)>,
    groups: BTreeSet<String>,
}

impl ExportedSeries {
    fn export(&mut self, metrics: &ConsumerLagMetrics, report: &LagReport) {
        let mut partitions = BTreeSet::new();
        for lag in &report.partitions {
            let labels = (lag.group.clone(), lag.topic.clone(), lag.partition.to_string());
            let values = [labels.0.as_str(), labels.1.as_str(), labels.2.as_str()];
            metrics.records.with_label_values(&values).set(lag.records);
            metrics.seconds.with_label_values(&values).set(lag.seconds);
            partitions.insert(labels);
        }
        for (group, topic, partition) in self.partitions.difference(&partitions) {
            let values = [group.as_str(), topic.as_str(), partition.as_str()];
            let _ = metrics.records.remove_label_values(&values);
            let _ = metrics.seconds.remove_label_values(&values);
        }
        self.partitions = partitions;

        let mut groups = BTreeSet::new();
        for (group, lag) in &report.groups {
            metrics.group_records.with_label_values(&[group.as_str()]).set(lag.records);
            metrics.group_max_seconds.with_label_values(&[group.as_str()]).set(lag.max_seconds);
            groups.insert(group.clone());
        }
        for group in self.groups.difference(&groups) {
            let _ = metrics.group_records.remove_label_values(&[group.as_str()]);
            let _ = metrics.group_max_seconds.remove_label_values(&[group.as_str()]);
        }
        self.groups = groups;
        metrics.partitions_dropped.with_label_values::<&str>(&[]).set(i64::from(report.partitions_dropped));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::consumer_lag::{GroupLag, PartitionLag};

    fn lag(group: &str, partition: i32, records: i64) -> PartitionLag {
        PartitionLag { group: group.into(), topic: "orders".into(), partition, records, seconds: records as f64 }
    }

    fn report(partitions: Vec<PartitionLag>) -> LagReport {
        let mut report = LagReport::default();
        for partition in &partitions {
            let group = report.groups.entry(partition.group.clone()).or_insert_with(GroupLag::default);
            group.records += partition.records;
            group.max_seconds = group.max_seconds.max(partition.seconds);
        }
        report.partitions = partitions;
        report
    }

    #[test]
    fn series_of_groups_and_partitions_that_disappeared_are_removed() {
        let metrics = Metrics::new();
        let mut exported = ExportedSeries::default();
        exported.export(&metrics.consumer_lag, &report(vec![lag("a", 0, 3), lag("a", 1, 4), lag("b", 0, 5)]));
        let rendered = metrics.render();
        assert!(rendered.contains(r#"floe_consumer_group_lag_records{group="a",partition="1",topic="orders"} 4"#), "{rendered}");
        assert!(rendered.contains(r#"floe_consumer_group_total_lag_records{group="a"} 7"#), "{rendered}");
        assert!(rendered.contains(r#"floe_consumer_group_max_lag_seconds{group="b"} 5"#), "{rendered}");

        exported.export(&metrics.consumer_lag, &report(vec![lag("a", 0, 1)]));
        let rendered = metrics.render();
        assert!(rendered.contains(r#"floe_consumer_group_lag_records{group="a",partition="0",topic="orders"} 1"#), "{rendered}");
        assert!(!rendered.contains(r#"partition="1""#) && !rendered.contains(r#"group="b""#), "{rendered}");
        assert!(rendered.contains("floe_consumer_group_lag_partitions_dropped 0"), "{rendered}");

        clear(&metrics);
        assert!(!metrics.render().contains("floe_consumer_group"), "{}", metrics.render());
    }

    #[test]
    fn dropping_the_partition_series_keeps_the_group_totals_and_says_so() {
        let metrics = Metrics::new();
        let mut exported = ExportedSeries::default();
        exported.export(&metrics.consumer_lag, &report(vec![lag("a", 0, 3)]));
        let mut dropped = report(vec![lag("a", 0, 3), lag("a", 1, 2)]);
        dropped.partitions.clear();
        dropped.partitions_dropped = true;
        exported.export(&metrics.consumer_lag, &dropped);
        let rendered = metrics.render();
        assert!(!rendered.contains("floe_consumer_group_lag_records{"), "{rendered}");
        assert!(rendered.contains(r#"floe_consumer_group_total_lag_records{group="a"} 5"#), "{rendered}");
        assert!(rendered.contains("floe_consumer_group_lag_partitions_dropped 1"), "{rendered}");
    }

    #[test]
    fn nothing_about_the_cluster_is_exported_by_an_agent_that_does_not_run_the_jobs() {
        let rendered = Metrics::new().render();
        assert!(!rendered.contains("floe_consumer_group") && !rendered.contains("floe_etcd_db_size"), "{rendered}");
    }
}
