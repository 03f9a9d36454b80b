//! The overview's recent history: every few seconds the Kafka bytes in and out and the object
//! store PUTs of this agent are turned into per-second rates and kept in a ring buffer of the
//! last few minutes. The sampler reads counters only; the buffer is the one thing it writes.
//! [`sum_series`] adds the histories of several agents into the cluster's (pure).

use crate::metrics::Metrics;
use prometheus::core::Collector;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the sampler takes a reading.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(3);
/// Readings kept: five minutes at [`SAMPLE_INTERVAL`].
pub const SAMPLES_KEPT: usize = 100;

/// Rates over one sampling period. Agents send theirs to each other as JSON (`/rates`): new fields
/// must default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When the period ended, in Unix milliseconds.
    pub unix_ms: i64,
    pub produce_bytes_per_second: f64,
    pub fetch_bytes_per_second: f64,
    pub puts_per_second: f64,
}

/// The last [`SAMPLES_KEPT`] samples, oldest first.
pub struct ThroughputHistory {
    samples: Mutex<VecDeque<Sample>>,
    capacity: usize,
}

impl ThroughputHistory {
    pub fn new(capacity: usize) -> Self {
        Self { samples: Mutex::new(VecDeque::with_capacity(capacity)), capacity: capacity.max(1) }
    }

    /// Adds `sample`, dropping the oldest one when full.
    pub fn record(&self, sample: Sample) {
        let mut samples = self.samples.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while samples.len() >= self.capacity {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// Every sample kept, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter().copied().collect()
    }
}

impl Default for ThroughputHistory {
    fn default() -> Self {
        Self::new(SAMPLES_KEPT)
    }
}

/// Object-store operation counts by (operation, outcome), read without creating a series.
pub fn object_store_operations(metrics: &Metrics) -> BTreeMap<(String, String), u64> {
    let mut counts = BTreeMap::new();
    for family in metrics.object_store_operations.collect() {
        for metric in family.get_metric() {
            let label = |name: &str| {
                metric.get_label().iter().find(|pair| pair.name() == name).map(|pair| pair.value().to_string()).unwrap_or_default()
            };
            counts.insert((label("operation"), label("outcome")), metric.get_counter().get_value() as u64);
        }
    }
    counts
}

/// The counters behind one sample.
#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    bytes_in: u64,
    bytes_out: u64,
    puts: u64,
}

impl Reading {
    fn now(metrics: &Metrics) -> Self {
        let puts = object_store_operations(metrics).iter().filter(|((operation, _), _)| operation == "put").map(|(_, count)| count).sum();
        Self { at: Instant::now(), bytes_in: metrics.bytes_in.get(), bytes_out: metrics.bytes_out.get(), puts }
    }
}

/// The rates between two readings.
fn rates(before: &Reading, after: &Reading, unix_ms: i64) -> Sample {
    let elapsed = after.at.duration_since(before.at).as_secs_f64().max(1e-3);
    let per_second = |before: u64, after: u64| after.saturating_sub(before) as f64 / elapsed;
    Sample {
        unix_ms,
        produce_bytes_per_second: per_second(before.bytes_in, after.bytes_in),
        fetch_bytes_per_second: per_second(before.bytes_out, after.bytes_out),
        puts_per_second: per_second(before.puts, after.puts),
    }
}

/// The cluster's history from each agent's (each oldest first): one point per sample of the
/// longest history (the first of equally long ones), adding to it the sample of every other agent taken nearest to it, when that
/// one is less than `tolerance_ms` away.
///
/// # Assumptions
/// Agents sample at the same interval but not in step (each from its own start), so an agent's
/// nearest sample is at most half an interval away; `tolerance_ms` of one interval leaves room for
/// late ticks and clock skew, and since only the nearest sample is taken, no agent counts twice in
/// a point. An agent with no sample near a point (it started later) adds nothing to it.
pub fn sum_series(histories: &[&[Sample]], tolerance_ms: i64) -> Vec<Sample> {
    // `max_by_key` keeps the last of equal maxima: reversed, that is the first.
    let Some(reference) = histories.iter().rev().max_by_key(|history| history.len()) else {
        return Vec::new();
    };
    reference
        .iter()
        .map(|point| {
            let mut total = Sample { unix_ms: point.unix_ms, ..Sample::default() };
            for history in histories {
                let nearest = history.iter().min_by_key(|sample| (sample.unix_ms - point.unix_ms).abs());
                if let Some(sample) = nearest.filter(|sample| (sample.unix_ms - point.unix_ms).abs() < tolerance_ms) {
                    total.produce_bytes_per_second += sample.produce_bytes_per_second;
                    total.fetch_bytes_per_second += sample.fetch_bytes_per_second;
                    total.puts_per_second += sample.puts_per_second;
                }
            }
            total
        })
        .collect()
}

/// Samples `metrics` into `history` every `interval`, until the task is dropped.
pub async fn run_sampler(metrics: Arc<Metrics>, history: Arc<ThroughputHistory>, interval: Duration) {
    let mut last = Reading::now(&metrics);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = Reading::now(&metrics);
        let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as i64);
        history.record(rates(&last, &now, unix_ms));
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_meta::bucket::StoreObserver;

    #[test]
    fn the_ring_buffer_keeps_the_newest_samples_in_order() {
        let history = ThroughputHistory::new(3);
        for unix_ms in 1..=5 {
            history.record(Sample { unix_ms, ..Sample::default() });
        }
        let kept: Vec<i64> = history.samples().iter().map(|sample| sample.unix_ms).collect();
        assert_eq!(kept, vec![3, 4, 5]);
    }

    #[test]
    fn rates_divide_counter_growth_by_the_elapsed_time() {
        let start = Instant::now();
        let before = Reading { at: start, bytes_in: 1_000, bytes_out: 0, puts: 10 };
        let after = Reading { at: start + Duration::from_secs(2), bytes_in: 5_000, bytes_out: 600, puts: 14 };
        let sample = rates(&before, &after, 42);
        assert_eq!(sample, Sample { unix_ms: 42, produce_bytes_per_second: 2_000.0, fetch_bytes_per_second: 300.0, puts_per_second: 2.0 });
    }

    fn produced(unix_ms: i64, bytes_per_second: f64) -> Sample {
        Sample { unix_ms, produce_bytes_per_second: bytes_per_second, fetch_bytes_per_second: 1.0, puts_per_second: 0.5 }
    }

    #[test]
    fn the_cluster_series_adds_each_agents_nearest_sample_to_every_point_of_the_longest() {
        // Three agents sampling every 3 s from different starts; the third started late.
        let first: Vec<Sample> = (0..4).map(|index| produced(10_000 + index * 3_000, 100.0)).collect();
        let second: Vec<Sample> = (0..4).map(|index| produced(11_400 + index * 3_000, 20.0)).collect();
        let third = vec![produced(18_900, 3.0)];
        let sum = sum_series(&[&second, &third, &first], 3_000);
        assert_eq!(sum.iter().map(|sample| sample.unix_ms).collect::<Vec<_>>(), vec![11_400, 14_400, 17_400, 20_400]);
        let produce: Vec<f64> = sum.iter().map(|sample| sample.produce_bytes_per_second).collect();
        assert_eq!(produce, vec![120.0, 120.0, 123.0, 123.0]);
        assert_eq!((sum[0].fetch_bytes_per_second, sum[0].puts_per_second), (2.0, 1.0));
    }

    #[test]
    fn a_sample_too_far_from_every_point_adds_nothing() {
        let local = vec![produced(0, 1.0), produced(3_000, 1.0)];
        let stale = vec![produced(-60_000, 500.0)];
        let sum = sum_series(&[&local, &stale], 3_000);
        assert!(sum.iter().all(|sample| sample.produce_bytes_per_second == 1.0), "{sum:?}");
        assert!(sum_series(&[], 3_000).is_empty());
    }

    #[test]
    fn operation_counts_are_read_by_operation_and_outcome() {
        let metrics = Metrics::new();
        metrics.operation("put", Duration::ZERO, true);
        metrics.operation("put", Duration::ZERO, true);
        metrics.operation("get", Duration::ZERO, false);
        let counts = object_store_operations(&metrics);
        assert_eq!(counts.get(&("put".to_string(), "ok".to_string())), Some(&2));
        assert_eq!(counts.get(&("get".to_string(), "error".to_string())), Some(&1));
        assert_eq!(Reading::now(&metrics).puts, 2);
    }
}
