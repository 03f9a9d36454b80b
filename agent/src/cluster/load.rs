//! The load an agent reports: Kafka bytes in and out, object-store bytes and process CPU per
//! second over the last reporting period. Published in the registry record (the operator's
//! external-metrics server sums it per pool for the HPA) and as Prometheus gauges.
//!
//! This module reads counters and `/proc/self/stat`; it writes nothing.

use crate::metrics::Metrics;
use std::time::Instant;

/// Load figures over one period, per second of wall time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Load {
    pub bytes_in_per_second: f64,
    pub bytes_out_per_second: f64,
    pub object_store_bytes_per_second: f64,
    pub cpu_seconds_per_second: f64,
}

/// Clock ticks per second of the `utime`/`stime` fields in `/proc/<pid>/stat`.
///
/// # Assumptions
/// Linux reports these in USER_HZ, which is 100 on every architecture Linux supports for
/// userspace (`getconf CLK_TCK`); a unit test checks it on the build machine. Reading it through
/// `sysconf` would need `unsafe` FFI, which the workspace forbids.
pub const USER_HZ: f64 = 100.0;

/// CPU seconds (user + system, all threads) this process used so far, from `/proc/self/stat`;
/// `None` where that file does not exist (not Linux) or cannot be parsed.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_seconds_from_stat(&stat)
}

/// Parses utime + stime out of a `/proc/<pid>/stat` line. The command name (field 2) sits in
/// parentheses and may itself hold spaces and parentheses, so fields are counted after the last
/// `)`: state is field 3, utime field 14, stime field 15.
pub fn cpu_seconds_from_stat(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user_ticks: u64 = fields.next()?.parse().ok()?;
    let system_ticks: u64 = fields.next()?.parse().ok()?;
    Some((user_ticks + system_ticks) as f64 / USER_HZ)
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    bytes_in: u64,
    bytes_out: u64,
    object_store_bytes: u64,
    cpu_seconds: Option<f64>,
}

impl Reading {
    fn now(metrics: &Metrics) -> Self {
        let store = |operation: &str| metrics.object_store_bytes.with_label_values(&[operation]).get();
        Self {
            at: Instant::now(),
            bytes_in: metrics.bytes_in.get(),
            bytes_out: metrics.bytes_out.get(),
            object_store_bytes: store("put") + store("get"),
            cpu_seconds: process_cpu_seconds(),
        }
    }
}

/// Turns counters into rates: each `sample` covers the time since the previous one.
pub struct LoadMeter {
    last: Reading,
}

impl LoadMeter {
    pub fn new(metrics: &Metrics) -> Self {
        Self { last: Reading::now(metrics) }
    }

    /// The load since the previous sample; also sets the `floe_agent_*_per_second` gauges.
    pub fn sample(&mut self, metrics: &Metrics) -> Load {
        let now = Reading::now(metrics);
        let load = rates(&self.last, &now);
        self.last = now;
        metrics.network_bytes_per_second.set(load.bytes_in_per_second + load.bytes_out_per_second);
        metrics.object_store_bytes_per_second.set(load.object_store_bytes_per_second);
        metrics.cpu_seconds_per_second.set(load.cpu_seconds_per_second);
        load
    }
}

fn rates(before: &Reading, after: &Reading) -> Load {
    let seconds = after.at.duration_since(before.at).as_secs_f64().max(0.001);
    let per_second = |before: u64, after: u64| after.saturating_sub(before) as f64 / seconds;
    let cpu = match (before.cpu_seconds, after.cpu_seconds) {
        (Some(before), Some(after)) => (after - before).max(0.0) / seconds,
        _ => 0.0,
    };
    Load {
        bytes_in_per_second: per_second(before.bytes_in, after.bytes_in),
        bytes_out_per_second: per_second(before.bytes_out, after.bytes_out),
        object_store_bytes_per_second: per_second(before.object_store_bytes, after.object_store_bytes),
        cpu_seconds_per_second: cpu,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn cpu_seconds_are_read_after_a_command_name_with_spaces_and_parentheses() {
        // Fields 14 and 15 (utime, stime) are 250 and 50 ticks.
        let stat = "4242 (floe (agent) 1) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 50 0 0 20 0 9 0 123 456789 1024";
        assert_eq!(cpu_seconds_from_stat(stat), Some(3.0));
        assert_eq!(cpu_seconds_from_stat("4242 (floe) S 1 2"), None);
        assert_eq!(cpu_seconds_from_stat("garbage"), None);
    }

    #[test]
    fn clock_ticks_are_user_hz() {
        let Ok(output) = std::process::Command::new("getconf").arg("CLK_TCK").output() else { return };
        let ticks: f64 = String::from_utf8_lossy(&output.stdout).trim().parse().expect("getconf CLK_TCK prints a number");
        assert_eq!(ticks, USER_HZ);
    }

    #[test]
    fn process_cpu_time_grows_while_this_process_computes() {
        let Some(before) = process_cpu_seconds() else { return };
        // Spin until the kernel has accounted at least 0.2 s of CPU to us (a few ticks), bounded.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut spins = 0u64;
        let after = loop {
            for value in 0..100_000u64 {
                spins = std::hint::black_box(spins.wrapping_add(value));
            }
            let now = process_cpu_seconds().expect("readable once");
            if now - before >= 0.2 || Instant::now() > deadline {
                break now;
            }
        };
        assert!(after - before >= 0.2, "CPU time went from {before} to {after} while spinning");
    }

    #[test]
    fn rates_divide_counter_deltas_by_wall_time() {
        let at = Instant::now();
        let before = Reading { at, bytes_in: 1_000, bytes_out: 0, object_store_bytes: 10, cpu_seconds: Some(1.0) };
        let after = Reading {
            at: at + Duration::from_secs(2),
            bytes_in: 5_000,
            bytes_out: 2_000,
            object_store_bytes: 4_010,
            cpu_seconds: Some(2.5),
        };
        let load = rates(&before, &after);
        assert_eq!(
            load,
            Load {
                bytes_in_per_second: 2_000.0,
                bytes_out_per_second: 1_000.0,
                object_store_bytes_per_second: 2_000.0,
                cpu_seconds_per_second: 0.75
            }
        );
        let without_cpu = Reading { cpu_seconds: None, ..after };
        assert_eq!(rates(&before, &without_cpu).cpu_seconds_per_second, 0.0);
    }

    #[test]
    fn the_meter_sets_the_gauges() {
        let metrics = Metrics::new();
        let mut meter = LoadMeter::new(&metrics);
        metrics.bytes_in.inc_by(500);
        metrics.object_store_bytes.with_label_values(&["put"]).inc_by(300);
        let load = meter.sample(&metrics);
        assert!(load.bytes_in_per_second > 0.0);
        assert_eq!(metrics.network_bytes_per_second.get(), load.bytes_in_per_second + load.bytes_out_per_second);
        assert_eq!(metrics.object_store_bytes_per_second.get(), load.object_store_bytes_per_second);
        assert!(metrics.render().contains("floe_agent_cpu_seconds_per_second"));
    }
}
