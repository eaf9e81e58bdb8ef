//! Many clients at once: every response right, and the rotation spreads them evenly.

mod common;

use common::*;
use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

const CLIENTS: usize = 200;
const REQUESTS_PER_CLIENT: usize = 20;

/// What one client thread saw: hello answers per dummy port, and failures.
#[derive(Default)]
struct Seen {
    by_port: HashMap<u16, usize>,
    failures: Vec<String>,
}

/// One client: connect, wait for everybody, then 20 keep-alive requests alternating a Hello
/// (counts the spread) and a `/big` of a size unique to this request (catches cross-talk).
fn client(addr: std::net::SocketAddr, id: usize, start: &Barrier) -> Seen {
    let mut seen = Seen::default();
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT);
    start.wait();
    let stream = match stream {
        Ok(s) => s,
        Err(e) => {
            seen.failures.push(format!("client {id}: connect: {e}"));
            return seen;
        }
    };
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let mut conn = ResponseReader::new(stream);
    for i in 0..REQUESTS_PER_CLIENT {
        let size = 1 + (id * REQUESTS_PER_CLIENT + i) % 3001;
        let request = if i % 2 == 0 {
            format!("GET /client/{id}/{i} HTTP/1.1\r\nHost: t\r\n\r\n")
        } else {
            format!("GET /big?bytes={size} HTTP/1.1\r\nHost: t\r\n\r\n")
        };
        let resp = match conn.try_send(request.as_bytes()) {
            Ok(()) => conn.try_read_response("GET"),
            Err(e) => Err(format!("write: {e}")),
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                seen.failures.push(format!("client {id} request {i}: {e}"));
                return seen;
            }
        };
        if resp.status != 200 {
            seen.failures
                .push(format!("client {id} request {i}: {}", show(&resp.raw)));
        } else if i % 2 == 0 {
            let body = resp.body_text();
            match body
                .strip_prefix("Hello from Server ")
                .and_then(|r| r.strip_suffix('\n'))
            {
                Some(p) => *seen.by_port.entry(p.parse().unwrap_or(0)).or_default() += 1,
                None => seen
                    .failures
                    .push(format!("client {id} request {i}: body {body:?}")),
            }
        } else if resp.body != pattern(size) {
            seen.failures.push(format!(
                "client {id} request {i}: wrong /big body of {size}"
            ));
        }
    }
    seen
}

#[test]
fn two_hundred_keep_alive_clients_all_get_right_answers_spread_evenly() {
    let dummies = Dummies::start(3);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &[]);
    let addr = proxy.addr();
    let start = Arc::new(Barrier::new(CLIENTS));
    let total = Arc::new(Mutex::new(Seen::default()));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let start = Arc::clone(&start);
            let total = Arc::clone(&total);
            thread::spawn(move || {
                let seen = client(addr, id, &start);
                let mut t = total.lock().unwrap_or_else(|e| e.into_inner());
                for (port, n) in seen.by_port {
                    *t.by_port.entry(port).or_default() += n;
                }
                t.failures.extend(seen.failures);
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let total = total.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        total.failures.is_empty(),
        "{} failures, e.g. {:?}",
        total.failures.len(),
        &total.failures[..total.failures.len().min(5)]
    );
    let hellos = CLIENTS * REQUESTS_PER_CLIENT / 2;
    let fair = hellos / 3;
    let mut ports: Vec<u16> = total.by_port.keys().copied().collect();
    ports.sort_unstable();
    let mut expected = dummies.ports();
    expected.sort_unstable();
    assert_eq!(ports, expected, "answers came from {:?}", total.by_port);
    for (port, n) in &total.by_port {
        assert!(
            n.abs_diff(fair) * 10 <= fair,
            "port {port} answered {n} of {hellos} hellos, more than 10 % off {fair}: {:?}",
            total.by_port
        );
    }
}
