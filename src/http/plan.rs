//! What the proxy does with a head, decided over the parsed head and a few facts of the
//! exchange: how a request's body is read and when its upstream is chosen, what becomes of a
//! response head (forwarded interim, upgrade, final with its framing, or refused), which side
//! stays open afterwards and how long an upstream connection may idle in the pool.
//!
//! Pure functions returning plain plans, like hyper's keep-alive state: the session carries a
//! plan out and decides nothing these can decide from the heads.

use super::chunked::Output;
use super::request::RequestInfo;
use super::response::{self, Response};
use super::rewrite::ResponseContext;
use super::{Framing, Version};
use std::time::Duration;

/// How a request body is read, as far as the head tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    /// Nothing follows the head.
    None,
    /// This many bytes follow.
    Length(u64),
    /// A chunked body follows (re-chunked cleanly towards the upstream).
    Chunked,
}

/// What to do with a complete request head before any upstream is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPlan {
    /// The body that follows the head.
    pub body: RequestBody,
    /// Read the body, and check its framing, before choosing an upstream: nothing of a bad
    /// body reaches one (`--request-buffer`).
    pub buffer_first: bool,
    /// Answer `Expect: 100-continue` ourselves, at once (and drop the field upstream).
    pub own_continue: bool,
}

/// The plan for a request head `info` under `--request-buffer` `request_buffer`.
#[inline(always)]
pub fn request(info: &RequestInfo, request_buffer: usize) -> RequestPlan {
    let body = match info.framing {
        Framing::Length(0) | Framing::None | Framing::UntilClose => RequestBody::None,
        Framing::Length(n) => RequestBody::Length(n),
        Framing::Chunked => RequestBody::Chunked,
    };
    let own_continue = answers_continue_itself(info, request_buffer);
    // A client that waits for `100 Continue` holds its body back: read it first only when we
    // answer the expectation ourselves; otherwise the upstream decides and the body streams.
    let buffer_first =
        body != RequestBody::None && request_buffer > 0 && (!info.expect_continue || own_continue);
    RequestPlan {
        body,
        buffer_first,
        own_continue,
    }
}

/// Whether the proxy answers a request's `Expect: 100-continue` itself.
///
/// The expectation exists so that a client does not send a body the server would refuse. When
/// the body is known to fit `--request-buffer` (a Content-Length within it), the proxy answers
/// `100 Continue` at once, reads the body and checks it before it connects, as nginx does with
/// its request buffering: a small body costs the client less than the round trip to an upstream
/// would, and a bad one never reaches it. A longer or chunked body (its length unknown) keeps
/// the expectation for the upstream to answer, as HAProxy does: the client then sends nothing
/// the upstream refuses, and the body streams once it is sent. Either way the proxy never waits
/// for a body the client is holding back.
#[inline(always)]
pub fn answers_continue_itself(info: &RequestInfo, request_buffer: usize) -> bool {
    info.expect_continue
        && matches!(info.framing, Framing::Length(n) if n > 0 && n <= request_buffer as u64)
}

/// How a final response's body is read from the upstream and written for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody {
    /// Nothing follows the head.
    None,
    /// This many bytes follow.
    Length(u64),
    /// A chunked body, re-chunked or de-chunked for the client.
    Chunked(Output),
    /// Everything until the upstream closes.
    UntilClose,
}

/// What the exchange knows besides the heads when a response head arrives.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeFacts {
    /// A `100 Continue` has reached the client.
    pub continue_sent: bool,
    /// The whole request body has been read from the client.
    pub request_read: bool,
    /// The proxy is stopping: no connection stays open after its exchange.
    pub stopping: bool,
    /// Idle upstream connections are pooled at all (`--upstream-idle` above 0).
    pub pooling: bool,
    /// `--upstream-idle-timeout`: the longest a pooled connection waits.
    pub upstream_idle_timeout: Duration,
}

/// A final response: how its head goes to the client, how its body moves, and what stays
/// open after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinalPlan {
    /// How the head is rewritten for the client.
    pub head: ResponseContext,
    /// How the body moves.
    pub body: ResponseBody,
    /// The client connection closes after this exchange.
    pub close_client: bool,
    /// How long the upstream connection may then wait in the idle pool; zero: close it.
    pub upstream_keep: Duration,
}

/// What to do with a response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponsePlan {
    /// An interim response (1xx but 101): forward it when `head` says so (not to an HTTP/1.0
    /// client, RFC 9110 §15.2), then wait for the next head.
    Interim {
        /// How to write it for the client; `None`: drop it.
        head: Option<ResponseContext>,
    },
    /// A 101 to the WebSocket upgrade the client asked for: forward it, then tunnel.
    Upgrade {
        /// How to write it for the client.
        head: ResponseContext,
    },
    /// A final response.
    Final(FinalPlan),
    /// The response cannot be forwarded: the client gets 502, the log this reason.
    Refuse(&'static str),
}

/// The plan for response head `resp` to request `req`.
#[inline]
pub fn response(resp: &Response<'_, '_>, req: &RequestInfo, facts: &ExchangeFacts) -> ResponsePlan {
    let plain = |framing| ResponseContext {
        framing,
        close: false,
        keep_alive_http10: false,
        upgrade: false,
        client_version: req.version,
    };
    if resp.code == 101 {
        if !req.upgrade_websocket {
            return ResponsePlan::Refuse("switched protocols unasked");
        }
        return ResponsePlan::Upgrade {
            head: ResponseContext {
                upgrade: true,
                ..plain(Framing::None)
            },
        };
    }
    if resp.code < 200 {
        let head = (req.version == Version::Http11).then(|| plain(Framing::None));
        return ResponsePlan::Interim { head };
    }
    if !response::client_can_decode(resp, req.version) {
        return ResponsePlan::Refuse("sent a transfer coding an HTTP/1.0 client cannot receive");
    }
    let framing = response::client_framing(resp.framing, req.version);
    // A request body still on its way is forwarded to its end and the connection stays
    // usable; but a client still waiting for a 100 Continue will never send its body (RFC 9110
    // §10.1.1): the connection cannot be reused.
    let body_withheld = req.expect_continue && !facts.continue_sent && !facts.request_read;
    let close_client =
        !req.keep_alive || facts.stopping || framing == Framing::UntilClose || body_withheld;
    let upstream_keep = upstream_keep(resp, facts);
    let body = match resp.framing {
        Framing::None | Framing::Length(0) => ResponseBody::None,
        Framing::Length(n) => ResponseBody::Length(n),
        Framing::Chunked if framing == Framing::Chunked => ResponseBody::Chunked(Output::Rechunk),
        Framing::Chunked => ResponseBody::Chunked(Output::Dechunk),
        Framing::UntilClose => ResponseBody::UntilClose,
    };
    ResponsePlan::Final(FinalPlan {
        head: ResponseContext {
            close: close_client,
            keep_alive_http10: !close_client && req.version == Version::Http10,
            ..plain(framing)
        },
        body,
        close_client,
        upstream_keep,
    })
}

/// How long the upstream connection of a final response may idle in the pool after it: zero
/// when the upstream closes, the body ends with the close, or nothing is pooled; else the
/// idle timeout, or a second under the upstream's own `Keep-Alive: timeout=N` when shorter, so
/// that a pooled connection is never reused just as the upstream closes it.
#[inline]
fn upstream_keep(resp: &Response<'_, '_>, facts: &ExchangeFacts) -> Duration {
    if resp.upstream_closes || resp.framing == Framing::UntilClose || !facts.pooling {
        return Duration::ZERO;
    }
    match resp.keep_alive_timeout {
        Some(s) => Duration::from_secs(s.saturating_sub(1)).min(facts.upstream_idle_timeout),
        None => facts.upstream_idle_timeout,
    }
}

/// Whether the client connection stays open after an answer of the proxy's own with `status`
/// to request `req`: only when the request was read to its end (`request_read`; nothing of it
/// is left unread), the client keeps alive, the proxy is not stopping, and the answer is not
/// about the request itself (a 4xx closes: the client may send more of what was refused).
#[inline]
pub fn keep_after_local_answer(
    status: u16,
    req: &RequestInfo,
    request_read: bool,
    stopping: bool,
) -> bool {
    request_read && req.keep_alive && !stopping && (status >= 500 || status == 404 || status == 429)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{request, Limits};

    fn info(head: &str) -> RequestInfo {
        let mut slots = [httparse::EMPTY_HEADER; 16];
        match request::parse(head.as_bytes(), &Limits::DEFAULT, &mut slots) {
            Ok(Some(r)) => r.info,
            other => panic!("{head:?}: {other:?}"),
        }
    }

    fn plan_for(req: &str, resp: &str, facts: ExchangeFacts) -> ResponsePlan {
        let req = info(req);
        let mut slots = [httparse::EMPTY_HEADER; 16];
        match response::parse(resp.as_bytes(), req.is_head, &Limits::DEFAULT, &mut slots) {
            Ok(Some(r)) => response(&r, &req, &facts),
            other => panic!("{resp:?}: {other:?}"),
        }
    }

    const FACTS: ExchangeFacts = ExchangeFacts {
        continue_sent: false,
        request_read: true,
        stopping: false,
        pooling: true,
        upstream_idle_timeout: Duration::from_secs(4),
    };
    const GET11: &str = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    const GET10: &str = "GET / HTTP/1.0\r\n\r\n";

    #[test]
    fn a_request_body_is_read_first_when_it_may_be() {
        let post = |framing: &str, expect: bool| {
            let e = if expect {
                "Expect: 100-continue\r\n"
            } else {
                ""
            };
            info(&format!(
                "POST / HTTP/1.1\r\nHost: t\r\n{e}{framing}\r\n\r\n"
            ))
        };
        let p = request(&post("Content-Length: 5", false), 65536);
        assert_eq!(
            p,
            RequestPlan {
                body: RequestBody::Length(5),
                buffer_first: true,
                own_continue: false
            }
        );
        // Within the buffer: our own 100 Continue, then the body is read first.
        let p = request(&post("Content-Length: 5", true), 65536);
        assert!(p.own_continue && p.buffer_first);
        // Past it, or of unknown length: the upstream answers the expectation, the body streams.
        let p = request(&post("Content-Length: 70000", true), 65536);
        assert!(!p.own_continue && !p.buffer_first);
        let p = request(&post("Transfer-Encoding: chunked", true), 65536);
        assert_eq!(p.body, RequestBody::Chunked);
        assert!(!p.own_continue && !p.buffer_first);
        // Without the expectation a chunked body is read first too; with no buffer, nothing is.
        assert!(request(&post("Transfer-Encoding: chunked", false), 65536).buffer_first);
        assert!(!request(&post("Content-Length: 5", false), 0).buffer_first);
        assert_eq!(
            request(&info(GET11), 65536),
            RequestPlan {
                body: RequestBody::None,
                buffer_first: false,
                own_continue: false
            }
        );
    }

    #[test]
    fn a_final_response_keeps_both_sides_when_it_can() {
        let ResponsePlan::Final(p) =
            plan_for(GET11, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", FACTS)
        else {
            panic!()
        };
        assert_eq!(p.body, ResponseBody::Length(3));
        assert!(!p.close_client && !p.head.close && !p.head.keep_alive_http10);
        assert_eq!(p.upstream_keep, Duration::from_secs(4));
        // The upstream's own idle timeout, a second under it, when shorter.
        let ResponsePlan::Final(p) = plan_for(
            GET11,
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nKeep-Alive: timeout=3\r\n\r\n",
            FACTS,
        ) else {
            panic!()
        };
        assert_eq!(
            (p.body, p.upstream_keep),
            (ResponseBody::None, Duration::from_secs(2))
        );
    }

    #[test]
    fn what_closes_which_side() {
        let final_of = |req, resp, facts| match plan_for(req, resp, facts) {
            ResponsePlan::Final(p) => p,
            other => panic!("{other:?}"),
        };
        // The upstream closes: the client connection stays, the upstream one does not.
        let p = final_of(
            GET11,
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            FACTS,
        );
        assert!(!p.close_client && p.upstream_keep.is_zero());
        // A body until the close: both close (the client learns the end from the close).
        let p = final_of(GET11, "HTTP/1.0 200 OK\r\n\r\n", FACTS);
        assert!(p.close_client && p.upstream_keep.is_zero());
        assert_eq!(p.body, ResponseBody::UntilClose);
        // Stopping: the client closes after its answer.
        let stopping = ExchangeFacts {
            stopping: true,
            ..FACTS
        };
        let p = final_of(GET11, "HTTP/1.1 204 No Content\r\n\r\n", stopping);
        assert!(p.close_client && p.head.close && !p.upstream_keep.is_zero());
        // Nothing pooled.
        let p = final_of(
            GET11,
            "HTTP/1.1 204 No Content\r\n\r\n",
            ExchangeFacts {
                pooling: false,
                ..FACTS
            },
        );
        assert!(p.upstream_keep.is_zero());
        // An HTTP/1.0 client without keep-alive, and one with it.
        let p = final_of(GET10, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", FACTS);
        assert!(p.close_client);
        let p = final_of(
            "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            FACTS,
        );
        assert!(!p.close_client && p.head.keep_alive_http10);
        // A client still holding its body back for a 100 Continue that never came.
        let expecting =
            "POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n";
        let waiting = ExchangeFacts {
            request_read: false,
            ..FACTS
        };
        let p = final_of(
            expecting,
            "HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n",
            waiting,
        );
        assert!(p.close_client);
        let sent = ExchangeFacts {
            continue_sent: true,
            ..waiting
        };
        let p = final_of(
            expecting,
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            sent,
        );
        assert!(!p.close_client);
    }

    #[test]
    fn a_chunked_body_is_rechunked_for_http11_and_dechunked_for_http10() {
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let ResponsePlan::Final(p) = plan_for(GET11, chunked, FACTS) else {
            panic!()
        };
        assert_eq!(
            (p.body, p.head.framing),
            (ResponseBody::Chunked(Output::Rechunk), Framing::Chunked)
        );
        let keep10 = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
        let ResponsePlan::Final(p) = plan_for(keep10, chunked, FACTS) else {
            panic!()
        };
        assert_eq!(
            (p.body, p.head.framing),
            (ResponseBody::Chunked(Output::Dechunk), Framing::UntilClose)
        );
        assert!(p.close_client, "the client learns the end from the close");
        // A coding the proxy cannot undo for an HTTP/1.0 client is refused.
        let gzip = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert!(matches!(
            plan_for(GET10, gzip, FACTS),
            ResponsePlan::Refuse(_)
        ));
        assert!(matches!(
            plan_for(GET11, gzip, FACTS),
            ResponsePlan::Final(_)
        ));
    }

    #[test]
    fn interim_and_upgrade_responses() {
        assert!(matches!(
            plan_for(
                GET11,
                "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
                FACTS
            ),
            ResponsePlan::Interim { head: Some(_) }
        ));
        assert_eq!(
            plan_for(GET10, "HTTP/1.1 100 Continue\r\n\r\n", FACTS),
            ResponsePlan::Interim { head: None }
        );
        let switch =
            "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert!(matches!(
            plan_for(GET11, switch, FACTS),
            ResponsePlan::Refuse(_)
        ));
        let ws = "GET / HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
        match plan_for(ws, switch, FACTS) {
            ResponsePlan::Upgrade { head } => assert!(head.upgrade),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_local_answer_keeps_the_connection_only_after_a_request_read_whole() {
        let get = info(GET11);
        assert!(keep_after_local_answer(502, &get, true, false));
        assert!(keep_after_local_answer(404, &get, true, false));
        assert!(!keep_after_local_answer(502, &get, false, false));
        assert!(!keep_after_local_answer(502, &get, true, true));
        assert!(!keep_after_local_answer(400, &get, true, false));
        assert!(!keep_after_local_answer(408, &get, true, false));
        assert!(!keep_after_local_answer(502, &info(GET10), true, false));
    }
}
