//! A request's held body bytes are checked before anything goes upstream, even when the client
//! waits for `100 Continue` and a pooled connection is ready.

mod common;

use common::*;

#[test]
fn a_bad_chunked_body_behind_expect_continue_never_reaches_a_pooled_upstream() {
    let backend = RawBackend::fixed(&ok_response("ok"));
    let proxy = Proxy::with_upstreams(&[backend.port()], &[]);
    // A pooled connection to the backend, ready for the next request.
    assert_eq!(get(proxy.addr(), "/warm").0, 200);
    let bytes = backend.bytes_received();
    let reply = send_raw(
        proxy.addr(),
        b"POST /upload HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\
          Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    );
    assert!(reply.starts_with(b"HTTP/1.1 400 "), "{}", show(&reply));
    assert_eq!(
        backend.bytes_received(),
        bytes,
        "nothing of the bad request went upstream: {:?}",
        backend
            .requests()
            .iter()
            .map(|r| show(r))
            .collect::<Vec<_>>()
    );
}
