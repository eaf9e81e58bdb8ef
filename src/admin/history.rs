//! The last hour, kept by the admin thread: per-interval totals (10 s buckets, 360 of them)
//! taken from the counters the workers keep anyway, and the upstreams' state changes. The
//! workers do nothing for it; its size is fixed whatever the traffic (bounded series and
//! events); `GET /status/history` serves it and the status page draws it.
//!
//! A bucket holds what changed during its interval: the difference between two readings of
//! the cumulative counters (a [`View`]). The open bucket, from the last close to now, is
//! computed when asked for, so a page sees a change within its own refresh, not a bucket later.

use super::view::{UpstreamView, View};
use crate::metrics::LOCAL_CODES;
use crate::text::json_str;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write;

/// The length of a bucket.
pub const INTERVAL_MS: u64 = 10_000;
/// Buckets kept: an hour.
pub const BUCKETS: usize = 360;
/// Most upstream series kept (each 360 points of 52 bytes: 9.6 MB at most); upstreams beyond
/// are not charted.
pub const MAX_UPSTREAM_SERIES: usize = 512;
/// Most pool series kept.
pub const MAX_POOL_SERIES: usize = 256;
/// Most state changes kept (those older than an hour go first).
pub const MAX_EVENTS: usize = 4096;

/// What a client-side bucket counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientPoint {
    pub requests: u64,
    pub connections: u64,
    pub rate_limited: u64,
    /// Answers the proxy made itself, and those of them that were 5xx.
    pub local: u64,
    pub local_5xx: u64,
}

/// What a pool's bucket counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolPoint {
    /// Requests its upstreams were sent, and their responses by class (1xx … 5xx).
    pub requests: u64,
    pub responses: [u64; 5],
    /// 502/503/504 the proxy answered itself for requests routed to the pool.
    pub local_5xx: u64,
    pub rate_limited: u64,
}

/// What an upstream's bucket holds: what 10 s of one upstream counts fits 32 bits, and an
/// upstream keeps 360 of these (48 bytes each).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UpstreamPoint {
    pub requests: u32,
    /// Responses by class, 1xx … 5xx.
    pub responses: [u32; 5],
    /// Connects that failed.
    pub failures: u32,
    /// Response times of the bucket's responses (`None`: none came).
    pub p50_ms: Option<f32>,
    pub p99_ms: Option<f32>,
    /// Its state at the bucket's end.
    pub state: UpState,
}

/// An upstream's state as the charts mark it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UpState {
    #[default]
    Up,
    /// Up, in its pool's slow start (its share of requests still growing).
    SlowStart,
    /// Taken out by outlier detection for a while.
    Ejected,
    Down,
}

impl UpState {
    pub fn name(self) -> &'static str {
        match self {
            UpState::Up => "up",
            UpState::SlowStart => "slow_start",
            UpState::Ejected => "ejected",
            UpState::Down => "down",
        }
    }

    pub fn of(u: &UpstreamView) -> UpState {
        if u.ejected_until_unix_ms.is_some() {
            UpState::Ejected
        } else if !u.up {
            UpState::Down
        } else if u.slow_start_left_ms.is_some() {
            UpState::SlowStart
        } else {
            UpState::Up
        }
    }
}

/// Why an upstream's state changed when it recorded no change itself: what the two states
/// say. (An ejection's start and end are recorded when they take the upstream out or bring it
/// back; not the ejection of one already down, nor an ejection's end while checks still say
/// down, nor a slow start's end.)
fn unrecorded_reason(before: UpState, now: UpState) -> &'static str {
    match (before, now) {
        (_, UpState::Ejected) => "ejected by outlier detection",
        (UpState::Ejected, UpState::Down) => "ejection over, still down",
        (UpState::Ejected, _) => "ejection over",
        (UpState::SlowStart, UpState::Up) => "slow start over",
        _ => "",
    }
}

/// A state change of an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When it happened (Unix ms), as the change recorded it, else when it was seen.
    pub unix_ms: u64,
    /// When the history saw it: what `since` filters on.
    pub seen_unix_ms: u64,
    pub pool: String,
    pub address: String,
    pub state: UpState,
    /// What did it (`request`, `health_check`, `outlier_detection`, `dns`), when known.
    pub by: &'static str,
    pub reason: String,
}

/// A pool's point and its upstreams' points, for one bucket.
type PoolReading<'a> = (PoolPoint, Vec<(&'a UpstreamView, UpstreamPoint)>);

/// A series of points, one per closed bucket (`None`: it did not exist then).
type Points<T> = VecDeque<Option<T>>;

#[derive(Debug)]
struct UpstreamSeries {
    address: String,
    name: String,
    points: Points<UpstreamPoint>,
}

#[derive(Debug)]
struct PoolSeries {
    name: String,
    points: Points<PoolPoint>,
    upstreams: Vec<UpstreamSeries>,
}

/// What was last seen of an upstream, to tell a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    state: UpState,
    change_unix_ms: u64,
}

/// The bucket being counted.
#[derive(Debug)]
struct Open {
    /// Where it starts on the chart (Unix ms): the first reading, then the 10 s grid.
    start: u64,
    /// The reading it counts from, and when it was read (Unix ms): its counts cover from then
    /// to the reading that closes it, which is what its length says (readings come about a
    /// second apart, so a bucket's counts do not end at its grid mark).
    base: View,
    base_ms: u64,
}

/// The history.
#[derive(Debug, Default)]
pub struct History {
    /// Start of each closed bucket (Unix ms), oldest first, and the time its counts cover.
    starts: VecDeque<(u64, u64)>,
    /// The open bucket; `None` before the first reading.
    open: Option<Open>,
    clients: VecDeque<ClientPoint>,
    pools: Vec<PoolSeries>,
    events: VecDeque<Event>,
    /// Each upstream's last seen state, by (pool, address).
    seen: HashMap<(String, String), Seen>,
    /// Upstream series dropped for the cap (said once in the log).
    over_cap_logged: bool,
}

impl History {
    /// Take `view` (read at `now_ms`, Unix ms): note state changes, and close the open
    /// bucket when its interval is over. Called about once a second.
    pub fn observe(&mut self, view: &View, now_ms: u64) {
        self.note_changes(view, now_ms);
        let start = match &self.open {
            // The first bucket starts with the first reading, the others on the 10 s grid.
            None => now_ms,
            // The bucket ends on the grid: the first one, begun between two marks, at the next.
            Some(open) if now_ms < open.start - open.start % INTERVAL_MS + INTERVAL_MS => return,
            // Closed at the first reading past its end (a late one makes a longer bucket,
            // which its length says; the next starts on the grid again).
            Some(_) => now_ms - now_ms % INTERVAL_MS,
        };
        let next = Open {
            start,
            base: view.clone(),
            base_ms: now_ms,
        };
        if let Some(open) = self.open.replace(next) {
            self.close(view, &open.base, open.start, now_ms - open.base_ms);
        }
    }

    fn close(&mut self, view: &View, base: &View, start: u64, len: u64) {
        let clients = client_point(view, base);
        let pools: Vec<(String, PoolReading)> = view
            .pools
            .iter()
            .map(|p| (p.name.clone(), pool_point(p, base)))
            .collect();
        if self.starts.len() == BUCKETS {
            self.starts.pop_front();
            self.clients.pop_front();
            for p in &mut self.pools {
                p.points.pop_front();
                for u in &mut p.upstreams {
                    u.points.pop_front();
                }
            }
        }
        self.starts.push_back((start, len));
        self.clients.push_back(clients);
        let n = self.starts.len();
        let mut upstream_series: usize = self.pools.iter().map(|p| p.upstreams.len()).sum();
        for (name, (point, ups)) in pools {
            let at = match self.pools.iter().position(|s| s.name == name) {
                Some(i) => i,
                None if self.pools.len() < MAX_POOL_SERIES => {
                    self.pools.push(PoolSeries {
                        name,
                        points: std::iter::repeat_n(None, n - 1).collect(),
                        upstreams: Vec::new(),
                    });
                    self.pools.len() - 1
                }
                None => continue,
            };
            let series = &mut self.pools[at];
            series.points.push_back(Some(point));
            for (u, up) in ups {
                let i = match series.upstreams.iter().position(|s| s.address == u.address) {
                    Some(i) => i,
                    None if upstream_series < MAX_UPSTREAM_SERIES => {
                        upstream_series += 1;
                        series.upstreams.push(UpstreamSeries {
                            address: u.address.clone(),
                            name: u.name.clone(),
                            points: std::iter::repeat_n(None, n - 1).collect(),
                        });
                        series.upstreams.len() - 1
                    }
                    None => {
                        if !self.over_cap_logged {
                            self.over_cap_logged = true;
                            log::info!(
                                "status history: more than {MAX_UPSTREAM_SERIES} upstreams; \
                                 the others are not charted"
                            );
                        }
                        continue;
                    }
                };
                series.upstreams[i].points.push_back(Some(up));
            }
        }
        // Series absent from this reading get a gap; those with nothing left in the hour go.
        for p in &mut self.pools {
            if p.points.len() < n {
                p.points.push_back(None);
            }
            for u in &mut p.upstreams {
                if u.points.len() < n {
                    u.points.push_back(None);
                }
            }
            p.upstreams.retain(|u| u.points.iter().any(Option::is_some));
        }
        self.pools.retain(|p| p.points.iter().any(Option::is_some));
        let oldest = self.starts.front().map_or(0, |s| s.0);
        while self.events.front().is_some_and(|e| e.unix_ms < oldest) {
            self.events.pop_front();
        }
    }

    fn note_changes(&mut self, view: &View, now_ms: u64) {
        // Rebuilt from this reading: the map holds exactly the upstreams there are.
        let mut seen = HashMap::with_capacity(self.seen.len());
        for p in &view.pools {
            for u in &p.upstreams {
                let state = UpState::of(u);
                let change_unix_ms = u.last_change.as_ref().map_or(0, |c| c.unix_ms);
                let now = Seen {
                    state,
                    change_unix_ms,
                };
                let key = (p.name.clone(), u.address.clone());
                let before = self.seen.remove(&key);
                seen.insert(key, now);
                let Some(before) = before else {
                    continue;
                };
                if before == now {
                    continue;
                }
                // A change the upstream recorded (down or up, by what, why) since the last
                // look, or a state seen to differ (an ejection, the end of a slow start).
                let recorded = u
                    .last_change
                    .as_ref()
                    .filter(|c| c.unix_ms != before.change_unix_ms);
                if let Some(c) = recorded {
                    // The one change an upstream records is its last: one that undoes the
                    // state seen at the last look means the opposite one came between.
                    let was_up = matches!(before.state, UpState::Up | UpState::SlowStart);
                    let between = match (c.up, was_up, before.state) {
                        (true, true, _) => Some(UpState::Down),
                        (false, _, UpState::Down | UpState::Ejected) => Some(UpState::Up),
                        _ => None,
                    };
                    if let Some(missed) = between {
                        let reason = "and back, between two readings a second apart";
                        self.push_event(Event {
                            unix_ms: c.unix_ms,
                            seen_unix_ms: now_ms,
                            pool: p.name.clone(),
                            address: u.address.clone(),
                            state: missed,
                            by: "",
                            reason: reason.to_string(),
                        });
                    }
                }
                let (unix_ms, by, reason) = match recorded {
                    Some(c) => (c.unix_ms, c.by.name(), c.reason.clone()),
                    None => (
                        now_ms,
                        "",
                        unrecorded_reason(before.state, state).to_string(),
                    ),
                };
                let state = match recorded {
                    // A flap between two looks: say what the recorded change was (an
                    // ejection again says so).
                    Some(c) if state == before.state && state != UpState::Ejected => {
                        if c.up {
                            UpState::Up
                        } else {
                            UpState::Down
                        }
                    }
                    _ => state,
                };
                self.push_event(Event {
                    unix_ms,
                    seen_unix_ms: now_ms,
                    pool: p.name.clone(),
                    address: u.address.clone(),
                    state,
                    by,
                    reason,
                });
            }
        }
        self.seen = seen;
    }

    fn push_event(&mut self, event: Event) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// The history as JSON: the closed buckets starting at or after `since` (Unix ms; 0 for
    /// all), then the open one as of `view` (read at `now_ms`), and the changes seen since.
    pub fn json(&self, view: &View, now_ms: u64, since: u64) -> String {
        let first = self.starts.partition_point(|s| s.0 < since);
        let mut starts: Vec<(u64, u64)> = self.starts.iter().skip(first).copied().collect();
        let open = self.open.as_ref().map(|o| {
            starts.push((o.start, now_ms.saturating_sub(o.base_ms)));
            &o.base
        });
        let mut o = String::with_capacity(4096);
        let _ = write!(
            o,
            "{{\"interval_s\":{},\"now_unix_ms\":{now_ms},\"buckets\":{{\"start_unix_ms\":[{}],\"seconds\":[{}]}},",
            INTERVAL_MS / 1000,
            join(starts.iter().map(|s| s.0.to_string())),
            join(starts.iter().map(|s| format!("{:.1}", s.1 as f64 / 1000.0))),
        );
        let mut clients: Vec<ClientPoint> = self.clients.iter().skip(first).copied().collect();
        if let Some(base) = open {
            clients.push(client_point(view, base));
        }
        let _ = write!(
            o,
            "\"clients\":{{\"requests\":[{}],\"connections\":[{}],\"rate_limited\":[{}],\"local\":[{}],\"local_5xx\":[{}]}},\"pools\":[",
            join(clients.iter().map(|c| c.requests.to_string())),
            join(clients.iter().map(|c| c.connections.to_string())),
            join(clients.iter().map(|c| c.rate_limited.to_string())),
            join(clients.iter().map(|c| c.local.to_string())),
            join(clients.iter().map(|c| c.local_5xx.to_string())),
        );
        // Every pool with a series, and any the open bucket adds (a reload's new pool).
        let open_pools: Vec<(&str, PoolReading)> = match open {
            Some(base) => view
                .pools
                .iter()
                .map(|p| (p.name.as_str(), pool_point(p, base)))
                .collect(),
            None => Vec::new(),
        };
        let mut names: Vec<&str> = self.pools.iter().map(|p| p.name.as_str()).collect();
        for (name, _) in &open_pools {
            if !names.contains(name) && names.len() < MAX_POOL_SERIES {
                names.push(name);
            }
        }
        let closed = starts.len() - usize::from(open.is_some());
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            let series = self.pools.iter().find(|p| p.name == *name);
            let now = open_pools.iter().find(|p| p.0 == *name);
            let mut points: Vec<Option<PoolPoint>> = match series {
                Some(s) => s.points.iter().skip(first).copied().collect(),
                None => vec![None; closed],
            };
            if open.is_some() {
                points.push(now.map(|n| n.1 .0));
            }
            let col = |f: &dyn Fn(&PoolPoint) -> u64| {
                join(
                    points
                        .iter()
                        .map(|p| p.as_ref().map_or("null".into(), |p| f(p).to_string())),
                )
            };
            let _ = write!(
                o,
                "{{\"name\":{},\"requests\":[{}],\"responses\":{},\"local_5xx\":[{}],\"rate_limited\":[{}],\"upstreams\":[",
                json_str(name),
                col(&|p| p.requests),
                classes(&|c| col(&|p| p.responses[c])),
                col(&|p| p.local_5xx),
                col(&|p| p.rate_limited),
            );
            let mut addresses: Vec<(&str, &str)> = series
                .map(|s| {
                    s.upstreams
                        .iter()
                        .map(|u| (u.address.as_str(), u.name.as_str()))
                        .collect()
                })
                .unwrap_or_default();
            if let Some(n) = now {
                for (u, _) in &n.1 .1 {
                    if !addresses.iter().any(|a| a.0 == u.address) {
                        addresses.push((&u.address, &u.name));
                    }
                }
            }
            for (j, (address, uname)) in addresses.iter().enumerate() {
                if j > 0 {
                    o.push(',');
                }
                let mut pts: Vec<Option<UpstreamPoint>> =
                    match series.and_then(|s| s.upstreams.iter().find(|u| u.address == *address)) {
                        Some(u) => u.points.iter().skip(first).copied().collect(),
                        None => vec![None; closed],
                    };
                if open.is_some() {
                    pts.push(now.and_then(|n| {
                        n.1 .1
                            .iter()
                            .find(|(u, _)| u.address == *address)
                            .map(|x| x.1)
                    }));
                }
                let count = |f: &dyn Fn(&UpstreamPoint) -> u32| {
                    join(
                        pts.iter()
                            .map(|p| p.as_ref().map_or("null".into(), |p| f(p).to_string())),
                    )
                };
                let time = |f: fn(&UpstreamPoint) -> Option<f32>| {
                    join(pts.iter().map(|p| match p.as_ref().and_then(f) {
                        Some(ms) => format!("{ms:.1}"),
                        None => "null".into(),
                    }))
                };
                let _ = write!(
                    o,
                    "{{\"address\":{},\"name\":{},\"requests\":[{}],\"responses\":{},\"failures\":[{}],\"p50_ms\":[{}],\"p99_ms\":[{}],\"state\":[{}]}}",
                    json_str(address),
                    json_str(uname),
                    count(&|p| p.requests),
                    classes(&|c| count(&|p| p.responses[c])),
                    count(&|p| p.failures),
                    time(|p| p.p50_ms),
                    time(|p| p.p99_ms),
                    join(pts.iter().map(|p| p
                        .as_ref()
                        .map_or("null".into(), |p| format!("\"{}\"", p.state.name())))),
                );
            }
            o.push_str("]}");
        }
        o.push_str("],\"events\":[");
        let events = self.events.iter().filter(|e| e.seen_unix_ms >= since);
        for (i, e) in events.enumerate() {
            if i > 0 {
                o.push(',');
            }
            let _ = write!(
                o,
                "{{\"unix_ms\":{},\"pool\":{},\"address\":{},\"state\":\"{}\",\"by\":{},\"reason\":{}}}",
                e.unix_ms,
                json_str(&e.pool),
                json_str(&e.address),
                e.state.name(),
                if e.by.is_empty() {
                    "null".to_string()
                } else {
                    format!("\"{}\"", e.by)
                },
                json_str(&e.reason),
            );
        }
        o.push_str("]}");
        o
    }
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(",")
}

/// `{"1xx":[…],…,"5xx":[…]}`, each class's values from `values(class index)`.
fn classes(values: &dyn Fn(usize) -> String) -> String {
    let parts: Vec<String> = (0..5)
        .map(|c| format!("\"{}xx\":[{}]", c + 1, values(c)))
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// A 10 s count as the upstream series keep it.
fn small(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Local answers that were 5xx, of `local` (by `LOCAL_CODES` index).
fn local_5xx(local: &[u64]) -> u64 {
    LOCAL_CODES
        .iter()
        .zip(local)
        .filter(|(c, _)| **c >= 500)
        .map(|(_, n)| n)
        .sum()
}

fn client_point(now: &View, base: &View) -> ClientPoint {
    // Per pool, so that a pool a reload removed does not hide the others' counts.
    let rate_limited = now
        .pools
        .iter()
        .map(|p| {
            let before = base.pools.iter().find(|b| b.name == p.name);
            p.rate_limited
                .saturating_sub(before.map_or(0, |b| b.rate_limited))
        })
        .sum();
    ClientPoint {
        requests: now.requests.saturating_sub(base.requests),
        connections: now.accepted.saturating_sub(base.accepted),
        rate_limited,
        local: now
            .local
            .iter()
            .sum::<u64>()
            .saturating_sub(base.local.iter().sum()),
        local_5xx: local_5xx(&now.local).saturating_sub(local_5xx(&base.local)),
    }
}

/// A pool's point and its upstreams', from the pool in `base` of the same name (counted from
/// zero when it is new: its counters started with it).
fn pool_point<'a>(p: &'a super::view::PoolView, base: &View) -> PoolReading<'a> {
    let before = base.pools.iter().find(|b| b.name == p.name);
    let mut point = PoolPoint {
        local_5xx: p
            .local_5xx
            .saturating_sub(before.map_or(0, |b| b.local_5xx)),
        rate_limited: p
            .rate_limited
            .saturating_sub(before.map_or(0, |b| b.rate_limited)),
        ..PoolPoint::default()
    };
    let by_address: HashMap<&str, &UpstreamView> = before
        .map(|b| {
            b.upstreams
                .iter()
                .map(|u| (u.address.as_str(), u))
                .collect()
        })
        .unwrap_or_default();
    let ups = p
        .upstreams
        .iter()
        .map(|u| {
            let b = by_address.get(u.address.as_str());
            let requests = u.requests.saturating_sub(b.map_or(0, |b| b.requests));
            let mut responses = [0u64; 5];
            for (c, n) in responses.iter_mut().enumerate() {
                *n = u.responses[c].saturating_sub(b.map_or(0, |b| b.responses[c]));
                point.responses[c] += *n;
            }
            let h = match b {
                Some(b) => u.histogram.since(&b.histogram),
                None => u.histogram.clone(),
            };
            point.requests += requests;
            (
                u,
                UpstreamPoint {
                    requests: small(requests),
                    responses: responses.map(small),
                    failures: small(
                        u.connect_failures
                            .saturating_sub(b.map_or(0, |b| b.connect_failures)),
                    ),
                    p50_ms: h.quantile_ms(0.5).map(|ms| ms as f32),
                    p99_ms: h.quantile_ms(0.99).map(|ms| ms as f32),
                    state: UpState::of(u),
                },
            )
        })
        .collect();
    (point, ups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::view::sample;
    use crate::upstream::{ChangedBy, LastChange};

    const T0: u64 = 1_000_000;

    /// `sample()` with every upstream up.
    fn all_up() -> View {
        let mut v = sample();
        for p in &mut v.pools {
            for u in &mut p.upstreams {
                u.up = true;
            }
        }
        v
    }

    /// A history that read `all_up()` at `T0`, and that view.
    fn started() -> (History, View) {
        let mut h = History::default();
        let v = all_up();
        h.observe(&v, T0);
        (h, v)
    }

    /// A change as an upstream records it.
    fn change(up: bool, by: ChangedBy, reason: &str, unix_ms: u64) -> LastChange {
        LastChange {
            up,
            by,
            reason: reason.into(),
            unix_ms,
        }
    }

    fn count(json: &str, what: &str) -> usize {
        json.matches(what).count()
    }

    #[test]
    fn a_bucket_holds_what_changed_and_the_open_one_is_read_when_asked() {
        let mut h = History::default();
        let v0 = all_up();
        h.observe(&v0, T0 + 300);
        let mut v1 = v0.clone();
        v1.requests += 30;
        v1.accepted += 3;
        let at_502 = LOCAL_CODES.iter().position(|&c| c == 502).unwrap();
        v1.local[at_502] += 2;
        v1.pools[0].local_5xx += 2;
        let u = &mut v1.pools[0].upstreams[0];
        u.requests += 30;
        u.responses[1] += 25;
        u.responses[4] += 5;
        h.observe(&v1, T0 + 5_000);
        assert!(h.starts.is_empty(), "the first bucket is still open");
        let j = h.json(&v1, T0 + 5_300, 0);
        assert!(j.contains(&format!(
            "\"buckets\":{{\"start_unix_ms\":[{}],\"seconds\":[5.0]}}",
            T0 + 300
        )));
        assert!(j.contains("\"clients\":{\"requests\":[30],\"connections\":[3],\"rate_limited\":[0],\"local\":[2],\"local_5xx\":[2]}"), "{j}");
        assert!(
            j.contains("{\"name\":\"web\",\"requests\":[30],\"responses\":{\"1xx\":[0],\"2xx\":[25],\"3xx\":[0],\"4xx\":[0],\"5xx\":[5]},\"local_5xx\":[2],\"rate_limited\":[0],"),
            "{j}"
        );
        assert!(
            j.contains("\"address\":\"127.0.0.1:8081\",\"name\":\"127.0.0.1:8081\",\"requests\":[30],\"responses\":{\"1xx\":[0],\"2xx\":[25],\"3xx\":[0],\"4xx\":[0],\"5xx\":[5]},\"failures\":[0],"),
            "{j}"
        );
        // The grid's mark passes: the bucket closes with what it counted (the first one, begun
        // 300 ms past a mark, at the next mark), the next is open; its length is the time its
        // counts cover, up to the reading that closed it.
        h.observe(&v1, T0 + 10_100);
        assert_eq!(
            h.starts,
            [(T0 + 300, 9_800)],
            "the first from the first reading"
        );
        let j = h.json(&v1, T0 + 12_000, 0);
        assert!(j.contains(&format!("\"start_unix_ms\":[{},{}]", T0 + 300, T0 + 10_000)));
        assert!(
            j.contains("\"requests\":[30,0],\"connections\":[3,0]"),
            "{j}"
        );
        // `since`: only the buckets from then on (what a page that has the rest asks for).
        let j = h.json(&v1, T0 + 12_000, T0 + 10_000);
        assert!(j.contains(&format!("\"start_unix_ms\":[{}]", T0 + 10_000)));
        assert!(j.contains("\"requests\":[0],\"connections\":[0]"), "{j}");
        // The open one's counts began with the reading that closed the first (at 10.1 s).
        assert!(j.contains("\"seconds\":[1.9]"), "{j}");
        // The next starts on the grid and covers from that reading to the one closing it.
        h.observe(&v1, T0 + 20_050);
        assert_eq!(h.starts.back(), Some(&(T0 + 10_000, 9_950)));
    }

    #[test]
    fn response_times_are_the_buckets_own() {
        use crate::metrics::UpstreamShard;
        let (mut h, v0) = started();
        let mut v1 = v0.clone();
        let slow = UpstreamShard::default();
        for _ in 0..10 {
            slow.response(200, 400_000);
        }
        v1.pools[0].upstreams[0].histogram.add(&slow);
        v1.pools[0].upstreams[0].responses[1] += 10;
        h.observe(&v1, T0 + 10_000);
        let j = h.json(&v1, T0 + 10_000, 0);
        // The sample's 10 responses of 3 ms came before: the bucket has only the slow ones.
        let p50 = j
            .split("\"p50_ms\":[")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|x| x.parse::<f64>().ok())
            .unwrap();
        assert!((250.0..=500.0).contains(&p50), "{p50} in {j}");
        assert!(
            j.contains("\"p99_ms\":[null,null]"),
            "the other upstream had none: {j}"
        );
    }

    #[test]
    fn state_changes_are_kept_with_what_did_them() {
        let (mut h, v0) = started();
        let down = |v: &View, by, reason: &str, unix_ms| {
            let mut v = v.clone();
            let u = &mut v.pools[0].upstreams[1];
            u.up = false;
            u.last_change = Some(change(false, by, reason, unix_ms));
            v
        };
        let v1 = down(&v0, ChangedBy::Request, "connection refused", T0 + 700);
        h.observe(&v1, T0 + 1_000);
        h.observe(&v1, T0 + 2_000);
        let mut v2 = v1.clone();
        v2.pools[0].upstreams[0].ejected_until_unix_ms = Some(T0 + 33_000);
        h.observe(&v2, T0 + 3_000);
        let j = h.json(&v2, T0 + 3_000, 0);
        assert!(j.contains("{\"unix_ms\":1000700,\"pool\":\"web\",\"address\":\"127.0.0.1:8082\",\"state\":\"down\",\"by\":\"request\",\"reason\":\"connection refused\"}"), "{j}");
        assert!(j.contains("{\"unix_ms\":1003000,\"pool\":\"web\",\"address\":\"127.0.0.1:8081\",\"state\":\"ejected\",\"by\":null,\"reason\":\"ejected by outlier detection\"}"), "{j}");
        assert_eq!(count(&j, "\"state\":\"down\""), 1, "seen once: {j}");
        assert_eq!(
            count(&j, "\"state\":[\"ejected\"]"),
            1,
            "the open bucket's state"
        );
        // A page that has seen up to 2 s asks for what came after.
        let later = h.json(&v2, T0 + 3_000, T0 + 2_500);
        assert!(!later.contains("connection refused") && later.contains("ejected"));
        // Down and up again between two looks: still an event.
        let v3 = down(
            &v2,
            ChangedBy::HealthCheck,
            "health check: timed out",
            T0 + 3_500,
        );
        h.observe(&v3, T0 + 4_000);
        let j = h.json(&v3, T0 + 4_000, T0 + 4_000);
        assert!(j.contains("{\"unix_ms\":1003500,\"pool\":\"web\",\"address\":\"127.0.0.1:8082\",\"state\":\"up\",\"by\":null,\"reason\":\"and back, between two readings a second apart\"},{\"unix_ms\":1003500,\"pool\":\"web\",\"address\":\"127.0.0.1:8082\",\"state\":\"down\",\"by\":\"health_check\",\"reason\":\"health check: timed out\"}"), "{j}");
        // Back up through a slow start, having gone down and up between two looks: the down
        // is an event too; then the ejection's and the slow start's ends say what ended.
        let mut v4 = v3.clone();
        let u = &mut v4.pools[0].upstreams[0];
        u.ejected_until_unix_ms = None;
        u.up = false;
        h.observe(&v4, T0 + 5_000);
        let mut v5 = v4.clone();
        let u = &mut v5.pools[0].upstreams[0];
        u.up = true;
        u.slow_start_left_ms = Some(30_000);
        u.last_change = Some(change(
            true,
            ChangedBy::HealthCheck,
            "health check: ok",
            T0 + 5_500,
        ));
        h.observe(&v5, T0 + 6_000);
        let mut v6 = v5.clone();
        v6.pools[0].upstreams[0].slow_start_left_ms = None;
        h.observe(&v6, T0 + 7_000);
        let j = h.json(&v6, T0 + 7_000, T0 + 4_500);
        let a = "\"address\":\"127.0.0.1:8081\"";
        for event in [
            format!("{{\"unix_ms\":1005000,\"pool\":\"web\",{a},\"state\":\"down\",\"by\":null,\"reason\":\"ejection over, still down\"}}"),
            format!("{{\"unix_ms\":1005500,\"pool\":\"web\",{a},\"state\":\"slow_start\",\"by\":\"health_check\",\"reason\":\"health check: ok\"}}"),
            format!("{{\"unix_ms\":1007000,\"pool\":\"web\",{a},\"state\":\"up\",\"by\":null,\"reason\":\"slow start over\"}}"),
        ] {
            assert!(j.contains(&event), "{event} missing from {j}");
        }
        assert_eq!(count(&j, "\"unix_ms\":"), 3, "{j}");
        // Ejected, back and ejected again within one reading: the up between, then the new
        // ejection as an ejection.
        let mut v7 = v6.clone();
        let u = &mut v7.pools[0].upstreams[0];
        u.ejected_until_unix_ms = Some(T0 + 40_000);
        h.observe(&v7, T0 + 8_000);
        let mut v8 = v7.clone();
        let u = &mut v8.pools[0].upstreams[0];
        u.ejected_until_unix_ms = Some(T0 + 60_000);
        u.last_change = Some(change(
            false,
            ChangedBy::Request,
            "3 failures in a row, ejected for 30s",
            T0 + 8_600,
        ));
        h.observe(&v8, T0 + 9_000);
        let j = h.json(&v8, T0 + 9_000, T0 + 8_500);
        assert!(j.contains(&format!("{{\"unix_ms\":1008600,\"pool\":\"web\",{a},\"state\":\"up\",\"by\":null,\"reason\":\"and back, between two readings a second apart\"}},{{\"unix_ms\":1008600,\"pool\":\"web\",{a},\"state\":\"ejected\",\"by\":\"request\",\"reason\":\"3 failures in a row, ejected for 30s\"}}")), "{j}");
    }

    #[test]
    fn an_hour_is_kept_and_no_more() {
        let mut h = History::default();
        let v = all_up();
        let mut now = T0;
        h.observe(&v, now);
        let mut v1 = v.clone();
        v1.pools[0].upstreams[1].up = false;
        h.observe(&v1, now + 1);
        for _ in 0..400 {
            now += INTERVAL_MS;
            h.observe(&v1, now);
        }
        assert_eq!(h.starts.len(), BUCKETS);
        assert_eq!(h.clients.len(), BUCKETS);
        assert!(h
            .pools
            .iter()
            .all(|p| p.points.len() == BUCKETS
                && p.upstreams.iter().all(|u| u.points.len() == BUCKETS)));
        assert!(h.events.is_empty(), "the change of an hour ago is gone");
        assert_eq!(
            h.starts.front().map(|s| s.0),
            Some(now - BUCKETS as u64 * INTERVAL_MS)
        );
    }

    #[test]
    fn upstream_series_are_capped_and_vanished_ones_age_out() {
        let mut h = History::default();
        let mut v = all_up();
        let one = v.pools[0].upstreams[0].clone();
        v.pools[0].upstreams = (0..MAX_UPSTREAM_SERIES + 50)
            .map(|i| {
                let mut u = one.clone();
                u.address = format!("10.0.{}.{}:80", i / 250, i % 250);
                u
            })
            .collect();
        v.pools.truncate(1);
        h.observe(&v, T0);
        h.observe(&v, T0 + INTERVAL_MS);
        let series: usize = h.pools.iter().map(|p| p.upstreams.len()).sum();
        assert_eq!(series, MAX_UPSTREAM_SERIES);
        // The pool goes (a reload): its series stay while the hour still shows them.
        let mut gone = v.clone();
        gone.pools.clear();
        h.observe(&gone, T0 + 2 * INTERVAL_MS);
        assert_eq!(h.pools.len(), 1);
        for i in 3..(BUCKETS as u64 + 3) {
            h.observe(&gone, T0 + i * INTERVAL_MS);
        }
        assert!(h.pools.is_empty());
    }

    #[test]
    fn a_point_is_small() {
        assert!(std::mem::size_of::<Option<UpstreamPoint>>() <= 52);
    }

    #[test]
    fn a_full_hour_of_200_upstreams_stays_a_few_megabytes() {
        let mut v = all_up();
        let one = v.pools[0].upstreams[0].clone();
        v.pools = (0..4)
            .map(|n| {
                let mut p = v.pools[0].clone();
                p.name = format!("p{n}");
                p.upstreams = (0..50)
                    .map(|m| {
                        let mut u = one.clone();
                        u.address = format!("10.0.{n}.{m}:8080");
                        u
                    })
                    .collect();
                p
            })
            .collect();
        let mut h = History::default();
        for i in 0..=BUCKETS as u64 {
            for p in &mut v.pools {
                for u in &mut p.upstreams {
                    u.requests += 1234;
                    u.responses[1] += 1200;
                    u.responses[4] += 34;
                }
            }
            h.observe(&v, T0 + i * INTERVAL_MS);
        }
        let all = h.json(&v, T0 + (BUCKETS as u64 + 1) * INTERVAL_MS, 0);
        assert_eq!(count(&all, "\"address\":"), 200);
        assert!(all.len() < 4 << 20, "{} bytes", all.len());
        let last = h.json(
            &v,
            T0 + (BUCKETS as u64 + 1) * INTERVAL_MS,
            T0 + BUCKETS as u64 * INTERVAL_MS,
        );
        assert!(last.len() < 64 << 10, "{} bytes", last.len());
        eprintln!(
            "an hour of 200 upstreams: {} bytes; since the last bucket: {} bytes",
            all.len(),
            last.len()
        );
    }
}
