//! Clock skew for one process: libfaketime (Debian's `faketime` package) moves its wall clock by
//! a fixed offset while its monotonic clock (tokio's timers) keeps real time.

use anyhow::{ensure, Result};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// libfaketime's multi-threaded preload library.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// The environment that shifts a process's wall clock by `offset` (libfaketime syntax, e.g.
/// `-15m`, `+15m`).
pub fn skewed_environment(offset: &str) -> Result<Vec<(&'static str, String)>> {
    ensure!(Path::new(LIBFAKETIME).exists(), "{LIBFAKETIME} is missing; run e2e/scripts/install-deps.sh (it installs faketime)");
    Ok(vec![("LD_PRELOAD", LIBFAKETIME.to_string()), ("FAKETIME", offset.to_string()), ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string())])
}

/// Wall-clock offsets (object time minus now, in seconds) of the segment objects whose names are
/// ULIDs (`<ULID>.seg`) anywhere under `directory`: the clock of whoever wrote them.
pub fn object_clock_offsets(directory: &Path) -> Result<Vec<i64>> {
    let now = SystemTime::now();
    let mut offsets = Vec::new();
    let mut pending = vec![directory.to_path_buf()];
    while let Some(directory) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&directory) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(stem) = name.strip_suffix(".seg") else { continue };
            // `<journal revision>-<ULID>.seg`, or a bare `<ULID>.seg` from before the revision stamp.
            let id = stem.rsplit('-').next().unwrap_or(stem);
            let Ok(id) = ulid::Ulid::from_string(id) else { continue };
            let written = id.datetime();
            let offset = match written.duration_since(now) {
                Ok(ahead) => ahead.as_secs() as i64,
                Err(behind) => -(behind.duration().as_secs() as i64),
            };
            offsets.push(offset);
        }
    }
    Ok(offsets)
}

/// Whether some object under `directory` was named by a clock about `skew` away from ours (within
/// two minutes): proof that the skewed process really runs on the skewed clock.
pub fn some_object_written_with_skew(directory: &Path, skew: i64) -> Result<bool> {
    let tolerance = Duration::from_secs(120).as_secs() as i64;
    Ok(object_clock_offsets(directory)?.iter().any(|offset| (offset - skew).abs() < tolerance))
}
