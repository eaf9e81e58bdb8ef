//! Round robin over the alive upstreams: one fresh pick per request, whatever the connection.

mod common;

use common::*;

#[test]
fn new_connections_rotate_a_b_c_a() {
    let dummies = Dummies::start(3);
    let p = dummies.ports();
    let proxy = Proxy::with_upstreams(&p, &[]);
    let seen: Vec<u16> = (0..4).map(|_| get_port(proxy.addr())).collect();
    assert_eq!(seen, vec![p[0], p[1], p[2], p[0]]);
}

#[test]
fn requests_on_one_keep_alive_connection_rotate_too() {
    let dummies = Dummies::start(3);
    let p = dummies.ports();
    let proxy = Proxy::with_upstreams(&p, &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    let mut seen = Vec::new();
    for _ in 0..6 {
        client.send(b"GET / HTTP/1.1\r\nHost: test.local\r\n\r\n");
        let resp = client.read_response("GET");
        assert_eq!(resp.status, 200, "{}", show(&resp.raw));
        assert!(
            !resp.has_token("Connection", "close"),
            "{}",
            show(&resp.raw)
        );
        seen.push(hello_port(&resp.body_text()));
    }
    assert_eq!(seen, vec![p[0], p[1], p[2], p[0], p[1], p[2]]);
}

#[test]
fn two_workers_share_one_rotation() {
    let dummies = Dummies::start(3);
    let p = dummies.ports();
    let proxy = Proxy::with_upstreams(&p, &["--workers", "2"]);
    let seen: Vec<u16> = (0..4).map(|_| get_port(proxy.addr())).collect();
    assert_eq!(seen, vec![p[0], p[1], p[2], p[0]]);
}
