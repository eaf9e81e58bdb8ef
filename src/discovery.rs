//! The resolver thread: looks up again each name the pools use when its TTL runs out (never
//! more often than `[dns] interval`), and when an answer changes, publishes a snapshot with
//! the new members as a reload does. Workers never wait on DNS.
//!
//! A change is published in two steps, so that a pool never goes empty while its backends
//! move: first the new addresses join beside the old ones (new ones out of the rotation until
//! their first health check passes), then, once each new one has had that check (or its
//! timeout passed), the old ones leave. A leaving address is drained as a reload drains one:
//! no new request, those in flight finish, its idle connections close, its state is freed.
//!
//! A failed lookup keeps the last good answer, is counted, and is logged once per outage.

use crate::config::{Config, DnsSpec};
use crate::dns::table::{self, Entry, Found, Key, SrvMember};
use crate::dns::{LookupError, Names, Resolver};
use crate::snapshot::Snapshot;
use crate::state::Shared;
use log::{info, warn};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest the thread sleeps between two looks at the table (a name a reload added is
/// looked up by the reload itself; this bounds only how late the shutdown is seen).
const NAP: Duration = Duration::from_millis(200);

/// Look up, once, the names of `cfg` the table does not have yet (at start, and on a
/// reload, before the snapshot is built). Returns a warning per name that did not resolve:
/// its pool has no member from it until it does.
pub fn resolve_new(cfg: &Config, names: &Names) -> Vec<String> {
    // Nothing is dropped here: a reload may still be refused, and the names of the
    // configuration in force are the resolver thread's to let go.
    let (made, refused) = names.follow(&table::wanted(cfg), false);
    let mut warnings = refused;
    if made.is_empty() {
        return warnings;
    }
    let resolver = Resolver::new(&cfg.dns);
    for e in made {
        look_up(&e, &resolver, &cfg.dns);
        if e.members().0.is_empty() {
            let why = e
                .state()
                .failing
                .clone()
                .unwrap_or_else(|| "no address".to_string());
            warnings.push(format!(
                "DNS: '{}' does not resolve ({why}): no member from it until it does",
                e.key.name()
            ));
        }
    }
    warnings
}

/// `--check`: every name of `cfg` must resolve now, with the servers `[dns]` names.
pub fn check_names(cfg: &Config) -> Result<(), String> {
    let resolver = Resolver::new(&cfg.dns);
    for p in &cfg.pools {
        for n in &p.names {
            resolver.addrs(&n.host).map_err(|e| {
                format!(
                    "{}: upstream {}: cannot resolve '{}': {e}",
                    n.at, n.name, n.host
                )
            })?;
        }
        if let Some(d) = &p.discover {
            match resolver.srv(&d.name) {
                Ok((targets, _)) if targets.iter().any(|t| !t.addrs.is_empty()) => {}
                Ok(_) => {
                    return Err(format!(
                        "{}: discover: no SRV target of '{}' has an address",
                        d.at, d.name
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "{}: discover: cannot resolve 'srv:{}': {e}",
                        d.at, d.name
                    ))
                }
            }
        }
    }
    Ok(())
}

/// Start the resolver thread.
pub fn spawn(shared: Arc<Shared>, wakers: Arc<Vec<mio::Waker>>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("resolver".into())
        .spawn(move || run(&shared, &wakers))
        .map(|_| ())
}

fn run(shared: &Shared, wakers: &[mio::Waker]) {
    let mut resolver: Option<(DnsSpec, Resolver)> = None;
    // An answer changed and its snapshot is not out yet (a publish failed): tried again
    // every turn.
    let mut unpublished = false;
    loop {
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        let (snap, _) = shared.current();
        let dns = &snap.cfg.dns;
        if resolver.as_ref().is_none_or(|(spec, _)| spec != dns) {
            resolver = Some((dns.clone(), Resolver::new(dns)));
        }
        let Some((_, r)) = &resolver else {
            return;
        };
        {
            // Under the publishing lock: a reload in progress may have added names its
            // snapshot, not yet published, needs.
            let _no_reload_now = shared.publishing.lock().unwrap_or_else(|p| p.into_inner());
            let (current, _) = shared.current();
            current.names.follow(&table::wanted(&current.cfg), true);
        }
        let now = Instant::now();
        let mut changed = false;
        for e in snap.names.all() {
            if e.state().next.is_some_and(|t| t > now) {
                continue;
            }
            changed |= look_up(&e, r, dns);
            if shared.shutdown.load(Ordering::Acquire) {
                return;
            }
        }
        drop(snap);
        if changed || unpublished {
            unpublished = !publish_change(shared, wakers);
        }
        let next = shared
            .current()
            .0
            .names
            .all()
            .iter()
            .filter_map(|e| e.state().next)
            .min();
        let nap = next.map_or(NAP, |t| {
            t.saturating_duration_since(Instant::now()).min(NAP)
        });
        std::thread::sleep(nap.max(Duration::from_millis(1)));
    }
}

/// Look `e` up now and record the answer. True when its members changed.
fn look_up(e: &Entry, resolver: &Resolver, dns: &DnsSpec) -> bool {
    let result: Result<(Found, Option<u32>), LookupError> = match &e.key {
        Key::Host(host) => resolver.addrs(host).map(|a| {
            let mut addrs = a.addrs;
            addrs.sort_unstable();
            (Found::Addrs(addrs), a.ttl)
        }),
        Key::Srv(name) => resolver.srv(name).and_then(|(targets, ttl)| {
            let mut members: Vec<SrvMember> = targets
                .into_iter()
                .map(|t| {
                    let mut addrs = t.addrs;
                    addrs.sort_unstable();
                    SrvMember {
                        host: t.srv.target,
                        port: t.srv.port,
                        weight: t.srv.weight,
                        priority: t.srv.priority,
                        addrs,
                    }
                })
                .collect();
            members.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
            let found = Found::Srv(members);
            if found.is_empty() {
                Err(LookupError::NoAnswer)
            } else {
                Ok((found, ttl))
            }
        }),
    };
    let name = e.key.name();
    let now = Instant::now();
    let mut st = e.state();
    match result {
        Ok((found, ttl)) => {
            e.counted(true);
            if st.failing.take().is_some() {
                info!("DNS: '{name}' resolves again");
            }
            // A record's TTL wins when longer than the floor (a day at most: a name is looked
            // at again at least daily).
            let wait =
                Duration::from_secs(u64::from(ttl.unwrap_or(0)).min(86_400)).max(dns.interval);
            st.next = Some(now + wait);
            st.ttl = ttl;
            if st.found == found {
                return false;
            }
            let before = st.found.addrs();
            let after = found.addrs();
            info!(
                "DNS: '{name}' now resolves to {} (was {})",
                list(&after),
                if before.is_empty() {
                    "nothing".to_string()
                } else {
                    list(&before)
                }
            );
            let old = std::mem::replace(&mut st.found, found);
            if !old.is_empty() {
                // Two changes before the first was published whole: both sets leave.
                st.leaving = Some(match st.leaving.take() {
                    Some(earlier) => earlier.merged(old),
                    None => old,
                });
            }
            true
        }
        Err(why) => {
            e.counted(false);
            st.next = Some(now + dns.interval);
            if st.failing.is_none() {
                let kept = st.found.addrs();
                warn!(
                    "DNS: lookup of '{name}' failed: {why}; keeping {} (logged once until it \
                     resolves again)",
                    if kept.is_empty() {
                        "no address".to_string()
                    } else {
                        list(&kept)
                    }
                );
                st.failing = Some(why.to_string());
            }
            false
        }
    }
}

fn list(addrs: &[std::net::IpAddr]) -> String {
    let shown: Vec<String> = addrs.iter().take(16).map(|a| a.to_string()).collect();
    if addrs.len() > shown.len() {
        format!(
            "{} and {} more",
            shown.join(", "),
            addrs.len() - shown.len()
        )
    } else {
        shown.join(", ")
    }
}

/// Publish the table's answers: the new addresses beside the leaving ones, then, once the
/// new ones were checked, without the leaving ones. False when a snapshot could not be built
/// (logged): the leaving addresses stay listed, and the caller tries again.
fn publish_change(shared: &Shared, wakers: &[mio::Waker]) -> bool {
    let Some(snap) = republish(shared, wakers) else {
        return false;
    };
    let awaited: Vec<_> = snap
        .pools
        .iter()
        .flat_map(|p| p.members.iter())
        .filter(|m| m.discovered && m.state.is_awaiting_first_check())
        .map(|m| m.state)
        .collect();
    let longest = snap
        .cfg
        .pools
        .iter()
        .map(|p| p.health.timeout)
        .max()
        .unwrap_or_default();
    drop(snap);
    // The first check starts as soon as worker 0 takes the snapshot; its timeout bounds it.
    let until = Instant::now() + longest + Duration::from_secs(1);
    while awaited.iter().any(|s| s.is_awaiting_first_check()) && Instant::now() < until {
        if shared.shutdown.load(Ordering::Acquire) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let entries = shared.current().0.names.all();
    let taken: Vec<_> = entries
        .iter()
        .map(|e| (e, e.state().leaving.take()))
        .filter(|(_, l)| l.is_some())
        .collect();
    if taken.is_empty() || republish(shared, wakers).is_some() {
        return true;
    }
    // Not out: they are still members of the snapshot in force, and stay listed as leaving.
    for (e, leaving) in taken {
        let mut st = e.state();
        st.leaving = match (st.leaving.take(), leaving) {
            (Some(newer), Some(older)) => Some(older.merged(newer)),
            (newer, older) => newer.or(older),
        };
    }
    false
}

/// Build and publish the snapshot of the table as it is; the snapshot, or `None` (logged)
/// when it cannot be built.
fn republish(shared: &Shared, wakers: &[mio::Waker]) -> Option<Arc<Snapshot>> {
    let _one_at_a_time = shared.publishing.lock().unwrap_or_else(|p| p.into_inner());
    let (prev, _) = shared.current();
    match Snapshot::rediscovered(&shared.registry, &prev) {
        Ok(snap) => {
            let snap = Arc::new(snap);
            shared.publish(Arc::clone(&snap));
            for w in wakers {
                let _ = w.wake();
            }
            Some(snap)
        }
        Err(e) => {
            warn!("DNS: the new members cannot be used: {e}");
            None
        }
    }
}
