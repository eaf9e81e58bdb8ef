//! A small blocking HTTPS client for the ACME thread: one request per connection, bounded in
//! time and size. ACME makes a handful of requests per certificate, so simplicity wins over
//! keep-alive; nothing here runs on a worker.

use rustls::pki_types::ServerName;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// The most a response may be (a certificate chain is a few KiB).
const MAX_RESPONSE: usize = 1 << 20;
/// Connecting, and each read or write.
const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// A whole request, however slowly the server trickles its answer: an order (a dozen
/// requests) stays well within the storage lock's stale timeout.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// What the server answered.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of field `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTPS client trusting either the system's store or the CAs of a PEM file.
#[derive(Debug, Clone)]
pub struct Client {
    config: Arc<rustls::ClientConfig>,
}

impl Client {
    /// A client that verifies servers against `ca_bundle`, or the system's trust store.
    pub fn new(ca_bundle: Option<&std::path::Path>) -> Result<Client, String> {
        let roots = crate::tls::trust_roots(ca_bundle)?;
        let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Client {
            config: Arc::new(config),
        })
    }

    /// `METHOD url` with `body` (as `content_type` when given).
    pub fn request(
        &self,
        method: &str,
        url: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Response, String> {
        let (host, port, path) = split_url(url)?;
        let deadline = std::time::Instant::now() + REQUEST_DEADLINE;
        let addrs: Vec<_> = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| format!("{host}: cannot resolve: {e}"))?
            .collect();
        // Each address in turn (an IPv6 one may be unreachable where IPv4 works).
        let mut last = format!("{host}: no address");
        let mut connected = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
                Ok(s) => {
                    connected = Some(s);
                    break;
                }
                Err(e) => last = format!("cannot connect to {host}:{port}: {e}"),
            }
        }
        let tcp = connected.ok_or(last)?;
        let _ = tcp.set_read_timeout(Some(IO_TIMEOUT));
        let _ = tcp.set_write_timeout(Some(IO_TIMEOUT));
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
            .map_err(|e| format!("{host}: {e}"))?;
        let conn = rustls::ClientConnection::new(Arc::clone(&self.config), name)
            .map_err(|e| format!("{host}: {e}"))?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: goround-mio/{}\r\n\
             Accept: */*\r\nConnection: close\r\n",
            host_field(&host, port),
            env!("CARGO_PKG_VERSION")
        );
        if let Some(ct) = content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        if method != "GET" && method != "HEAD" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        tls.write_all(&out)
            .and_then(|_| tls.flush())
            .map_err(|e| format!("{host}: {e}"))?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        let head_only = method == "HEAD";
        loop {
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "{host}: no whole answer within {} s",
                    REQUEST_DEADLINE.as_secs()
                ));
            }
            match tls.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    raw.extend_from_slice(&buf[..n]);
                    if raw.len() > MAX_RESPONSE {
                        return Err(format!("{host}: response over {MAX_RESPONSE} bytes"));
                    }
                    if let Some(r) =
                        framed(&raw, head_only, false).map_err(|e| format!("{host}: {e}"))?
                    {
                        return Ok(r);
                    }
                }
                // A server that closes without close_notify: what came is judged below.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(format!("{host}: {e}")),
            }
        }
        framed(&raw, head_only, true)
            .map_err(|e| format!("{host}: {e}"))?
            .ok_or_else(|| format!("{host}: the response ended early"))
    }
}

/// `https://HOST[:PORT]/PATH` → (host, port, path).
fn split_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("'{url}' is not an https:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (
            &authority[..i],
            authority[i + 1..]
                .parse::<u16>()
                .map_err(|_| format!("'{url}': bad port"))?,
        ),
        _ => (authority, 443),
    };
    if host.is_empty() {
        return Err(format!("'{url}': no host"));
    }
    Ok((host.to_string(), port, path.to_string()))
}

fn host_field(host: &str, port: u16) -> String {
    if port == 443 {
        host.to_string()
    } else {
        format!("{host}:{port}")
    }
}

/// The head's length, status, fields and framing, once the head is whole.
type Head = (usize, u16, Vec<(String, String)>);

/// The response head, once whole. Parsed here rather than by httparse: a second caller of
/// httparse's field loop makes LLVM stop inlining it into the request path's field parser
/// (about 190 instructions more per proxied request, measured with callgrind), and ACME's
/// few responses need none of its speed.
fn head(raw: &[u8]) -> Result<Option<Head>, String> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        if raw.len() > 64 * 1024 {
            return Err("response head over 64 KiB".to_string());
        }
        return Ok(None);
    };
    let text = std::str::from_utf8(&raw[..end]).map_err(|_| "response head not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(format!("bad status line '{status_line}'"));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| format!("bad status line '{status_line}'"))?;
    let mut fields = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad field line '{line}'"))?;
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!("bad field line '{line}'"));
        }
        fields.push((name.to_string(), value.trim().to_string()));
    }
    Ok(Some((end + 4, status, fields)))
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A chunked body: `None` while it is not whole.
fn dechunk(mut data: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&data[..eol]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .ok()
            .filter(|&n| n <= MAX_RESPONSE)
            .ok_or("bad chunk size")?;
        data = &data[eol + 2..];
        if size == 0 {
            // Trailer fields, then the empty line.
            return Ok(data.windows(2).position(|w| w == b"\r\n").map(|_| out));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// The response in `raw` once it is whole (`None`: more is needed). `at_end`: the server has
/// closed, which ends a body without length and makes anything incomplete an error.
fn framed(raw: &[u8], head_only: bool, at_end: bool) -> Result<Option<Response>, String> {
    let Some((len, status, headers)) = head(raw)? else {
        return if at_end {
            Err("the response ended inside its head".to_string())
        } else {
            Ok(None)
        };
    };
    let rest = &raw[len..];
    let body = if head_only || status == 204 || status == 304 {
        Some(Vec::new())
    } else if field(&headers, "transfer-encoding").is_some() {
        dechunk(rest)?
    } else if let Some(v) = field(&headers, "content-length") {
        let n: usize = v.parse().map_err(|_| format!("bad Content-Length '{v}'"))?;
        (rest.len() >= n).then(|| rest[..n].to_vec())
    } else {
        at_end.then(|| rest.to_vec())
    };
    match body {
        Some(body) => Ok(Some(Response {
            status,
            headers,
            body,
        })),
        None if at_end => Err("the response ended inside its body".to_string()),
        None => Ok(None),
    }
}

/// The whole response in `raw`, the server having closed (tests).
#[cfg(test)]
fn parse(raw: &[u8], head_only: bool) -> Result<Response, String> {
    framed(raw, head_only, true)?.ok_or_else(|| "incomplete".to_string())
}

/// Whether `raw` holds a whole response (tests).
#[cfg(test)]
fn complete(raw: &[u8], head_only: bool) -> bool {
    matches!(framed(raw, head_only, false), Ok(Some(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_path() {
        assert_eq!(
            split_url("https://127.0.0.1:14000/dir").unwrap(),
            ("127.0.0.1".to_string(), 14000, "/dir".to_string())
        );
        assert_eq!(
            split_url("https://acme.example/directory").unwrap(),
            ("acme.example".to_string(), 443, "/directory".to_string())
        );
        assert_eq!(
            split_url("https://[::1]:8443").unwrap(),
            ("[::1]".to_string(), 8443, "/".to_string())
        );
        assert!(split_url("http://a/").is_err());
        assert!(split_url("https://:1/").is_err());
    }

    #[test]
    fn responses_by_length_by_chunks_and_to_the_close() {
        let r = parse(
            b"HTTP/1.1 201 Created\r\nLocation: /a\r\nContent-Length: 2\r\n\r\nok",
            false,
        )
        .unwrap();
        assert_eq!(
            (r.status, r.header("location"), &r.body[..]),
            (201, Some("/a"), &b"ok"[..])
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert!(complete(chunked, false));
        assert!(!complete(&chunked[..chunked.len() - 2], false));
        assert_eq!(parse(chunked, false).unwrap().body, b"abcde");
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\n\r\nall of it", false)
                .unwrap()
                .body,
            b"all of it"
        );
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", false).is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-", false).is_err());
        assert!(parse(b"HTTP/1.1 20 OK\r\n\r\n", false).is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", false).is_err());
        assert!(parse(b"SSH-2.0\r\n\r\n", false).is_err());
        let huge = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nab";
        assert!(
            parse(huge, false).is_err(),
            "a chunk size past any response is refused"
        );
        assert!(!complete(huge, false));
        let h = parse(
            b"HTTP/1.1 200 OK\r\nReplay-Nonce: abc\r\nContent-Length: 9\r\n\r\n",
            true,
        )
        .unwrap();
        assert_eq!(h.header("replay-nonce"), Some("abc"));
    }
}
