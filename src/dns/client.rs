//! A blocking stub resolver for the resolver thread and `--check`: A and AAAA of a name (after
//! /etc/hosts, with resolv.conf's `search` and `ndots`), SRV records and their targets'
//! addresses. Queries go over UDP to each server in turn, over TCP when an answer is
//! truncated; each waits at most the configured timeout. Never called on a worker.

use super::wire::{self, Answer, Srv, WireError};
use crate::config::DnsSpec;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// Why a lookup found nothing usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// No server answered in time.
    Timeout,
    /// The servers answered with an error (SERVFAIL, REFUSED, a malformed answer, ...).
    Server(String),
    /// The name does not exist, or has no address (or no SRV record).
    NoAnswer,
    /// No server to ask (an empty resolv.conf), or a socket could not be made.
    Local(String),
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::Timeout => f.write_str("no answer in time"),
            LookupError::Server(why) => f.write_str(why),
            LookupError::NoAnswer => f.write_str("no address"),
            LookupError::Local(why) => f.write_str(why),
        }
    }
}

/// The addresses of a name and for how long they hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addrs {
    pub addrs: Vec<IpAddr>,
    /// Seconds; `None` when they came from /etc/hosts.
    pub ttl: Option<u32>,
}

/// An SRV target with its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub srv: Srv,
    pub addrs: Vec<IpAddr>,
}

/// The stub resolver's settings.
#[derive(Debug, Clone)]
pub struct Resolver {
    servers: Vec<SocketAddr>,
    timeout: Duration,
    search: Vec<String>,
    ndots: usize,
    hosts: std::path::PathBuf,
}

/// What /etc/resolv.conf says.
#[derive(Debug, Default, PartialEq, Eq)]
struct ResolvConf {
    servers: Vec<SocketAddr>,
    search: Vec<String>,
    ndots: Option<usize>,
}

fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut conf = ResolvConf::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                // A zone index (fe80::1%eth0) cannot be parsed into an IpAddr: skipped.
                if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) {
                    conf.servers.push(SocketAddr::new(ip, 53));
                }
            }
            Some("search") | Some("domain") => {
                conf.search = words
                    .filter_map(|w| crate::config::parse_dns_name(w).ok())
                    .take(6)
                    .collect();
            }
            Some("options") => {
                for o in words {
                    if let Some(n) = o.strip_prefix("ndots:").and_then(|n| n.parse().ok()) {
                        conf.ndots = Some(std::cmp::min(n, 15));
                    }
                }
            }
            _ => {}
        }
    }
    conf
}

impl Resolver {
    /// A resolver for `spec`: its servers, else resolv.conf's (its `search` and `ndots` in
    /// any case).
    pub fn new(spec: &DnsSpec) -> Resolver {
        Resolver::with_files(spec, "/etc/resolv.conf", "/etc/hosts")
    }

    fn with_files(spec: &DnsSpec, resolv_conf: &str, hosts: &str) -> Resolver {
        let conf = parse_resolv_conf(&std::fs::read_to_string(resolv_conf).unwrap_or_default());
        let servers = if spec.servers.is_empty() {
            conf.servers
        } else {
            spec.servers.clone()
        };
        Resolver {
            servers,
            timeout: spec.timeout,
            search: conf.search,
            ndots: conf.ndots.unwrap_or(1),
            hosts: hosts.into(),
        }
    }

    /// The A and AAAA addresses of `host` (/etc/hosts first).
    pub fn addrs(&self, host: &str) -> Result<Addrs, LookupError> {
        if let Some(addrs) = self.in_hosts_file(host) {
            return Ok(Addrs { addrs, ttl: None });
        }
        for name in self.candidates(host) {
            match self.addrs_of(&name) {
                Ok(found) => return Ok(found),
                // The next search domain may have it.
                Err(LookupError::NoAnswer) => {}
                // As glibc: a server that does not answer ends the search, so that another
                // domain's name never stands in for this one.
                Err(e) => return Err(e),
            }
        }
        Err(LookupError::NoAnswer)
    }

    /// The SRV records of `name`, each target with its addresses (from the answer's
    /// additional section, else looked up), and the least TTL of all of it.
    pub fn srv(&self, name: &str) -> Result<(Vec<Target>, Option<u32>), LookupError> {
        for candidate in self.candidates(name) {
            let answer = match self.ask(&candidate, wire::TYPE_SRV) {
                Ok(a) if !a.srv.is_empty() => a,
                Ok(_) | Err(LookupError::NoAnswer) => continue,
                Err(e) => return Err(e),
            };
            let mut ttl = answer.ttl;
            let mut targets = Vec::with_capacity(answer.srv.len());
            for srv in answer.srv {
                // "." as the target: the service is decidedly not there (RFC 2782).
                if srv.target.is_empty() {
                    continue;
                }
                let mut addrs: Vec<IpAddr> = answer
                    .extra
                    .iter()
                    .filter(|(n, _)| *n == srv.target)
                    .map(|(_, ip)| *ip)
                    .collect();
                if addrs.is_empty() {
                    match self.addrs(&format!("{}.", srv.target)) {
                        Ok(found) => {
                            if let Some(t) = found.ttl {
                                ttl = Some(ttl.map_or(t, |x| x.min(t)));
                            }
                            addrs = found.addrs;
                        }
                        // A target that does not resolve brings no member; the others do.
                        Err(LookupError::NoAnswer) => {}
                        Err(e) => return Err(e),
                    }
                }
                targets.push(Target { srv, addrs });
            }
            return Ok((targets, ttl));
        }
        Err(LookupError::NoAnswer)
    }

    /// The names to ask for `host`, in order: as glibc does, with the search domains first
    /// when the name has fewer dots than `ndots`; a name ending with a dot is taken as is.
    fn candidates(&self, host: &str) -> Vec<String> {
        if let Some(absolute) = host.strip_suffix('.') {
            return vec![absolute.to_string()];
        }
        let searched = self.search.iter().map(|d| format!("{host}.{d}"));
        if host.matches('.').count() >= self.ndots {
            std::iter::once(host.to_string()).chain(searched).collect()
        } else {
            searched.chain(std::iter::once(host.to_string())).collect()
        }
    }

    /// `host` in the hosts file, if it is there.
    fn in_hosts_file(&self, host: &str) -> Option<Vec<IpAddr>> {
        let host = host.strip_suffix('.').unwrap_or(host);
        let text = std::fs::read_to_string(&self.hosts).ok()?;
        let mut found = Vec::new();
        for line in text.lines() {
            let mut words = line.split('#').next().unwrap_or("").split_whitespace();
            let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) else {
                continue;
            };
            if words.any(|w| w.eq_ignore_ascii_case(host)) && !found.contains(&ip) {
                found.push(ip);
            }
        }
        (!found.is_empty()).then_some(found)
    }

    /// A and AAAA of exactly `name`. Either family failing (not merely empty) fails the
    /// lookup: half an answer would drain the other half's members.
    fn addrs_of(&self, name: &str) -> Result<Addrs, LookupError> {
        let mut addrs = Vec::new();
        let mut ttl: Option<u32> = None;
        for qtype in [wire::TYPE_A, wire::TYPE_AAAA] {
            match self.ask(name, qtype) {
                Ok(a) => {
                    addrs.extend_from_slice(&a.addrs);
                    if let Some(t) = a.ttl {
                        ttl = Some(ttl.map_or(t, |x| x.min(t)));
                    }
                }
                Err(LookupError::NoAnswer) => {}
                Err(e) => return Err(e),
            }
        }
        if addrs.is_empty() {
            return Err(LookupError::NoAnswer);
        }
        Ok(Addrs { addrs, ttl })
    }

    /// One question to the servers in turn, until one answers it.
    fn ask(&self, name: &str, qtype: u16) -> Result<Answer, LookupError> {
        if self.servers.is_empty() {
            return Err(LookupError::Local(
                "no DNS server (none in [dns] servers nor in /etc/resolv.conf)".to_string(),
            ));
        }
        let mut last = LookupError::Timeout;
        for &server in &self.servers {
            let id = random_id();
            let Some(bytes) = wire::query(id, name, qtype) else {
                return Err(LookupError::Local(format!("'{name}' cannot be asked")));
            };
            let q = Asked {
                bytes,
                name,
                id,
                qtype,
            };
            let answer = match exchange_udp(server, &q, self.timeout) {
                Err(Exchange::Wire(WireError::Truncated)) => exchange_tcp(server, &q, self.timeout),
                other => other,
            };
            match answer {
                Ok(a) if a.addrs.is_empty() && a.srv.is_empty() => {
                    return Err(LookupError::NoAnswer)
                }
                Ok(a) => return Ok(a),
                Err(Exchange::Wire(WireError::NoSuchName)) => return Err(LookupError::NoAnswer),
                Err(Exchange::Timeout) => last = LookupError::Timeout,
                Err(Exchange::Wire(e)) => last = LookupError::Server(format!("{server}: {e}")),
                Err(Exchange::Io(e)) => last = LookupError::Server(format!("{server}: {e}")),
            }
        }
        Err(last)
    }
}

/// How one exchange with one server ended, when not with an answer.
enum Exchange {
    Timeout,
    Wire(WireError),
    Io(std::io::Error),
}

/// A query ID nobody on the path can guess (RandomState's keys are random per process and
/// per state).
fn random_id() -> u16 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    h.finish() as u16
}

/// One question as sent: its bytes, and what the answer must match.
struct Asked<'a> {
    bytes: Vec<u8>,
    name: &'a str,
    id: u16,
    qtype: u16,
}

impl Asked<'_> {
    fn read(&self, msg: &[u8]) -> Result<Answer, WireError> {
        wire::parse(msg, self.id, self.name, self.qtype)
    }
}

/// A socket error: a timeout is one, anything else is what it is.
fn waited(e: std::io::Error) -> Exchange {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Exchange::Timeout,
        _ => Exchange::Io(e),
    }
}

fn exchange_udp(server: SocketAddr, q: &Asked<'_>, timeout: Duration) -> Result<Answer, Exchange> {
    let local: SocketAddr = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let socket = UdpSocket::bind(local).map_err(Exchange::Io)?;
    // connect(2): only the server's datagrams are received.
    socket.connect(server).map_err(Exchange::Io)?;
    socket.send(&q.bytes).map_err(Exchange::Io)?;
    let until = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Exchange::Timeout);
        }
        socket.set_read_timeout(Some(left)).map_err(Exchange::Io)?;
        let n = socket.recv(&mut buf).map_err(waited)?;
        match q.read(&buf[..n]) {
            // A stray, forged or garbled datagram: keep waiting for ours.
            Err(WireError::NotOurs | WireError::Malformed(_)) => continue,
            Err(e) => return Err(Exchange::Wire(e)),
            Ok(a) => return Ok(a),
        }
    }
}

/// The same over TCP (RFC 7766), the whole exchange within `timeout`: each read and write
/// waits only for what is left of it, so a server that trickles bytes cannot hold the
/// resolver thread.
fn exchange_tcp(server: SocketAddr, q: &Asked<'_>, timeout: Duration) -> Result<Answer, Exchange> {
    let until = Instant::now() + timeout;
    let left = || {
        let d = until.saturating_duration_since(Instant::now());
        if d.is_zero() {
            Err(Exchange::Timeout)
        } else {
            Ok(d)
        }
    };
    let mut s = TcpStream::connect_timeout(&server, left()?).map_err(waited)?;
    let mut framed = Vec::with_capacity(q.bytes.len() + 2);
    framed.extend_from_slice(&(q.bytes.len() as u16).to_be_bytes());
    framed.extend_from_slice(&q.bytes);
    s.set_write_timeout(Some(left()?)).map_err(Exchange::Io)?;
    s.write_all(&framed).map_err(waited)?;
    let mut msg = Vec::new();
    let mut want = 2;
    let mut buf = [0u8; 4096];
    while msg.len() < want {
        s.set_read_timeout(Some(left()?)).map_err(Exchange::Io)?;
        let n = s.read(&mut buf).map_err(waited)?;
        if n == 0 {
            return Err(Exchange::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        msg.extend_from_slice(&buf[..n]);
        if want == 2 && msg.len() >= 2 {
            want = 2 + u16::from_be_bytes([msg[0], msg[1]]) as usize;
        }
    }
    q.read(&msg[2..want]).map_err(Exchange::Wire)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_gives_servers_search_and_ndots() {
        let conf = parse_resolv_conf(
            "# comment\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver ::1 # v6\n\
             search svc.cluster.local cluster.local\noptions ndots:5 timeout:1\n",
        );
        assert_eq!(
            conf.servers,
            vec!["10.0.0.2:53".parse().unwrap(), "[::1]:53".parse().unwrap()]
        );
        assert_eq!(conf.search, ["svc.cluster.local", "cluster.local"]);
        assert_eq!(conf.ndots, Some(5));
    }

    #[test]
    fn search_domains_come_first_below_ndots() {
        let spec = DnsSpec {
            servers: vec!["127.0.0.1:53".parse().unwrap()],
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
        };
        let mut r = Resolver::with_files(&spec, "/nonexistent", "/nonexistent");
        r.search = vec!["svc.local".into()];
        r.ndots = 2;
        assert_eq!(r.candidates("api"), ["api.svc.local", "api"]);
        assert_eq!(r.candidates("a.b.c"), ["a.b.c", "a.b.c.svc.local"]);
        assert_eq!(r.candidates("api."), ["api"]);
        assert_eq!(
            r.servers, spec.servers,
            "[dns] servers win over resolv.conf"
        );
    }

    #[test]
    fn the_hosts_file_answers_first() {
        let dir = std::env::temp_dir().join(format!("goround-hosts-{}", std::process::id()));
        std::fs::write(
            &dir,
            "127.0.0.1 localhost\n10.1.1.1 api.test api # x\n::1 api.test\n",
        )
        .unwrap();
        let spec = DnsSpec {
            servers: Vec::new(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
        };
        let r = Resolver::with_files(&spec, "/nonexistent", dir.to_str().unwrap());
        assert_eq!(
            r.addrs("API.test"),
            Ok(Addrs {
                addrs: vec![IpAddr::from([10, 1, 1, 1]), "::1".parse().unwrap()],
                ttl: None
            })
        );
        assert!(matches!(
            r.addrs("nothere.test"),
            Err(LookupError::Local(_))
        ));
        let _ = std::fs::remove_file(dir);
    }
}
