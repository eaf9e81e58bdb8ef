//! WebSocket upgrades: forwarded with `Connection: upgrade` + `Upgrade: websocket`, then a raw
//! two-way tunnel once the upstream has answered 101.

mod common;

use common::*;
use std::io::Write;
use std::net::Shutdown;
use std::thread;

#[test]
fn upgrade_opens_a_tunnel_that_carries_bytes_both_ways() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(UPGRADE_REQUEST);
    let resp = client.read_response("GET");
    assert_eq!(resp.status, 101, "{}", show(&resp.raw));
    assert!(
        resp.has_token("Upgrade", "websocket"),
        "{}",
        show(&resp.raw)
    );
    assert!(
        resp.has_token("Connection", "upgrade"),
        "{}",
        show(&resp.raw)
    );

    client.send(b"hello tunnel");
    assert_eq!(client.read_bytes(12), b"hello tunnel");

    // Far more than any socket buffer, written while reading, so both directions stream.
    let data: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut writer = client
        .stream()
        .try_clone()
        .expect("clone the client socket");
    let sent = data.clone();
    let sender = thread::spawn(move || writer.write_all(&sent));
    let echoed = client.read_bytes(data.len());
    sender
        .join()
        .expect("writer thread")
        .expect("write into the tunnel");
    assert!(echoed == data, "the tunnel altered the bytes");

    // Closing our side ends the tunnel.
    let _ = client.stream().shutdown(Shutdown::Write);
    client.expect_close(IO_TIMEOUT);
}

#[test]
fn upgrade_request_is_forwarded_byte_exact() {
    let backend = RawBackend::start(|_| {
        Reply::UpgradeEcho(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
                .to_vec(),
        )
    });
    let proxy = Proxy::with_upstreams(&[backend.port()], &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(UPGRADE_REQUEST);
    let resp = client.read_response("GET");
    assert_eq!(resp.status, 101, "{}", show(&resp.raw));
    assert_eq!(
        resp.header("Sec-WebSocket-Accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );

    let expected_head = b"GET /ws HTTP/1.1\r\nHost: t\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
        X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: t\r\n\
        Connection: upgrade\r\nUpgrade: websocket\r\n\r\n";
    let requests = backend.wait_requests(1, IO_TIMEOUT);
    assert_bytes_eq(&requests[0], expected_head, "forwarded upgrade request");

    client.send(b"ping");
    assert_eq!(client.read_bytes(4), b"ping");
    let connections = backend.connections();
    let tunnel = connections.iter().find(|c| c.starts_with(b"GET /ws"));
    assert!(
        tunnel.is_some_and(|c| c.ends_with(b"\r\n\r\nping")),
        "the backend should have received the head then `ping`: {connections:?}"
    );
}
