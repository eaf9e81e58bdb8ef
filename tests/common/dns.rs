//! A DNS server on 127.0.0.1 (UDP) whose answers and TTLs a test changes while it runs: A
//! records (AAAA is always answered empty), SRV records, or a failure mode. It shares no code
//! with the crate's resolver.

use super::lock;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsMode {
    /// From its records (NXDOMAIN for a name it has none of).
    Answer,
    /// SERVFAIL to every query.
    ServFail,
    /// No answer at all.
    Silent,
}

/// An SRV record: priority, weight, port, target.
type SrvRecord = (u16, u16, u16, String);

#[derive(Default)]
struct Zone {
    a: HashMap<String, (Vec<IpAddr>, u32)>,
    srv: HashMap<String, (Vec<SrvRecord>, u32)>,
}

struct Shared {
    zone: Mutex<Zone>,
    mode: Mutex<DnsMode>,
    stopping: AtomicBool,
    queries: AtomicUsize,
}

/// The server; it stops (its socket closes) when dropped.
pub struct DnsServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<thread::JoinHandle<()>>,
}

impl DnsServer {
    /// Start it on 127.0.0.1, an ephemeral port.
    pub fn start() -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("test DNS server: bind");
        let addr = socket.local_addr().expect("test DNS server: local_addr");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("test DNS server: timeout");
        let shared = Arc::new(Shared {
            zone: Mutex::new(Zone::default()),
            mode: Mutex::new(DnsMode::Answer),
            stopping: AtomicBool::new(false),
            queries: AtomicUsize::new(0),
        });
        let s = Arc::clone(&shared);
        let thread = thread::spawn(move || serve(&socket, &s));
        DnsServer {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `name` has these A records, with this TTL (none: the name goes away).
    pub fn set_a(&self, name: &str, ips: &[&str], ttl: u32) {
        let ips: Vec<IpAddr> = ips.iter().map(|i| i.parse().expect("an IP")).collect();
        let mut z = lock(&self.shared.zone);
        if ips.is_empty() {
            z.a.remove(&name.to_ascii_lowercase());
        } else {
            z.a.insert(name.to_ascii_lowercase(), (ips, ttl));
        }
    }

    /// `name` has these SRV records: (priority, weight, port, target).
    pub fn set_srv(&self, name: &str, records: &[(u16, u16, u16, &str)], ttl: u32) {
        let records = records
            .iter()
            .map(|&(p, w, port, t)| (p, w, port, t.to_string()))
            .collect();
        lock(&self.shared.zone)
            .srv
            .insert(name.to_ascii_lowercase(), (records, ttl));
    }

    /// Answer from now on as `mode` says.
    pub fn set_mode(&self, mode: DnsMode) {
        *lock(&self.shared.mode) = mode;
    }

    /// Queries received so far.
    pub fn queries(&self) -> usize {
        self.shared.queries.load(Ordering::SeqCst)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(socket: &UdpSocket, shared: &Shared) {
    let mut buf = [0u8; 1500];
    while !shared.stopping.load(Ordering::SeqCst) {
        let Ok((n, peer)) = socket.recv_from(&mut buf) else {
            continue;
        };
        shared.queries.fetch_add(1, Ordering::SeqCst);
        let mode = *lock(&shared.mode);
        if mode == DnsMode::Silent {
            continue;
        }
        if let Some(answer) = answer(&buf[..n], shared, mode) {
            let _ = socket.send_to(&answer, peer);
        }
    }
}

/// The answer to `q`, or `None` for something that is not a query of one question.
fn answer(q: &[u8], shared: &Shared, mode: DnsMode) -> Option<Vec<u8>> {
    if q.len() < 12 || q[4..6] != [0, 1] {
        return None;
    }
    // The question: labels, then type and class.
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*q.get(at)?, *q.get(at + 1)?]);
    let question_end = at + 4;
    let name = labels.join(".");
    let mut out = q.get(..question_end)?.to_vec();
    out[2] = 0x81; // QR, RD
    out[3] = 0x80; // RA
    out[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
    if mode == DnsMode::ServFail {
        out[3] |= 2;
        return Some(out);
    }
    let zone = lock(&shared.zone);
    let mut records: Vec<(u16, u32, Vec<u8>)> = Vec::new();
    let known = zone.a.contains_key(&name) || zone.srv.contains_key(&name);
    match qtype {
        1 => {
            if let Some((ips, ttl)) = zone.a.get(&name) {
                for ip in ips {
                    if let IpAddr::V4(v4) = ip {
                        records.push((1, *ttl, v4.octets().to_vec()));
                    }
                }
            }
        }
        33 => {
            if let Some((srv, ttl)) = zone.srv.get(&name) {
                for (p, w, port, target) in srv {
                    let mut data = Vec::new();
                    for v in [*p, *w, *port] {
                        data.extend_from_slice(&v.to_be_bytes());
                    }
                    for l in target.split('.').filter(|l| !l.is_empty()) {
                        data.push(l.len() as u8);
                        data.extend_from_slice(l.as_bytes());
                    }
                    data.push(0);
                    records.push((33, *ttl, data));
                }
            }
        }
        _ => {}
    }
    if !known {
        out[3] |= 3; // NXDOMAIN
        return Some(out);
    }
    out[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
    for (t, ttl, data) in records {
        out.extend_from_slice(&[0xc0, 12]);
        out.extend_from_slice(&t.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    Some(out)
}
