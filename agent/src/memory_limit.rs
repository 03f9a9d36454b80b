//! The memory limit of the cgroup this process runs in (a Kubernetes container's
//! `resources.limits.memory`), read once at start so that the default segment cache fits inside
//! it: an agent that outgrows its limit is killed by the kernel, and with it every produce it had
//! not yet acknowledged.
//!
//! Both cgroup versions are read, and the limit is the smallest one set on the process's cgroup
//! or any of its ancestors (the kernel enforces every level). The process's cgroup is found as
//! the kernel describes it (`/proc/self/cgroup`, resolved against `/proc/self/mountinfo`), so the
//! same code reads a container's own limit (cgroup namespace: the path is `/`) and a cgroup made
//! on a host. Hand-written rather than a crate: `sysinfo` reads only the root of the mount (the
//! namespaced case), and `cgroups-rs` is a whole cgroup manager for one number.

use std::path::{Path, PathBuf};

/// The segment cache when nothing limits the process's memory, and the most the default takes.
pub const DEFAULT_CACHE_BYTES: usize = 256 << 20;

/// The share of a memory limit the default cache takes. An agent needs about 250 MiB beside its
/// cache under the bench's heaviest load (agent/DESIGN.md, "Memory: the cache within a container's
/// limit"), so a 512 MiB limit gets 128 MiB and a limit of 1 GiB or more gets the full default.
const CACHE_SHARE_OF_LIMIT: u64 = 4;

/// The smallest default cache: below it a fetch of fresh data would miss at once.
const MIN_CACHE_BYTES: usize = 16 << 20;

/// The most the default takes over a file bucket (`file://`, the playground's). A miss there is a
/// read of a local file that the kernel's page cache usually still holds, so a large cache of
/// our own holds the same bytes twice: in the bench's playground runs a 64 MiB cache consumed and
/// caught up as fast as 256 MiB (460 and 310-363 MiB/s against 427-488 and 307-312) with 138-199
/// MiB of peak RSS against 327-532 (agent/DESIGN.md, "Memory: the cache within a container's
/// limit").
pub const FILE_BUCKET_CACHE_BYTES: usize = 64 << 20;

/// The most the default cache takes: without a limit, this is the default.
pub fn most_default_cache_bytes(file_bucket: bool) -> usize {
    if file_bucket {
        FILE_BUCKET_CACHE_BYTES
    } else {
        DEFAULT_CACHE_BYTES
    }
}

/// The segment cache to use when `--cache-bytes` is not given: the default (a smaller one over a
/// file bucket), or a quarter of the memory limit when that is smaller.
pub fn default_cache_bytes(limit: Option<u64>, file_bucket: bool) -> usize {
    let most = most_default_cache_bytes(file_bucket);
    match limit {
        None => most,
        Some(limit) => {
            let share = usize::try_from(limit / CACHE_SHARE_OF_LIMIT).unwrap_or(usize::MAX);
            share.clamp(MIN_CACHE_BYTES, most)
        }
    }
}

/// The memory limit of this process's cgroup, or `None` when none is set (or it is not Linux, or
/// the cgroup files cannot be read: the default then applies, as it did before limits were read).
pub fn cgroup_memory_limit() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let limit = memory_limit_from(&cgroups, &mountinfo, |path| std::fs::read_to_string(path).ok())?;
    // A limit at or above the machine's memory limits nothing (cgroup v1 reports "unlimited" as
    // a number near 2^63).
    match machine_memory_bytes() {
        Some(total) if limit >= total => None,
        _ => Some(limit),
    }
}

/// The limit from the contents of `/proc/self/cgroup` and `/proc/self/mountinfo`, reading the
/// cgroup files through `read` (a parameter so that tests can give a file tree).
fn memory_limit_from(cgroups: &str, mountinfo: &str, read: impl Fn(&Path) -> Option<String>) -> Option<u64> {
    cgroups
        .lines()
        .filter_map(|line| {
            // "hierarchy-id:controllers:path"; the path may itself contain ':'.
            let mut fields = line.splitn(3, ':');
            let (hierarchy, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            let (file, (root, mount_point)) = if hierarchy == "0" && controllers.is_empty() {
                ("memory.max", find_mount(mountinfo, |fstype, _| fstype == "cgroup2")?)
            } else if controllers.split(',').any(|controller| controller == "memory") {
                let memory_hierarchy = |fstype: &str, options: &str| fstype == "cgroup" && options.split(',').any(|o| o == "memory");
                ("memory.limit_in_bytes", find_mount(mountinfo, memory_hierarchy)?)
            } else {
                return None;
            };
            let directory = cgroup_directory(&root, &mount_point, path)?;
            smallest_limit_up_to(&directory, &mount_point, file, &read)
        })
        .min()
}

/// The mount of a cgroup hierarchy: (the cgroup path it shows at its mount point, the mount point).
fn find_mount(mountinfo: &str, wanted: impl Fn(&str, &str) -> bool) -> Option<(String, PathBuf)> {
    mountinfo.lines().find_map(|line| {
        // "id parent major:minor root mount-point options [optional fields] - fstype source super-options"
        let (before, after) = line.split_once(" - ")?;
        let mut before = before.split(' ');
        let root = before.nth(3)?;
        let mount_point = before.next()?;
        let mut after = after.split(' ');
        let fstype = after.next()?;
        let _source = after.next();
        let super_options = after.next().unwrap_or("");
        wanted(fstype, super_options).then(|| (unescape_mount_path(root), PathBuf::from(unescape_mount_path(mount_point))))
    })
}

/// mountinfo writes space, tab, newline and backslash in paths as octal escapes.
fn unescape_mount_path(path: &str) -> String {
    path.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// Where the process's cgroup `path` is under a mount of its hierarchy that shows `root` at
/// `mount_point`; `None` when the cgroup is outside what the mount shows.
fn cgroup_directory(root: &str, mount_point: &Path, path: &str) -> Option<PathBuf> {
    let relative = if root == "/" { path } else { path.strip_prefix(root)? };
    let relative = relative.trim_start_matches('/');
    Some(if relative.is_empty() { mount_point.to_path_buf() } else { mount_point.join(relative) })
}

/// The smallest limit in `file` of `directory` and each of its ancestors up to `mount_point`.
fn smallest_limit_up_to(directory: &Path, mount_point: &Path, file: &str, read: &impl Fn(&Path) -> Option<String>) -> Option<u64> {
    let mut smallest: Option<u64> = None;
    let mut current = Some(directory);
    while let Some(directory) = current {
        if let Some(limit) = read(&directory.join(file)).and_then(|text| parse_limit(&text)) {
            smallest = Some(smallest.map_or(limit, |smallest| smallest.min(limit)));
        }
        if directory == mount_point {
            break;
        }
        current = directory.parent().filter(|parent| parent.starts_with(mount_point));
    }
    smallest
}

/// A limit file's value: bytes, or `None` for "max" (cgroup v2's "no limit") or anything else.
fn parse_limit(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The machine's memory (`MemTotal` of `/proc/meminfo`).
fn machine_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.trim_start_matches("MemTotal:").trim().trim_end_matches("kB").trim().parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn files(entries: &[(&str, &str)]) -> impl Fn(&Path) -> Option<String> {
        let map: HashMap<PathBuf, String> = entries.iter().map(|(path, text)| (PathBuf::from(path), text.to_string())).collect();
        move |path: &Path| map.get(path).cloned()
    }

    const HYBRID_MOUNTS: &str = "\
25 24 0:22 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
30 25 0:27 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 25 0:32 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn a_v1_memory_limit_is_the_smallest_on_the_way_up_to_the_mount() {
        let cgroups = "4:memory:/pods/agent\n1:cpu:/\n0::/\n";
        let read = files(&[
            ("/sys/fs/cgroup/memory/pods/agent/memory.limit_in_bytes", "9223372036854771712\n"),
            ("/sys/fs/cgroup/memory/pods/memory.limit_in_bytes", "536870912\n"),
            ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n"),
        ]);
        assert_eq!(memory_limit_from(cgroups, HYBRID_MOUNTS, read), Some(512 << 20));
    }

    #[test]
    fn a_v2_limit_of_max_is_no_limit_and_a_number_is_one() {
        let mounts = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let unlimited = files(&[("/sys/fs/cgroup/kubepods/pod1/memory.max", "max\n")]);
        assert_eq!(memory_limit_from("0::/kubepods/pod1\n", mounts, unlimited), None);
        let limited =
            files(&[("/sys/fs/cgroup/kubepods/pod1/memory.max", "1073741824\n"), ("/sys/fs/cgroup/kubepods/memory.max", "max\n")]);
        assert_eq!(memory_limit_from("0::/kubepods/pod1\n", mounts, limited), Some(1 << 30));
    }

    #[test]
    fn a_container_with_its_own_cgroup_namespace_reads_the_root_of_the_mount() {
        // In a container the kernel shows the container's cgroup as "/" and mounts it at the root.
        let mounts = "700 690 0:26 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup rw\n";
        let read = files(&[("/sys/fs/cgroup/memory.max", "536870912\n")]);
        assert_eq!(memory_limit_from("0::/\n", mounts, read), Some(512 << 20));
    }

    #[test]
    fn a_mount_of_a_subtree_is_resolved_against_its_root() {
        // A v1 mount that shows /docker/abc at its mount point (no cgroup namespace).
        let mounts = "40 30 0:27 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n";
        let read = files(&[("/sys/fs/cgroup/memory/memory.limit_in_bytes", "268435456\n")]);
        assert_eq!(memory_limit_from("9:memory:/docker/abc\n", mounts, read), Some(256 << 20));
        assert_eq!(memory_limit_from("9:memory:/elsewhere\n", mounts, files(&[])), None, "a cgroup the mount does not show");
    }

    #[test]
    fn no_memory_hierarchy_means_no_limit() {
        assert_eq!(memory_limit_from("1:cpu:/\n", HYBRID_MOUNTS, files(&[])), None);
        assert_eq!(memory_limit_from("", "", files(&[])), None);
    }

    #[test]
    fn the_default_cache_is_a_quarter_of_the_limit_within_its_bounds() {
        assert_eq!(default_cache_bytes(None, false), DEFAULT_CACHE_BYTES);
        assert_eq!(default_cache_bytes(Some(512 << 20), false), 128 << 20);
        assert_eq!(default_cache_bytes(Some(4 << 30), false), DEFAULT_CACHE_BYTES, "never more than without a limit");
        assert_eq!(default_cache_bytes(Some(32 << 20), false), MIN_CACHE_BYTES);
        assert_eq!(default_cache_bytes(None, true), FILE_BUCKET_CACHE_BYTES, "a file bucket has the page cache");
        assert_eq!(default_cache_bytes(Some(512 << 20), true), FILE_BUCKET_CACHE_BYTES);
        assert_eq!(default_cache_bytes(Some(128 << 20), true), 32 << 20, "a quarter of the limit when smaller");
        assert_eq!(default_cache_bytes(Some(32 << 20), true), MIN_CACHE_BYTES);
    }
}
