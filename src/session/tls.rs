//! The TLS layer of a client connection: rustls between the client socket and the session's
//! buffers. Records are read from the socket into rustls and their plaintext into `cin`; what
//! `cout` queues is handed to rustls and its records written to the socket. The handshake is
//! one more thing a session does while it waits for its first head; no thread, no blocking.
//!
//! Counts are of plaintext (the access log's and `goround_bytes_*`'s bytes, as nginx's
//! `$body_bytes_sent`). Long spans never go by splice(2) over TLS: the bytes must be
//! encrypted.

use super::*;
use crate::sys;
use crate::tls::certs::Certificate;
use crate::tls::HandshakeFailure;
use rustls::{ConnectionCommon, ServerConnection};
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};

/// A client connection's TLS state.
pub(super) struct ClientTls {
    /// rustls' server side.
    pub(super) conn: ServerConnection,
    /// Where the handshake stands.
    pub(super) phase: TlsPhase,
    /// When the connection was accepted: the handshake's deadline and its duration count from
    /// here.
    pub(super) since: Tick,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("handshaking", &self.conn.is_handshaking())
            .finish()
    }
}

/// A client connection's handshake: under way, done (with what it decided), or failed
/// (counted already; the connection closes).
#[derive(Debug)]
pub(super) enum TlsPhase {
    Handshaking,
    Done(Handshake),
    Failed,
}

impl ClientTls {
    /// The handshake is neither done nor failed.
    #[inline]
    pub(super) fn handshaking(&self) -> bool {
        matches!(self.phase, TlsPhase::Handshaking)
    }

    /// What the handshake decided, once done.
    #[inline]
    pub(super) fn done(&self) -> Option<&Handshake> {
        match &self.phase {
            TlsPhase::Done(h) => Some(h),
            _ => None,
        }
    }
}

/// What a finished handshake decided.
#[derive(Debug)]
pub(super) struct Handshake {
    /// `1.3` or `1.2`.
    pub(super) version: &'static str,
    /// The certificate SNI chose when a name of it matched: a request's host must be one it
    /// covers (421 otherwise). `None`: the default certificate, for a client without SNI or
    /// with a name none covers, which any host may use.
    pub(super) cert: Option<Arc<Certificate>>,
}

impl ClientTls {
    /// A connection accepted at `since` on the HTTPS listener.
    pub(super) fn new(config: Arc<rustls::ServerConfig>, since: Tick) -> Option<Box<ClientTls>> {
        match ServerConnection::new(config) {
            Ok(conn) => Some(Box::new(ClientTls {
                conn,
                phase: TlsPhase::Handshaking,
                since,
            })),
            Err(e) => {
                warn!("cannot start a TLS connection: {e}");
                None
            }
        }
    }

    /// Records waiting to be written to the socket.
    #[inline]
    pub(super) fn output_pending(&self) -> bool {
        self.conn.wants_write()
    }
}

impl Session {
    /// TLS: read what the socket has into rustls and the plaintext into `cin`. `Ok(n)`:
    /// plaintext bytes read. A record or handshake error closes the connection (its alert is
    /// sent first, as far as the socket takes it).
    pub(super) fn tls_read(&mut self, ctx: &mut Ctx<'_>) -> Result<usize, Fail> {
        if self.tls.is_none() {
            return Ok(0);
        }
        if self.awaiting_proxy_header && !self.take_proxy_header_before_tls(ctx)? {
            return Ok(0);
        }
        let Some(tls) = self.tls.as_mut() else {
            return Ok(0);
        };
        let n = match read_records(&mut tls.conn, &mut self.client, &mut self.cin, ctx.bufs) {
            Ok(n) => n,
            Err(e) => {
                if tls.conn.is_handshaking() {
                    self.handshake_failed(HandshakeFailure::of(&e), &e.to_string(), ctx);
                    // The alert says why (RFC 7301's no_application_protocol, a version): it
                    // goes out, then a lingering close, so that no reset of unread bytes
                    // destroys it before the client reads it.
                    self.state = State::Closing {
                        linger_since: None,
                        clean: false,
                    };
                    return Ok(0);
                }
                debug!("{}: TLS error: {e}", self.client_ip);
                return Err(Fail::Abort);
            }
        };
        if tls.handshaking() && !tls.conn.is_handshaking() {
            if tls.conn.alpn_protocol() == Some(crate::tls::ACME_TLS_ALPN) {
                // A CA validating tls-alpn-01 (RFC 8737 §3): the handshake was the whole
                // exchange; no request follows.
                tls.conn.send_close_notify();
                self.state = State::Closing {
                    linger_since: None,
                    clean: true,
                };
                return Ok(0);
            }
            self.handshake_done(ctx);
        } else if self.client.eof && tls.handshaking() {
            self.handshake_failed(HandshakeFailure::Eof, "closed during the handshake", ctx);
            return Err(Fail::Abort);
        }
        self.client.bytes_in += n as u64;
        Ok(n)
    }

    /// `proxy_protocol` on the HTTPS listener: the PROXY header comes before the ClientHello,
    /// in the clear. It is read raw into `cin`; once it is whole, what followed it is handed
    /// to rustls as the first bytes of TLS. `Ok(false)`: not all of it is here yet.
    fn take_proxy_header_before_tls(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Fail> {
        self.client
            .read_into(&mut self.cin, ctx.bufs)
            .map_err(|_| Fail::Abort)?;
        if !self.take_proxy_header(ctx)? {
            return Ok(false);
        }
        let Some(tls) = self.tls.as_mut() else {
            return Ok(true);
        };
        let mut rest: &[u8] = self.cin.data();
        while !rest.is_empty() {
            match tls.conn.read_tls(&mut rest) {
                // rustls takes a whole ClientHello (the client waits for our answer before
                // sending more): refusing bytes here means a client that is not speaking TLS.
                Ok(0) | Err(_) => {
                    self.handshake_failed(
                        HandshakeFailure::BadRecord,
                        "after the PROXY header",
                        ctx,
                    );
                    return Err(Fail::Abort);
                }
                Ok(_) => {
                    if let Err(e) = tls.conn.process_new_packets() {
                        let _ = flush_records(&mut tls.conn, &mut self.client);
                        self.handshake_failed(HandshakeFailure::of(&e), &e.to_string(), ctx);
                        return Err(Fail::Abort);
                    }
                }
            }
        }
        self.cin.clear();
        // The socket may hold more, already reported readable: the caller reads it now.
        self.client.readable = true;
        Ok(true)
    }

    /// TLS: hand what `cout` queues to rustls, and write its records to the socket. `Ok(true)`
    /// when something moved.
    pub(super) fn tls_write(&mut self) -> Result<bool, Fail> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(false);
        };
        let mut moved = false;
        if !self.cout.is_empty() && !tls.conn.is_handshaking() {
            let n = tls.conn.writer().write(self.cout.data()).unwrap_or(0);
            self.cout.consume(n);
            self.client.bytes_out += n as u64;
            moved = n > 0;
        }
        let before = self.client.wrote;
        self.client.wrote = false;
        flush_records(&mut tls.conn, &mut self.client).map_err(|_| Fail::Abort)?;
        moved |= self.client.wrote;
        self.client.wrote |= before;
        Ok(moved)
    }

    /// A tunnel passes the upstream's end on: close_notify first on TLS, and the socket's
    /// sending side is shut once rustls' records are all out (false: not yet, try again).
    pub(super) fn client_half_close(&mut self) -> bool {
        if let Some(tls) = self.tls.as_mut() {
            tls.conn.send_close_notify();
            let _ = flush_records(&mut tls.conn, &mut self.client);
            if tls.conn.wants_write() {
                return false;
            }
        }
        self.client.shutdown_write();
        true
    }

    /// End our side: with close_notify first on TLS; then shut the socket's sending side.
    pub(super) fn tls_shutdown_write(&mut self) {
        if let Some(tls) = self.tls.as_mut() {
            if !self.client.shut {
                tls.conn.send_close_notify();
                let _ = flush_records(&mut tls.conn, &mut self.client);
            }
        }
        self.client.shutdown_write();
    }

    /// `min` for a span between the client and upstream sockets, or 0 (never) when either
    /// is under TLS, whose bytes must be encrypted.
    #[inline]
    pub(super) fn splice_min(&self, min: usize) -> usize {
        if self.tls.is_some() || self.upstream.get().is_some_and(|u| u.tls.is_some()) {
            0
        } else {
            min
        }
    }

    /// Records of ours not yet written (a TLS connection), or plaintext queued.
    #[inline]
    pub(super) fn client_output_pending(&self) -> bool {
        !self.cout.is_empty() || self.tls.as_ref().is_some_and(|t| t.output_pending())
    }

    /// The handshake finished: what it decided, and the counters.
    fn handshake_done(&mut self, ctx: &mut Ctx<'_>) {
        let Some(tls) = self.tls.as_mut() else {
            return;
        };
        let version = match tls.conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_2) => "1.2",
            _ => "1.3",
        };
        let resumed = matches!(
            tls.conn.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        );
        let cert = self.snap.tls.as_ref().and_then(|t| {
            let set = t.certs();
            let pick = set.pick(tls.conn.server_name());
            pick.matched.then(|| Arc::clone(&set.certs[pick.index]))
        });
        tls.phase = TlsPhase::Done(Handshake { version, cert });
        ctx.stats
            .tls_handshake(ctx.now.micros_since(tls.since), resumed);
    }

    /// The handshake failed for `why`: counted, and logged at debug only (a port on the
    /// internet sees thousands of scanners' failed handshakes).
    pub(super) fn handshake_failed(&mut self, why: HandshakeFailure, detail: &str, ctx: &Ctx<'_>) {
        ctx.stats.tls_handshake_failed(why);
        debug!(
            "{}: TLS handshake failed ({}): {detail}",
            self.client_ip,
            why.name()
        );
        if let Some(tls) = self.tls.as_mut() {
            // Counted once.
            tls.phase = TlsPhase::Failed;
        }
    }
}

/// Why a request is answered at its head because of TLS.
pub(super) enum TlsRefusal {
    /// Over TLS, a host the certificate that SNI chose does not cover: 421 (RFC 9110
    /// §15.5.20). Not when the default certificate was chosen for lack of a match.
    Misdirected,
    /// On the plain listener with `redirect_http`: 308 to this URL over HTTPS.
    Redirect(Vec<u8>),
    /// On the plain listener with `redirect_http`, a request without a Host: 400.
    NoHost,
}

impl Session {
    /// The key authorization to answer a request for `path` with: an http-01 token ACME is
    /// being validated for, asked on the plain listener.
    #[inline]
    pub(super) fn acme_token(&self, path: &str) -> Option<String> {
        let acme = self.snap.acme.as_deref().filter(|_| self.tls.is_none())?;
        let token = path.strip_prefix(crate::acme::CHALLENGE_PATH)?;
        acme.http_token(token.split('?').next().unwrap_or(""))
    }

    /// Whether a request for `host` is answered at its head because of TLS.
    #[inline]
    pub(super) fn tls_refusal(&self, ctx: &Ctx<'_>, host: &[u8], path: &str) -> Option<TlsRefusal> {
        match &self.tls {
            Some(tls) => {
                let cert = tls.done()?.cert.as_ref()?;
                let host = crate::route::request_host(host);
                // A request without a Host (HTTP/1.0) names no other site.
                (!host.is_empty()
                    && !cert
                        .names
                        .iter()
                        .any(|n| crate::tls::certs::name_covers(n, &host)))
                .then_some(TlsRefusal::Misdirected)
            }
            None => {
                let spec = ctx.cfg.tls.as_ref().filter(|t| t.redirect_http)?;
                if host.is_empty() {
                    // No Host, no URL to send it to (HTTP/1.0): nothing is served in the clear.
                    return Some(TlsRefusal::NoHost);
                }
                Some(TlsRefusal::Redirect(https_location(
                    host,
                    spec.port(),
                    path.as_bytes(),
                )))
            }
        }
    }
}

/// `https://HOST[:PORT]PATH?QUERY`: the host without its port, and the HTTPS listener's port
/// unless it is 443.
pub(super) fn https_location(host: &[u8], port: u16, path_and_query: &[u8]) -> Vec<u8> {
    let name: &[u8] = if host.first() == Some(&b'[') {
        match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        match host.iter().rposition(|&b| b == b':') {
            Some(colon) => &host[..colon],
            None => host,
        }
    };
    let mut out = Vec::with_capacity(16 + name.len() + path_and_query.len());
    out.extend_from_slice(b"https://");
    out.extend_from_slice(name);
    if port != 443 {
        out.push(b':');
        out.extend_from_slice(port.to_string().as_bytes());
    }
    if path_and_query.first() != Some(&b'/') {
        out.push(b'/');
    }
    out.extend_from_slice(path_and_query);
    out
}

/// Read what `peer` has into rustls, and the plaintext into `buf` while it has room:
/// `Ok(n)` plaintext bytes (the caller counts them: counts are of plaintext). A close_notify, or the socket's end, sets `peer.eof`. A record or
/// handshake error is returned after the alert rustls queued for it went out, as far as the
/// socket takes it now.
pub(super) fn read_records<D>(
    conn: &mut ConnectionCommon<D>,
    peer: &mut Peer,
    buf: &mut Buffer,
    bufs: &mut BufPool,
) -> Result<usize, rustls::Error> {
    let mut socket = DrainingRecv {
        fd: peer.stream.as_raw_fd(),
        drained: false,
    };
    let mut n = take_plaintext(conn, buf, bufs);
    // The peer's end (close_notify, or the socket's EOF) is the stream's end only once every
    // byte of plaintext before it is taken: a tunnel passes the end on at once.
    let mut ended = false;
    while peer.readable && !peer.eof && buf.room() > 0 {
        match conn.read_tls(&mut socket) {
            Ok(0) => {
                ended = true;
                break;
            }
            Ok(_) => {
                // As on the plain path: a short read drained the socket, and new bytes will
                // raise a new edge; no read that would only say EAGAIN (but the EOF of a peer
                // that hung up still has to be read).
                if socket.drained && !peer.hung_up {
                    peer.readable = false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                peer.readable = false;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // rustls holds as much plaintext as it will: take it first.
            Err(e) if e.kind() == io::ErrorKind::Other => break,
            Err(_) => {
                ended = true;
                peer.readable = false;
                break;
            }
        }
        if let Err(e) = conn.process_new_packets() {
            let _ = flush_records(conn, peer);
            return Err(e);
        }
        n += take_plaintext(conn, buf, bufs);
    }
    if let Ok(state) = conn.process_new_packets() {
        ended |= state.peer_has_closed();
        let taken = take_plaintext(conn, buf, bufs);
        n += taken;
        if state.plaintext_bytes_to_read() > taken {
            // Plaintext rustls holds is bytes to read as much as the socket's are: the
            // session must come back for it, though the socket itself is drained.
            peer.readable = true;
        } else if ended {
            peer.eof = true;
        }
    }
    Ok(n)
}

/// Move the plaintext rustls holds into `buf`, as far as it has room; returns how much.
fn take_plaintext<D>(
    conn: &mut ConnectionCommon<D>,
    buf: &mut Buffer,
    bufs: &mut BufPool,
) -> usize {
    let mut n = 0;
    while buf.room() > 0 {
        buf.attach(bufs);
        match buf.read_from(&mut conn.reader()) {
            Ok(0) => break,
            Ok(k) => n += k,
            // WouldBlock: nothing more decrypted yet; another error: the close is seen later.
            Err(_) => break,
        }
    }
    n
}

/// Write rustls' records to `peer` until it has none or the socket takes no more.
pub(super) fn flush_records<D>(conn: &mut ConnectionCommon<D>, peer: &mut Peer) -> io::Result<()> {
    let fd = peer.stream.as_raw_fd();
    while conn.wants_write() && peer.writable && !peer.shut {
        match conn.write_tls(&mut Send(fd)) {
            Ok(_) => peer.wrote = true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => peer.writable = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A socket as rustls' reader, noting whether a read returned less than was asked for (the
/// socket is drained).
struct DrainingRecv {
    fd: RawFd,
    drained: bool,
}

impl io::Read for DrainingRecv {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = io::Read::read(&mut sys::Recv(self.fd), buf)?;
        self.drained = n < buf.len();
        Ok(n)
    }
}

/// A socket as rustls' writer.
struct Send(RawFd);

impl Write for Send {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sys::send(self.0, buf, false)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::https_location;

    #[test]
    fn the_redirect_keeps_host_path_and_query_and_drops_the_plain_port() {
        let loc = |h: &[u8], p, q: &[u8]| String::from_utf8(https_location(h, p, q)).unwrap();
        assert_eq!(
            loc(b"example.com:8080", 443, b"/a?b=1"),
            "https://example.com/a?b=1"
        );
        assert_eq!(loc(b"example.com", 8443, b"/"), "https://example.com:8443/");
        assert_eq!(loc(b"[::1]:80", 443, b"/x"), "https://[::1]/x");
        assert_eq!(loc(b"h", 443, b"?q"), "https://h/?q");
    }
}
