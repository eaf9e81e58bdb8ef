//! The idle upstream connections of one worker, and the identity of every upstream socket.
//!
//! Every upstream socket gets an id here when it is opened; its mio token is derived from that
//! id and never changes, so a connection moves between a session and the idle list without an
//! `epoll_ctl`. Idle connections stay registered: any readiness on one (the upstream closed it,
//! or sent stray bytes) evicts it. No lock: each worker has its own pool.

use crate::clock::Tick;
use mio::net::TcpStream;
use mio::Registry;
use slab::Slab;
use std::collections::HashMap;
use std::net::IpAddr;

/// Who holds an upstream socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The session with this slab key is using it.
    Session(usize),
    /// It waits in the idle list of this upstream id (and this client's, for a connection
    /// that carries a PROXY header; see [`ConnPool::take`]).
    Idle(usize, Option<IpAddr>),
}

/// One idle connection.
#[derive(Debug)]
struct Idle {
    /// The socket id (its token's source).
    id: usize,
    /// The socket, still registered.
    stream: TcpStream,
    /// Its TLS session, for a pool with `tls = true`.
    tls: Option<Box<rustls::ClientConnection>>,
    /// After this it is closed rather than reused.
    expires: Tick,
    /// Requests already sent on it.
    requests: u32,
}

/// A connection handed out by [`ConnPool::take`].
#[derive(Debug)]
pub struct Reused {
    /// The socket id.
    pub id: usize,
    /// The socket, registered under the id's token.
    pub stream: TcpStream,
    /// Its TLS session, for a pool with `tls = true`.
    pub tls: Option<Box<rustls::ClientConnection>>,
    /// Requests already sent on it.
    pub requests: u32,
}

/// Idle connections per upstream, and the owner of every upstream socket id.
#[derive(Debug)]
pub struct ConnPool {
    /// Socket id → owner.
    owners: Slab<Owner>,
    /// Per upstream id (`UpstreamState::id`), the idle connections, most recently used last.
    idle: Vec<Vec<Idle>>,
    /// The same for connections that sent a PROXY header (`send_proxy`), per upstream and the
    /// client address the header named: such a connection serves that client only. (The
    /// header's port is that of the client connection that opened it; a later connection of
    /// the same client reuses it, so pooling still saves connects.) Empty lists are removed,
    /// so the map holds at most `max_idle` entries.
    tagged: HashMap<(usize, IpAddr), Vec<Idle>>,
    /// Idle connections held, all upstreams together.
    idle_total: usize,
    /// Most idle connections kept, all upstreams together: this worker's share of
    /// `--upstream-idle`.
    max_idle: usize,
    /// Most requests sent on one connection before it is closed.
    max_requests: u32,
    /// Connections handed out from the idle lists (for the reuse share).
    pub reused: u64,
    /// Connections opened fresh.
    pub opened: u64,
}

impl ConnPool {
    /// A pool keeping at most `max_idle` idle connections in all, each for at most
    /// `max_requests` requests.
    pub fn new(max_idle: usize, max_requests: u32) -> Self {
        ConnPool {
            owners: Slab::new(),
            idle: Vec::new(),
            tagged: HashMap::new(),
            idle_total: 0,
            max_idle,
            max_requests,
            reused: 0,
            opened: 0,
        }
    }

    /// Most requests sent on one connection from now on (a reload changed it): a pooled
    /// connection past it closes when its current request ends.
    pub fn set_max_requests(&mut self, max_requests: u32) {
        self.max_requests = max_requests;
    }

    /// Most idle connections this pool keeps (0: pooling is off).
    pub fn max_idle(&self) -> usize {
        self.max_idle
    }

    /// An id for a socket `session` is about to open.
    pub fn open(&mut self, session: usize) -> usize {
        self.opened += 1;
        self.owners.insert(Owner::Session(session))
    }

    /// Who holds socket `id`.
    pub fn owner(&self, id: usize) -> Option<Owner> {
        self.owners.get(id).copied()
    }

    /// Forget socket `id` (its owner closed it).
    pub fn closed(&mut self, id: usize) {
        if self.owners.contains(id) {
            self.owners.remove(id);
        }
    }

    /// The most recently used idle connection to `upstream` that has not expired, for
    /// `session`; with a `tag` (the client a PROXY header names), one that sent it.
    pub fn take(
        &mut self,
        upstream: usize,
        tag: Option<IpAddr>,
        session: usize,
        now: Tick,
        registry: &Registry,
    ) -> Option<Reused> {
        let list = match tag {
            None => self.idle.get_mut(upstream)?,
            Some(ip) => self.tagged.get_mut(&(upstream, ip))?,
        };
        let mut found = None;
        while let Some(mut c) = list.pop() {
            self.idle_total -= 1;
            if now >= c.expires {
                let _ = registry.deregister(&mut c.stream);
                if self.owners.contains(c.id) {
                    self.owners.remove(c.id);
                }
                continue;
            }
            if let Some(o) = self.owners.get_mut(c.id) {
                *o = Owner::Session(session);
            }
            self.reused += 1;
            found = Some(Reused {
                id: c.id,
                stream: c.stream,
                tls: c.tls,
                requests: c.requests,
            });
            break;
        }
        if let Some(ip) = tag {
            self.drop_if_empty(upstream, ip);
        }
        found
    }

    /// Remove the tagged list of (`upstream`, `ip`) when it is empty.
    fn drop_if_empty(&mut self, upstream: usize, ip: IpAddr) {
        if self.tagged.get(&(upstream, ip)).is_some_and(Vec::is_empty) {
            self.tagged.remove(&(upstream, ip));
        }
    }

    /// The idle list of `upstream` for `tag`, if there is one.
    fn list_mut(&mut self, upstream: usize, tag: Option<IpAddr>) -> Option<&mut Vec<Idle>> {
        match tag {
            None => self.idle.get_mut(upstream),
            Some(ip) => self.tagged.get_mut(&(upstream, ip)),
        }
    }

    /// Offer a connection back after a complete exchange, to be kept until `expires`. It is
    /// kept unless the list is full or it has served `max_requests`; otherwise it is closed here.
    #[allow(clippy::too_many_arguments)]
    pub fn put(
        &mut self,
        upstream: usize,
        tag: Option<IpAddr>,
        id: usize,
        (mut stream, tls): (TcpStream, Option<Box<rustls::ClientConnection>>),
        requests: u32,
        expires: Tick,
        registry: &Registry,
    ) {
        // A full budget closes the connection offered rather than an older one: under a load
        // that fills the budget, every connection would otherwise be closed just the same, a
        // little later.
        let keep = requests < self.max_requests
            && self.idle_total < self.max_idle
            && upstream < crate::upstream::MAX_UPSTREAMS;
        if keep {
            match tag {
                None if upstream >= self.idle.len() => {
                    self.idle.resize_with(upstream + 1, Vec::new);
                }
                Some(ip) => {
                    self.tagged.entry((upstream, ip)).or_default();
                }
                None => {}
            }
        }
        match self.list_mut(upstream, tag) {
            Some(list) if keep => {
                list.push(Idle {
                    id,
                    stream,
                    tls,
                    expires,
                    requests,
                });
                self.idle_total += 1;
                if let Some(o) = self.owners.get_mut(id) {
                    *o = Owner::Idle(upstream, tag);
                }
            }
            _ => {
                let _ = registry.deregister(&mut stream);
                self.closed(id);
            }
        }
    }

    /// Readiness reported for idle connection `id`. An idle connection has nothing to say, so
    /// an EOF, an error or bytes waiting mean it can't be reused. But the sockets are
    /// edge-triggered for both directions: a writable edge (the ACK of the last request) or a
    /// readable edge for bytes the last exchange already read (or spliced) arrive after the
    /// connection went idle, and evicting on those closed half the pool under load. So only a
    /// readable or error event counts, and a peek confirms it.
    pub fn on_idle_event(&mut self, id: usize, ev: &mio::event::Event, registry: &Registry) {
        if !(ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
            return;
        }
        if !ev.is_error() {
            let Some(Owner::Idle(upstream, tag)) = self.owner(id) else {
                return;
            };
            let idle = self.list_mut(upstream, tag);
            let conn = idle.and_then(|list| list.iter().find(|c| c.id == id));
            if conn.is_some_and(|c| is_quiet(&c.stream)) {
                return;
            }
        }
        self.evict(id, registry);
    }

    /// Idle connection `id` became readable (EOF or stray bytes): it can't be reused.
    pub fn evict(&mut self, id: usize, registry: &Registry) {
        let Some(Owner::Idle(upstream, tag)) = self.owner(id) else {
            return;
        };
        if let Some(list) = self.list_mut(upstream, tag) {
            if let Some(pos) = list.iter().position(|c| c.id == id) {
                let mut c = list.swap_remove(pos);
                self.idle_total -= 1;
                let _ = registry.deregister(&mut c.stream);
            }
        }
        if let Some(ip) = tag {
            self.drop_if_empty(upstream, ip);
        }
        self.closed(id);
    }

    /// Close every idle connection that expired by `now` (or all of them with `all`).
    pub fn sweep(&mut self, now: Tick, all: bool, registry: &Registry) {
        let mut closed = Vec::new();
        for list in self.idle.iter_mut().chain(self.tagged.values_mut()) {
            let mut i = 0;
            while i < list.len() {
                if all || now >= list[i].expires {
                    closed.push(list.swap_remove(i));
                } else {
                    i += 1;
                }
            }
        }
        self.tagged.retain(|_, list| !list.is_empty());
        for c in closed {
            self.close_idle(c, registry);
        }
    }

    /// Close the idle connections of every upstream not in `keep` (ids): after a reload that
    /// removed them.
    pub fn retain_upstreams(&mut self, keep: &[usize], registry: &Registry) {
        // A pool from DNS may have thousands of members: look them up in a set.
        let keep: std::collections::HashSet<usize> = keep.iter().copied().collect();
        let mut closed = Vec::new();
        for (id, list) in self.idle.iter_mut().enumerate() {
            if !keep.contains(&id) {
                closed.append(list);
            }
        }
        self.tagged.retain(|(id, _), list| {
            if keep.contains(id) {
                return true;
            }
            closed.append(list);
            false
        });
        for c in closed {
            self.close_idle(c, registry);
        }
    }

    /// Close an idle connection taken out of its list.
    fn close_idle(&mut self, mut c: Idle, registry: &Registry) {
        self.idle_total -= 1;
        let _ = registry.deregister(&mut c.stream);
        if self.owners.contains(c.id) {
            self.owners.remove(c.id);
        }
    }

    /// Idle connections held.
    #[cfg(test)]
    pub fn idle_count(&self) -> usize {
        self.idle_total
    }
}
/// Nothing to read on `stream`, not even an EOF: a one-byte peek would block. How an idle
/// (or about to be pooled) upstream connection is told from one with stray bytes or a close.
pub fn is_quiet(stream: &TcpStream) -> bool {
    matches!(stream.peek(&mut [0; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A connected loopback socket, registered with `poll` under an arbitrary token.
    fn socket(listener: &std::net::TcpListener, poll: &mio::Poll, id: usize) -> TcpStream {
        let std_stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        std_stream.set_nonblocking(true).unwrap();
        let mut stream = TcpStream::from_std(std_stream);
        poll.registry()
            .register(&mut stream, mio::Token(id), mio::Interest::READABLE)
            .unwrap();
        stream
    }

    #[test]
    fn the_idle_budget_is_shared_by_every_upstream() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let poll = mio::Poll::new().unwrap();
        let now = Tick::now();
        let later = now + Duration::from_secs(60);
        let mut pool = ConnPool::new(2, 100);
        let mut ids = Vec::new();
        for upstream in 0..3 {
            let id = pool.open(upstream);
            let stream = socket(&listener, &poll, id);
            pool.put(
                upstream,
                None,
                id,
                (stream, None),
                1,
                later,
                poll.registry(),
            );
            ids.push(id);
        }
        // Two kept, the third closed: the budget is for all upstreams, not each.
        assert_eq!(pool.idle_count(), 2);
        assert_eq!(pool.owner(ids[0]), Some(Owner::Idle(0, None)));
        assert_eq!(pool.owner(ids[1]), Some(Owner::Idle(1, None)));
        assert_eq!(pool.owner(ids[2]), None);
        // Taking one frees room for another.
        let taken = pool
            .take(1, None, 9, now, poll.registry())
            .expect("one idle to upstream 1");
        assert_eq!(pool.idle_count(), 1);
        assert_eq!(pool.owner(taken.id), Some(Owner::Session(9)));
        pool.put(
            1,
            None,
            taken.id,
            (taken.stream, None),
            taken.requests + 1,
            later,
            poll.registry(),
        );
        assert_eq!(pool.idle_count(), 2);
        // Expiry and eviction give budget back too.
        pool.sweep(later, false, poll.registry());
        assert_eq!(pool.idle_count(), 0);
        assert!(pool.take(0, None, 9, now, poll.registry()).is_none());
        let id = pool.open(0);
        let stream = socket(&listener, &poll, id);
        pool.put(0, None, id, (stream, None), 1, later, poll.registry());
        pool.evict(id, poll.registry());
        assert_eq!((pool.idle_count(), pool.owner(id)), (0, None));
        // Tagged connections (a PROXY header sent) serve their own client only.
        let id = pool.open(0);
        let stream = socket(&listener, &poll, id);
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        pool.put(
            0,
            Some(client),
            id,
            (stream, None),
            1,
            later,
            poll.registry(),
        );
        assert!(pool.take(0, Some(other), 9, now, poll.registry()).is_none());
        assert!(pool.take(0, None, 9, now, poll.registry()).is_none());
        assert_eq!(
            pool.take(0, Some(client), 9, now, poll.registry())
                .map(|r| r.id),
            Some(id)
        );
        // A budget of 0 keeps nothing.
        let mut off = ConnPool::new(0, 100);
        let id = off.open(0);
        let stream = socket(&listener, &poll, id);
        off.put(0, None, id, (stream, None), 1, later, poll.registry());
        assert_eq!((off.idle_count(), off.max_idle()), (0, 0));
    }
}
