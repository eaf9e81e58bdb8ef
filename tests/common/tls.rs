//! TLS for the black-box tests: a certificate authority and certificates made here (rcgen),
//! written as PEM files, and a rustls client that trusts that authority and says what it got
//! (the version, whether the session was resumed, the names of the certificate it was shown).

use super::clients::{parse_response_head, ResponseHead};
use super::process::{TempDir, IO_TIMEOUT};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, ProtocolVersion, StreamOwned};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A test certificate authority.
pub struct TestCa {
    key: KeyPair,
    cert: rcgen::Certificate,
}

/// A certificate issued by a [`TestCa`], with its key.
pub struct Leaf {
    /// The certificate, then the authority's (the chain a server sends).
    pub chain_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
    /// The certificate's SubjectPublicKeyInfo, DER.
    pub spki_der: Vec<u8>,
}

/// Seconds since the epoch, now.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The calendar date `days` from today (UTC): year, month, day.
fn ymd_in(days: i64) -> (i32, u8, u8) {
    // Days to civil date (Howard Hinnant's algorithm).
    let z = unix_now().div_euclid(86_400) + days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m as u8, d as u8)
}

/// Make `params` valid from `from` days from today to `to` days from today.
fn valid(params: &mut CertificateParams, from: i64, to: i64) {
    let (y, m, d) = ymd_in(from);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = ymd_in(to);
    params.not_after = rcgen::date_time_ymd(y, m, d);
}

impl TestCa {
    /// A new authority with an ECDSA P-256 key.
    pub fn new() -> TestCa {
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Each its own name: a certificate of another test CA must not find this one as its
        // issuer by name.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        params.distinguished_name.push(
            DnType::CommonName,
            format!("goround test CA {} {n}", std::process::id()),
        );
        valid(&mut params, -1, 3650);
        let cert = params.self_signed(&key).expect("the CA certificate");
        TestCa { key, cert }
    }

    /// The authority's certificate, PEM.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// The authority's certificate, DER.
    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// A certificate for `names` (DNS SubjectAltNames), valid from yesterday for `days` days
    /// from today (negative: expired).
    pub fn issue(&self, names: &[&str], days: i64) -> Leaf {
        let key = KeyPair::generate().expect("a key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf params");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().map_or("none", |n| n.as_str()),
        );
        valid(&mut params, (-2).min(days - 1), days);
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("the certificate");
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.cert.pem()),
            key_pem: key.serialize_pem(),
            spki_der: key.public_key_der(),
        }
    }

    /// A rustls client configuration that trusts this authority, offers `alpn`, and keeps
    /// sessions to resume (one configuration, one client's memory).
    pub fn client(&self, alpn: &[&str]) -> Arc<ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der()).expect("the CA as a root");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Arc::new(cfg)
    }
}

impl Leaf {
    /// Write the chain and the key as `STEM.pem` and `STEM.key` in `dir`.
    pub fn write(&self, dir: &TempDir, stem: &str) -> (PathBuf, PathBuf) {
        (
            dir.write(&format!("{stem}.pem"), &self.chain_pem),
            dir.write(&format!("{stem}.key"), &self.key_pem),
        )
    }

    /// The SHA-256 of the public key, base64: what Chromium's
    /// `--ignore-certificate-errors-spki-list` takes.
    pub fn spki_sha256_base64(&self) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.spki_der);
        base64(digest.as_ref())
    }
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// What a TLS client saw of one connection.
#[derive(Debug)]
pub struct TlsSeen {
    /// The protocol version negotiated.
    pub version: Option<ProtocolVersion>,
    /// Full or resumed.
    pub kind: Option<HandshakeKind>,
    /// The ALPN protocol agreed on.
    pub alpn: Option<Vec<u8>>,
    /// The DNS names of the certificate the server showed.
    pub names: Vec<String>,
}

/// A client TLS connection to the proxy, handshake done.
pub struct TlsClient {
    stream: StreamOwned<ClientConnection, TcpStream>,
    /// Bytes read but not yet consumed.
    buf: Vec<u8>,
}

/// The DNS SubjectAltNames of a DER certificate.
pub fn cert_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

impl TlsClient {
    /// Connect to `addr` and complete a handshake for `sni` (the name verified; with `send_sni`
    /// false, the ClientHello carries no server name).
    pub fn connect(
        addr: SocketAddr,
        cfg: &Arc<ClientConfig>,
        sni: &str,
        send_sni: bool,
    ) -> Result<TlsClient, String> {
        let cfg = if send_sni {
            Arc::clone(cfg)
        } else {
            let mut c = (**cfg).clone();
            c.enable_sni = false;
            Arc::new(c)
        };
        let name = ServerName::try_from(sni.to_string()).map_err(|e| format!("{sni}: {e}"))?;
        let conn = ClientConnection::new(cfg, name).map_err(|e| format!("client: {e}"))?;
        let tcp = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        tcp.set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        tcp.set_write_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| format!("handshake with {addr} for {sni}: {e}"))?;
        }
        Ok(TlsClient {
            stream,
            buf: Vec::new(),
        })
    }

    /// What the handshake gave.
    pub fn seen(&self) -> TlsSeen {
        let c = &self.stream.conn;
        TlsSeen {
            version: c.protocol_version(),
            kind: c.handshake_kind(),
            alpn: c.alpn_protocol().map(<[u8]>::to_vec),
            names: c
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| cert_names(leaf))
                .unwrap_or_default(),
        }
    }

    /// The certificate the server showed (DER).
    pub fn peer_leaf(&self) -> Option<Vec<u8>> {
        self.stream
            .conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|c| c.as_ref().to_vec())
    }

    /// Send `bytes` and flush them out.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush())
            .map_err(|e| format!("send: {e}"))
    }

    /// Read one response with a Content-Length (or none and a close): its head and body.
    pub fn read_response(&mut self) -> Result<(ResponseHead, Vec<u8>), String> {
        let mut chunk = [0u8; 16 * 1024];
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = self.read_some(&mut chunk)?;
            if n == 0 {
                return Err(format!(
                    "closed before a whole head: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ));
            }
        };
        let head = parse_response_head(&self.buf[..head_end])?;
        let length = head
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok());
        let body = match length {
            Some(len) => {
                while self.buf.len() < head_end + len {
                    if self.read_some(&mut chunk)? == 0 {
                        return Err("closed within the body".to_string());
                    }
                }
                let body = self.buf[head_end..head_end + len].to_vec();
                self.buf.drain(..head_end + len);
                body
            }
            None => {
                while self.read_some(&mut chunk)? != 0 {}
                let body = self.buf[head_end..].to_vec();
                self.buf.clear();
                body
            }
        };
        Ok((head, body))
    }

    /// Read what arrives into the buffer; 0 at the peer's close_notify.
    fn read_some(&mut self, chunk: &mut [u8]) -> Result<usize, String> {
        match self.stream.read(chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(e) => Err(format!("read: {e}")),
        }
    }

    /// Whether the server closes the connection with close_notify (reads to the end).
    pub fn read_to_close(&mut self) -> Result<Vec<u8>, String> {
        let mut chunk = [0u8; 16 * 1024];
        while self.read_some(&mut chunk)? != 0 {}
        Ok(std::mem::take(&mut self.buf))
    }
}

/// One `GET path` with `Host: host` over a new TLS connection for `sni`, `Connection: close`:
/// what the handshake gave, and the response.
pub fn https_get(
    addr: SocketAddr,
    cfg: &Arc<ClientConfig>,
    sni: &str,
    host: &str,
    path: &str,
) -> Result<(TlsSeen, ResponseHead, Vec<u8>), String> {
    let mut c = TlsClient::connect(addr, cfg, sni, true)?;
    c.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())?;
    let (head, body) = c.read_response()?;
    Ok((c.seen(), head, body))
}

/// What a [`TlsBackend`] saw of one connection: the SNI name it sent, its request heads.
type Seen = (Option<String>, Vec<String>);

/// A backend that speaks HTTP/1.1 over TLS (rustls, a thread per connection): every request
/// gets `200` with `body`, kept alive. It records the SNI name of each connection and the
/// requests.
pub struct TlsBackend {
    addr: SocketAddr,
    /// Per connection: the SNI name it sent (if any), and its requests' heads.
    seen: Arc<std::sync::Mutex<Vec<Seen>>>,
}

impl TlsBackend {
    /// Serve `leaf` (its chain and key) on a fresh 127.0.0.1 port.
    pub fn start(leaf: &Leaf, body: &str) -> TlsBackend {
        use rustls::pki_types::pem::PemObject;
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(leaf.chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("the chain");
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes())
            .expect("the key");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("the server config");
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let cfg = Arc::new(cfg);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes();
        let record = Arc::clone(&seen);
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { continue };
                let (cfg, record, response) =
                    (Arc::clone(&cfg), Arc::clone(&record), response.clone());
                std::thread::spawn(move || serve_tls(tcp, cfg, record, &response));
            }
        });
        TlsBackend { addr, seen }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections whose handshake completed: the SNI name each sent.
    pub fn connections(&self) -> Vec<Option<String>> {
        super::lock(&self.seen)
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Per connection whose handshake completed, the number of requests it carried.
    pub fn requests_per_connection(&self) -> Vec<usize> {
        super::lock(&self.seen)
            .iter()
            .map(|(_, r)| r.len())
            .collect()
    }

    /// Every request head received, in order.
    pub fn requests(&self) -> Vec<String> {
        super::lock(&self.seen)
            .iter()
            .flat_map(|(_, r)| r.clone())
            .collect()
    }
}

/// One TLS connection of a [`TlsBackend`]: answer each request head (bodies are not
/// expected) until the client closes.
fn serve_tls(
    tcp: TcpStream,
    cfg: Arc<rustls::ServerConfig>,
    record: Arc<std::sync::Mutex<Vec<Seen>>>,
    response: &[u8],
) {
    let Ok(conn) = rustls::ServerConnection::new(cfg) else {
        return;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        if s.conn.complete_io(&mut s.sock).is_err() {
            return;
        }
    }
    let index = {
        let mut all = super::lock(&record);
        all.push((s.conn.server_name().map(str::to_string), Vec::new()));
        all.len() - 1
    };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            // A body (Content-Length only) is read whole and answered with its length and
            // checksum; `GET /big/N` gets N bytes of `pattern`; anything else the fixed answer.
            let length = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body: Vec<u8> = buf.drain(..end + 4 + length).skip(end + 4).collect();
            super::lock(&record)[index].1.push(head.clone());
            let big = head
                .strip_prefix("GET /big/")
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse::<usize>().ok());
            let answer = if let Some(n) = big {
                let mut a = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n").into_bytes();
                a.extend_from_slice(&super::pattern(n));
                a
            } else if length > 0 {
                let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
                let text = format!("len={length} sum={sum}");
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                    text.len()
                )
                .into_bytes()
            } else {
                response.to_vec()
            };
            if s.write_all(&answer).and_then(|()| s.flush()).is_err() {
                return;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
