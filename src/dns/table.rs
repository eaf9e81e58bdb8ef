//! The names the pools use (`resolve = true` hosts, `discover = "srv:…"` names) and what each
//! resolved to last: one table for the process, carried from snapshot to snapshot. The
//! resolver thread writes it; a snapshot reads the members out of it; the admin pages show it.

use crate::config::{Address, PoolSpec, UpstreamSpec};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Most names in the table: a bound whatever the configuration says.
pub const MAX_NAMES: usize = 4096;

/// What is looked up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// A and AAAA of a host.
    Host(String),
    /// SRV records of a name, then their targets' addresses.
    Srv(String),
}

impl Key {
    /// The name, as the metrics label it.
    pub fn name(&self) -> &str {
        match self {
            Key::Host(n) | Key::Srv(n) => n,
        }
    }
}

/// One SRV target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvMember {
    /// The target host, and its port.
    pub host: String,
    pub port: u16,
    /// RFC 2782's weight and priority.
    pub weight: u16,
    pub priority: u16,
    /// Its addresses.
    pub addrs: Vec<IpAddr>,
}

/// What a name resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Addrs(Vec<IpAddr>),
    Srv(Vec<SrvMember>),
}

impl Found {
    /// No member comes of it.
    pub fn is_empty(&self) -> bool {
        match self {
            Found::Addrs(a) => a.is_empty(),
            Found::Srv(s) => s.iter().all(|t| t.addrs.is_empty()),
        }
    }

    /// This and `other` together (what is still leaving after two changes in a row).
    pub fn merged(self, other: Found) -> Found {
        match (self, other) {
            (Found::Addrs(mut a), Found::Addrs(b)) => {
                a.extend(b);
                a.sort_unstable();
                a.dedup();
                Found::Addrs(a)
            }
            (Found::Srv(mut a), Found::Srv(b)) => {
                a.extend(b.into_iter().filter(|t| !a.contains(t)).collect::<Vec<_>>());
                Found::Srv(a)
            }
            (a, _) => a,
        }
    }

    /// Every address, SRV targets' included, once each.
    pub fn addrs(&self) -> Vec<IpAddr> {
        let mut all: Vec<IpAddr> = match self {
            Found::Addrs(a) => a.clone(),
            Found::Srv(s) => s.iter().flat_map(|t| t.addrs.iter().copied()).collect(),
        };
        all.sort_unstable();
        all.dedup();
        all
    }
}

/// One name's state.
#[derive(Debug)]
pub struct Entry {
    pub key: Key,
    /// Lookups that gave a usable answer, and those that did not.
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    /// When it last resolved (Unix ms; 0: never).
    pub last_success_unix_ms: AtomicU64,
    state: Mutex<EntryState>,
}

/// What a name's lookups found, and when to look again.
#[derive(Debug, Clone)]
pub struct EntryState {
    /// The last good answer (empty until the first).
    pub found: Found,
    /// Members of the previous answer that are still listed while the new ones have their
    /// first health check (so that the pool never goes empty in between).
    pub leaving: Option<Found>,
    /// The answer's TTL (seconds; `None` from /etc/hosts).
    pub ttl: Option<u32>,
    /// When to look it up next (`None`: at once).
    pub next: Option<Instant>,
    /// Why the lookups fail, during an outage (logged once when it starts).
    pub failing: Option<String>,
}

impl Entry {
    fn new(key: Key) -> Entry {
        let found = match key {
            Key::Host(_) => Found::Addrs(Vec::new()),
            Key::Srv(_) => Found::Srv(Vec::new()),
        };
        Entry {
            key,
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_success_unix_ms: AtomicU64::new(0),
            state: Mutex::new(EntryState {
                found,
                leaving: None,
                ttl: None,
                next: None,
                failing: None,
            }),
        }
    }

    /// Its state, to read or change.
    pub fn state(&self) -> MutexGuard<'_, EntryState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the members come from now: the answer, and what is still leaving.
    pub fn members(&self) -> (Found, Option<Found>) {
        let st = self.state();
        (st.found.clone(), st.leaving.clone())
    }

    /// Count a lookup.
    pub fn counted(&self, ok: bool) {
        if ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
            self.last_success_unix_ms
                .store(crate::clock::unix_ms(), Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The table.
#[derive(Debug, Default)]
pub struct Names {
    entries: Mutex<Vec<Arc<Entry>>>,
}

impl Names {
    fn lock(&self) -> MutexGuard<'_, Vec<Arc<Entry>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry of `key`, if the table has it.
    pub fn get(&self, key: &Key) -> Option<Arc<Entry>> {
        self.lock().iter().find(|e| &e.key == key).cloned()
    }

    /// Make the entries of `wanted` the table lacks (due at once), and with `drop_others`
    /// drop the entries `wanted` does not list. Returns the entries made, and a message per
    /// name refused past [`MAX_NAMES`].
    pub fn follow(&self, wanted: &[Key], drop_others: bool) -> (Vec<Arc<Entry>>, Vec<String>) {
        let mut all = self.lock();
        if drop_others {
            all.retain(|e| wanted.contains(&e.key));
        }
        let mut made = Vec::new();
        let mut refused = Vec::new();
        for k in wanted {
            if all.iter().any(|e| &e.key == k) {
                continue;
            }
            if all.len() >= MAX_NAMES {
                refused.push(format!(
                    "DNS: more than {MAX_NAMES} names: '{}' is not looked up",
                    k.name()
                ));
                continue;
            }
            let e = Arc::new(Entry::new(k.clone()));
            all.push(Arc::clone(&e));
            made.push(e);
        }
        (made, refused)
    }

    /// Every entry, in the order they were added.
    pub fn all(&self) -> Vec<Arc<Entry>> {
        self.lock().clone()
    }
}

/// The names `cfg`'s pools look up.
pub fn wanted(cfg: &crate::config::Config) -> Vec<Key> {
    let mut keys = Vec::new();
    for p in &cfg.pools {
        let these = p
            .names
            .iter()
            .map(|n| Key::Host(n.host.clone()))
            .chain(p.discover.iter().map(|d| Key::Srv(d.name.clone())));
        for k in these {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    keys
}

/// The members pool `spec` gets from `names` now, after its static upstreams: each address of
/// each `resolve = true` name (with that entry's weight, backup and cap), each address of each
/// SRV target (weight from the record, 1 to 1000; targets of a priority after the lowest are
/// backups). An address already a member is not added twice.
pub fn members(spec: &PoolSpec, names: &Names) -> Vec<UpstreamSpec> {
    let mut out: Vec<UpstreamSpec> = Vec::new();
    let taken = |out: &Vec<UpstreamSpec>, a: SocketAddr| {
        spec.upstreams
            .iter()
            .chain(out.iter())
            .any(|u| u.address.addr == a)
    };
    for n in &spec.names {
        let Some(entry) = names.get(&Key::Host(n.host.clone())) else {
            continue;
        };
        let (found, leaving) = entry.members();
        let mut addrs = found.addrs();
        addrs.extend(leaving.map(|l| l.addrs()).unwrap_or_default());
        for ip in addrs {
            let addr = SocketAddr::new(ip, n.port);
            if taken(&out, addr) {
                continue;
            }
            out.push(UpstreamSpec {
                address: Address {
                    name: n.name.clone(),
                    addr,
                },
                weight: n.weight,
                backup: n.backup,
                max_conns: n.max_conns,
            });
        }
    }
    if let Some(d) = &spec.discover {
        if let Some(entry) = names.get(&Key::Srv(d.name.clone())) {
            let (found, leaving) = entry.members();
            let mut targets = Vec::new();
            for f in std::iter::once(found).chain(leaving) {
                if let Found::Srv(t) = f {
                    targets.extend(t);
                }
            }
            let first = targets
                .iter()
                .filter(|t| !t.addrs.is_empty())
                .map(|t| t.priority)
                .min()
                .unwrap_or(0);
            for t in &targets {
                for &ip in &t.addrs {
                    let addr = SocketAddr::new(ip, t.port);
                    if taken(&out, addr) {
                        continue;
                    }
                    out.push(UpstreamSpec {
                        address: Address {
                            name: format!("{}:{}", t.host, t.port),
                            addr,
                        },
                        weight: u32::from(t.weight).clamp(1, 1000),
                        backup: t.priority > first,
                        max_conns: None,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_follows_the_names_wanted() {
        let t = Names::default();
        let (made, _) = t.follow(&[Key::Host("a".into()), Key::Srv("s".into())], true);
        assert_eq!(made.len(), 2);
        let a = t.get(&Key::Host("a".into())).unwrap();
        a.state().found = Found::Addrs(vec![IpAddr::from([10, 0, 0, 1])]);
        let (made, _) = t.follow(&[Key::Host("a".into()), Key::Host("b".into())], true);
        assert_eq!(made.len(), 1, "b only: a keeps its entry and answer");
        assert!(t.get(&Key::Srv("s".into())).is_none());
        assert!(Arc::ptr_eq(&a, &t.get(&Key::Host("a".into())).unwrap()));
        assert_eq!(a.members().0.addrs(), vec![IpAddr::from([10, 0, 0, 1])]);
    }
}
