//! What the proxy reports and what it holds: samples of the admin listener's `/metrics` page,
//! and the `/proc` readers for its memory and open descriptors.

use super::get;
use std::net::SocketAddr;

// ---------------------------------------------------------------------------------------------
// Process statistics
// ---------------------------------------------------------------------------------------------

/// A `kB` field of /proc/PID/status (e.g. `VmRSS`, `VmHWM`), in KiB.
#[track_caller]
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let path = format!("/proc/{pid}/status");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => panic!("{path}: {e}"),
    };
    let prefix = format!("{field}:");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {path}"))
}

/// The resident set size of `pid`, in KiB.
pub fn vm_rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS")
}

/// The peak resident set size of `pid` since it started, in KiB.
pub fn vm_hwm_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmHWM")
}

/// How many descriptors of the kind `kind` (`"socket"`, `"pipe"`: what a /proc/PID/fd link
/// names before its colon) `pid` has open.
#[track_caller]
pub fn open_fds(pid: u32, kind: &str) -> usize {
    let path = format!("/proc/{pid}/fd");
    let prefix = format!("{kind}:");
    match std::fs::read_dir(&path) {
        Ok(dir) => dir
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().starts_with(&prefix))
            .count(),
        Err(e) => panic!("{path}: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

/// The value of the sample `name` (the metric name with its labels, exactly as written) in a
/// Prometheus text exposition.
pub fn metric_value<'a>(metrics: &'a str, name: &str) -> Option<&'a str> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
}

/// The `/metrics` page of the admin listener at `admin` (see `Proxy::admin_addr`), which must
/// answer 200.
#[track_caller]
pub fn scrape(admin: SocketAddr) -> String {
    let (status, page) = get(admin, "/metrics");
    assert_eq!(status, 200, "GET /metrics on {admin}: {page}");
    page
}

/// The value of the sample `name` (labels included, as written) on the admin listener at
/// `admin`, scraped now; `None` when the page does not list it.
#[track_caller]
pub fn metric(admin: SocketAddr, name: &str) -> Option<String> {
    metric_value(&scrape(admin), name).map(str::to_string)
}

/// The sample `name` on the admin listener at `admin`, scraped now, as a count (a counter or a
/// gauge); panics with the page when it is missing or not a whole number.
#[track_caller]
pub fn metric_count(admin: SocketAddr, name: &str) -> u64 {
    let page = scrape(admin);
    metric_value(&page, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no count {name} in:\n{page}"))
}
