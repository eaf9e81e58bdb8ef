//! The access log: one line per request, nginx's `combined` format byte for byte, or one JSON
//! object per line. A worker formats its lines into its own batch ([`LogBatch`]) and hands the
//! batch to a writer thread when its lines have waited 100 ms (the worker's `LOG_HOLD`), at
//! shutdown, or when it reaches [`BATCH_BYTES`]: one channel send and no allocation per line,
//! however many requests that covers. The queue is bounded in bytes ([`QUEUE_BYTES`]); a
//! batch that would pass the bound is dropped and its lines counted
//! (`goround_access_log_dropped_total`), so a slow disk never stalls a worker. SIGUSR1 makes
//! the writer reopen its file (logrotate).

use crate::config::{AccessLogSpec, LogFormat, LogTarget};
use crate::text::json_str;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

/// Bytes of lines all workers together may have queued ahead of the writer; beyond, batches
/// are dropped (and counted) rather than memory grown.
pub const QUEUE_BYTES: usize = 16 << 20;
/// A worker hands its batch over once it holds this much, without waiting for its turn to end.
pub const BATCH_BYTES: usize = 32 << 10;

/// One request, as logged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// When the request head was complete, Unix ms.
    pub unix_ms: u64,
    /// The client's address.
    pub client: String,
    /// The request line as received, byte for byte (up to its CR or LF, at most
    /// `MAX_REQUEST_LINE` bytes): what nginx's `$request` is, also for a line that was refused
    /// or is no request at all. Empty when nothing came.
    pub request: Vec<u8>,
    /// The request line's parts, when it parsed (empty otherwise: JSON's `null`).
    pub method: String,
    pub target: String,
    /// `HTTP/1.1` or `HTTP/1.0` (empty when the line did not parse).
    pub version: &'static str,
    /// The TLS version (`1.3`, `1.2`) of a request over TLS; empty on a plain connection.
    pub tls: &'static str,
    /// The host the request was for (absolute-form authority or Host). This and the two
    /// field values below are bytes as received: only the JSON format needs them as UTF-8.
    pub host: Vec<u8>,
    /// The status sent (499 when the client left before any).
    pub status: u16,
    /// Response body bytes sent (nginx's `$body_bytes_sent`).
    pub bytes_sent: u64,
    /// From the complete head to the end of the response, ms.
    pub duration_ms: u64,
    /// The pool and upstream; empty for an answer of the proxy's own.
    pub pool: String,
    pub upstream: String,
    /// Request sent → response head received, ms (`None` without an upstream response).
    pub upstream_ms: Option<u64>,
    pub user_agent: Vec<u8>,
    pub referer: Vec<u8>,
}

/// One relayed TCP connection, as logged when it ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcpRecord {
    /// When the connection was accepted, Unix ms.
    pub unix_ms: u64,
    /// The client's address (as a PROXY header named it, on such a listener).
    pub client: String,
    /// The listener's address, as bound.
    pub listener: String,
    /// The ClientHello's server name, on an SNI-routed listener (empty: none, or not read).
    pub sni: String,
    /// The pool and the upstream (empty when none was chosen or reached).
    pub pool: String,
    pub upstream: String,
    /// Bytes read from the client, and written to it.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Accept → close, ms.
    pub duration_ms: u64,
    /// How it ended (`client_closed`, `upstream_closed`, `idle_timeout`, `connect_failed`,
    /// `refused`, `shutdown`).
    pub end: &'static str,
}

/// Append `r` as one line (with its `\n`) in `format`. The text line keeps the combined
/// format's first fields (client, `- -`, time) so that tools that split those still can:
/// `CLIENT - - [TIME] "TCP LISTENER" END BYTES_IN BYTES_OUT "SNI" "POOL" "UPSTREAM" DURATION_MS`.
pub fn format_tcp(r: &TcpRecord, format: LogFormat, out: &mut Vec<u8>) {
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    match format {
        LogFormat::Combined => {
            out.extend_from_slice(r.client.as_bytes());
            out.extend_from_slice(b" - - [");
            push_time_local(r.unix_ms, out);
            out.extend_from_slice(b"] \"TCP ");
            escape_into(&r.listener, out);
            let line = format!("\" {} {} {} \"", r.end, r.bytes_in, r.bytes_out);
            out.extend_from_slice(line.as_bytes());
            escape_into(dash(&r.sni), out);
            out.extend_from_slice(b"\" \"");
            escape_into(dash(&r.pool), out);
            out.extend_from_slice(b"\" \"");
            escape_into(dash(&r.upstream), out);
            out.extend_from_slice(format!("\" {}\n", r.duration_ms).as_bytes());
        }
        LogFormat::Json => {
            let opt = |s: &str| {
                if s.is_empty() {
                    "null".to_string()
                } else {
                    json_str(s)
                }
            };
            let line = format!(
                "{{\"time\":{},\"mode\":\"tcp\",\"client\":{},\"listener\":{},\"sni\":{},\"pool\":{},\
                 \"upstream\":{},\"bytes_in\":{},\"bytes_out\":{},\"duration_ms\":{},\"end\":\"{}\"}}\n",
                json_str(&rfc3339_ms(r.unix_ms)),
                json_str(&r.client),
                json_str(&r.listener),
                opt(&r.sni),
                opt(&r.pool),
                opt(&r.upstream),
                r.bytes_in,
                r.bytes_out,
                r.duration_ms,
                r.end,
            );
            out.extend_from_slice(line.as_bytes());
        }
    }
}

/// Append `r` as one line (with its `\n`) in `format`.
pub fn format(r: &Record, format: LogFormat, out: &mut Vec<u8>) {
    match format {
        LogFormat::Combined => combined(r, out),
        LogFormat::Json => json(r, out),
    }
}

/// nginx's `combined`:
/// `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
/// "$http_referer" "$http_user_agent"`, with nginx's escaping (`"`, `\` and bytes outside
/// printable ASCII as `\xXX`) and `-` for an empty field. Time in UTC.
fn combined(r: &Record, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    out.extend_from_slice(r.client.as_bytes());
    out.extend_from_slice(b" - - [");
    push_time_local(r.unix_ms, out);
    out.extend_from_slice(b"] \"");
    dash_or(&r.request, out);
    out.extend_from_slice(b"\" ");
    out.extend_from_slice(crate::http::decimal(u64::from(r.status), &mut digits));
    out.push(b' ');
    out.extend_from_slice(crate::http::decimal(r.bytes_sent, &mut digits));
    out.extend_from_slice(b" \"");
    dash_or(&r.referer, out);
    out.extend_from_slice(b"\" \"");
    dash_or(&r.user_agent, out);
    out.extend_from_slice(b"\"\n");
}

fn dash_or(s: &[u8], out: &mut Vec<u8>) {
    if s.is_empty() {
        out.push(b'-');
    } else {
        escape_into(s, out);
    }
}

/// nginx's access-log escaping: `"`, `\\` and bytes outside 0x20–0x7e as `\\xXX`.
fn escape_into(s: impl AsRef<[u8]>, out: &mut Vec<u8>) {
    let bytes = s.as_ref();
    let plain = |b: &u8| b != &b'"' && b != &b'\\' && (0x20..0x7f).contains(b);
    // Almost every value needs no escape: copy it whole.
    if bytes.iter().all(plain) {
        out.extend_from_slice(bytes);
        return;
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in bytes {
        if plain(b) {
            out.push(*b);
        } else {
            out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]);
        }
    }
}

/// Bytes as received in a JSON string: nginx's escaping first (so the text is the combined
/// log's, pure ASCII: valid JSON whatever the bytes were), then JSON's. `null` when empty.
fn json_bytes(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "null".to_string();
    }
    let mut escaped = Vec::with_capacity(bytes.len());
    escape_into(bytes, &mut escaped);
    json_str(&String::from_utf8_lossy(&escaped))
}

/// One JSON object.
fn json(r: &Record, out: &mut Vec<u8>) {
    let upstream_ms = r
        .upstream_ms
        .map_or_else(|| "null".to_string(), |m| m.to_string());
    let opt = |s: &str| {
        if s.is_empty() {
            "null".to_string()
        } else {
            json_str(s)
        }
    };
    // Only on a TLS connection: absent otherwise.
    let tls = if r.tls.is_empty() {
        String::new()
    } else {
        format!(",\"tls\":\"{}\"", r.tls)
    };
    let line = format!(
        "{{\"time\":{},\"client\":{},\"request\":{},\"method\":{},\"target\":{},\"version\":{},\
         \"host\":{},\"status\":{},\"bytes_sent\":{},\"duration_ms\":{},\"pool\":{},\"upstream\":{},\
         \"upstream_ms\":{upstream_ms},\"user_agent\":{},\"referer\":{}{tls}}}\n",
        json_str(&rfc3339_ms(r.unix_ms)),
        json_str(&r.client),
        json_bytes(&r.request),
        opt(&r.method),
        json_bytes(r.target.as_bytes()),
        opt(r.version),
        json_bytes(&r.host),
        r.status,
        r.bytes_sent,
        r.duration_ms,
        opt(&r.pool),
        opt(&r.upstream),
        json_bytes(&r.user_agent),
        json_bytes(&r.referer),
    );
    out.extend_from_slice(line.as_bytes());
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Split Unix ms into (year, month, day, hour, minute, second, ms), UTC.
fn parts(unix_ms: u64) -> (i64, u32, u32, u64, u64, u64, u64) {
    let secs = unix_ms / 1000;
    let (y, mo, d) = civil((secs / 86_400) as i64);
    let s = secs % 86_400;
    (y, mo, d, s / 3600, s / 60 % 60, s % 60, unix_ms % 1000)
}

/// nginx's `$time_local` in UTC: `04/Dec/2026:05:10:00 +0000`.
#[cfg(test)]
pub fn time_local(unix_ms: u64) -> String {
    let mut out = Vec::with_capacity(26);
    push_time_local(unix_ms, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Append nginx's `$time_local` in UTC, `04/Dec/2026:05:10:00 +0000` (without the formatter:
/// this runs for every line; and the text of the current second is kept, per thread, since
/// most lines share it).
fn push_time_local(unix_ms: u64, out: &mut Vec<u8>) {
    thread_local! {
        static LAST: std::cell::Cell<(u64, [u8; 20])> = const { std::cell::Cell::new((u64::MAX, [0; 20])) };
    }
    let sec = unix_ms / 1000;
    let (cached, text) = LAST.get();
    if cached == sec {
        out.extend_from_slice(&text);
    } else {
        let at = out.len();
        push_day_and_time(unix_ms, out);
        if let Ok(text) = <[u8; 20]>::try_from(&out[at..]) {
            LAST.set((sec, text));
        }
    }
    out.extend_from_slice(b" +0000");
}

/// `04/Dec/2026:05:10:00`.
fn push_day_and_time(unix_ms: u64, out: &mut Vec<u8>) {
    const MONTHS: &[u8; 36] = b"JanFebMarAprMayJunJulAugSepOctNovDec";
    let (y, mo, d, h, mi, s, _) = parts(unix_ms);
    let two = |n: u64| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
    out.extend_from_slice(&two(u64::from(d)));
    out.push(b'/');
    let m = (mo as usize - 1) * 3;
    out.extend_from_slice(&MONTHS[m..m + 3]);
    out.push(b'/');
    out.extend_from_slice(crate::http::decimal(y.max(0) as u64, &mut [0; 20]));
    out.push(b':');
    out.extend_from_slice(&two(h));
    out.push(b':');
    out.extend_from_slice(&two(mi));
    out.push(b':');
    out.extend_from_slice(&two(s));
}

/// Unix seconds as RFC 3339 (before 1970: the epoch).
pub fn rfc3339_secs(unix: i64) -> String {
    rfc3339_ms(u64::try_from(unix).unwrap_or(0).saturating_mul(1000))
}

/// RFC 3339 with milliseconds, UTC: `2026-12-04T05:10:00.123Z`.
pub fn rfc3339_ms(unix_ms: u64) -> String {
    let (y, mo, d, h, mi, s, ms) = parts(unix_ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

/// The workers' end of the log: format here, write there.
#[derive(Debug, Clone)]
pub struct Logger {
    tx: Sender<Vec<u8>>,
    format: LogFormat,
    /// Bytes sent and not written yet (the queue's bound).
    queued: Arc<AtomicUsize>,
}

/// One worker's lines not handed to the writer yet.
#[derive(Debug, Default)]
pub struct LogBatch {
    buf: Vec<u8>,
    lines: u64,
    /// Lines dropped (a full queue) and not yet added to the worker's counter.
    dropped: u64,
}

impl LogBatch {
    /// No line waits in it.
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// The lines dropped since the last call.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }
}

impl Logger {
    /// Format `r`'s line into `batch`, handing the batch over when it is full.
    pub fn append(&self, r: &Record, batch: &mut LogBatch) {
        format(r, self.format, &mut batch.buf);
        batch.lines += 1;
        if batch.buf.len() >= BATCH_BYTES {
            self.flush(batch);
        }
    }

    /// Wait (at most `timeout`) until every line handed over is written and flushed: the
    /// process is about to exit, and the writer thread would die with the lines it still holds.
    pub fn drain(&self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.queued.load(Ordering::Acquire) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Format a TCP connection's line into `batch`, as [`append`](Self::append) does.
    pub fn append_tcp(&self, r: &TcpRecord, batch: &mut LogBatch) {
        format_tcp(r, self.format, &mut batch.buf);
        batch.lines += 1;
        if batch.buf.len() >= BATCH_BYTES {
            self.flush(batch);
        }
    }

    /// Hand `batch` to the writer (the end of a worker's turn). When the queue holds
    /// [`QUEUE_BYTES`] already (or the writer is gone) its lines are dropped and counted in
    /// the batch ([`LogBatch::take_dropped`]).
    pub fn flush(&self, batch: &mut LogBatch) {
        if batch.lines == 0 {
            return;
        }
        let lines = std::mem::take(&mut batch.lines);
        let len = batch.buf.len();
        if self.queued.fetch_add(len, Ordering::AcqRel) + len > QUEUE_BYTES {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            batch.buf.clear();
            batch.dropped += lines;
            return;
        }
        let full = std::mem::replace(&mut batch.buf, Vec::with_capacity(len.min(BATCH_BYTES)));
        if self.tx.send(full).is_err() {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            batch.dropped += lines;
        }
    }
}

/// Start the writer thread for `spec`; `reopen` is set by SIGUSR1. Fails when the file cannot
/// be opened (at start, that stops the proxy with the reason).
pub fn start(spec: &AccessLogSpec, reopen: Arc<AtomicBool>) -> io::Result<Logger> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let mut sink = Sink::open(&spec.path)?;
    let queued = Arc::new(AtomicUsize::new(0));
    let written = Arc::clone(&queued);
    std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || writer(&mut sink, &rx, &reopen, &written))?;
    Ok(Logger {
        tx,
        format: spec.format,
        queued,
    })
}

/// Where lines are written.
enum Sink {
    Stdout(BufWriter<io::Stdout>),
    File(std::path::PathBuf, BufWriter<File>),
}

impl Sink {
    fn open(target: &LogTarget) -> io::Result<Sink> {
        Ok(match target {
            LogTarget::Stdout => Sink::Stdout(BufWriter::new(io::stdout())),
            LogTarget::File(path) => Sink::File(path.clone(), BufWriter::new(append(path)?)),
        })
    }

    fn out(&mut self) -> &mut dyn Write {
        match self {
            Sink::Stdout(w) => w,
            Sink::File(_, w) => w,
        }
    }

    /// Reopen the file (after logrotate moved it away).
    fn reopen(&mut self) {
        if let Sink::File(path, w) = self {
            let _ = w.flush();
            match append(path) {
                Ok(f) => {
                    *w = BufWriter::new(f);
                    log::info!("access log {} reopened", path.display());
                }
                Err(e) => log::warn!("cannot reopen the access log {}: {e}", path.display()),
            }
        }
    }
}

fn append(path: &std::path::Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// The writer: take batches as they come, flush whenever the queue is momentarily empty,
/// reopen on request.
fn writer(sink: &mut Sink, rx: &Receiver<Vec<u8>>, reopen: &AtomicBool, queued: &AtomicUsize) {
    let mut failed = false;
    // Bytes written since the last flush: they leave the queue's count once flushed, so that
    // `Logger::drain` knows when the lines are in the file.
    let mut unflushed = 0usize;
    let mut write = |sink: &mut Sink, batch: &[u8], unflushed: &mut usize| {
        let result = sink.out().write_all(batch);
        *unflushed += batch.len();
        if let Err(e) = result {
            if !failed {
                log::warn!("cannot write the access log: {e}");
                failed = true;
            }
        }
    };
    loop {
        let batch = match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(batch) => Some(batch),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = sink.out().flush();
                queued.fetch_sub(unflushed, Ordering::AcqRel);
                return;
            }
        };
        if reopen.swap(false, Ordering::AcqRel) {
            sink.reopen();
        }
        if let Some(batch) = batch {
            write(sink, &batch, &mut unflushed);
            while let Ok(more) = rx.try_recv() {
                write(sink, &more, &mut unflushed);
            }
        }
        if let Err(e) = sink.out().flush() {
            log::warn!("cannot write the access log: {e}");
        }
        queued.fetch_sub(std::mem::take(&mut unflushed), Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            unix_ms: 1_796_361_000_123, // 2026-12-04T05:10:00.123Z
            client: "192.0.2.7".into(),
            request: b"GET /a?b=\"c\" HTTP/1.1".to_vec(),
            method: "GET".into(),
            target: "/a?b=\"c\"".into(),
            version: "HTTP/1.1",
            host: "example.com".into(),
            status: 200,
            bytes_sent: 612,
            duration_ms: 3,
            pool: "web".into(),
            upstream: "127.0.0.1:8081".into(),
            upstream_ms: Some(2),
            user_agent: "curl/8.5.0".into(),
            referer: Vec::new(),
            tls: "",
        }
    }

    #[test]
    fn time_formats() {
        assert_eq!(time_local(0), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(time_local(1_796_361_000_123), "04/Dec/2026:05:10:00 +0000");
        assert_eq!(rfc3339_ms(1_796_361_000_123), "2026-12-04T05:10:00.123Z");
        assert_eq!(
            rfc3339_ms(951_782_400_000),
            "2000-02-29T00:00:00.000Z",
            "a leap day"
        );
    }

    #[test]
    fn combined_is_nginxs_byte_for_byte() {
        let mut out = Vec::new();
        format(&record(), LogFormat::Combined, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "192.0.2.7 - - [04/Dec/2026:05:10:00 +0000] \"GET /a?b=\\x22c\\x22 HTTP/1.1\" 200 612 \"-\" \"curl/8.5.0\"\n"
        );
        let bad = Record {
            request: Vec::new(),
            method: String::new(),
            status: 400,
            bytes_sent: 16,
            user_agent: "é".into(),
            ..record()
        };
        let mut out = Vec::new();
        format(&bad, LogFormat::Combined, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "192.0.2.7 - - [04/Dec/2026:05:10:00 +0000] \"-\" 400 16 \"-\" \"\\xC3\\xA9\"\n"
        );
    }

    #[test]
    fn a_tcp_connection_is_one_line_in_either_format() {
        let r = TcpRecord {
            unix_ms: 1_796_361_000_123,
            client: "192.0.2.7".into(),
            listener: "0.0.0.0:5432".into(),
            sni: String::new(),
            pool: "pg".into(),
            upstream: "10.0.0.5:5432".into(),
            bytes_in: 5120,
            bytes_out: 98304,
            duration_ms: 1523,
            end: "client_closed",
        };
        let mut out = Vec::new();
        format_tcp(&r, LogFormat::Combined, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "192.0.2.7 - - [04/Dec/2026:05:10:00 +0000] \"TCP 0.0.0.0:5432\" client_closed 5120 98304 \"-\" \"pg\" \"10.0.0.5:5432\" 1523\n"
        );
        out.clear();
        format_tcp(
            &TcpRecord {
                sni: "db.example.com".into(),
                ..r
            },
            LogFormat::Json,
            &mut out,
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "{\"time\":\"2026-12-04T05:10:00.123Z\",\"mode\":\"tcp\",\"client\":\"192.0.2.7\",\"listener\":\"0.0.0.0:5432\",\
             \"sni\":\"db.example.com\",\"pool\":\"pg\",\"upstream\":\"10.0.0.5:5432\",\"bytes_in\":5120,\"bytes_out\":98304,\
             \"duration_ms\":1523,\"end\":\"client_closed\"}\n"
        );
    }

    #[test]
    fn json_has_every_field() {
        let mut out = Vec::new();
        format(&record(), LogFormat::Json, &mut out);
        let line = String::from_utf8(out).unwrap();
        assert_eq!(
            line,
            "{\"time\":\"2026-12-04T05:10:00.123Z\",\"client\":\"192.0.2.7\",\
             \"request\":\"GET /a?b=\\\\x22c\\\\x22 HTTP/1.1\",\"method\":\"GET\",\
             \"target\":\"/a?b=\\\\x22c\\\\x22\",\"version\":\"HTTP/1.1\",\"host\":\"example.com\",\"status\":200,\
             \"bytes_sent\":612,\"duration_ms\":3,\"pool\":\"web\",\"upstream\":\"127.0.0.1:8081\",\
             \"upstream_ms\":2,\"user_agent\":\"curl/8.5.0\",\"referer\":null}\n"
        );
        let local = Record {
            pool: String::new(),
            upstream: String::new(),
            upstream_ms: None,
            ..record()
        };
        let mut out = Vec::new();
        format(&local, LogFormat::Json, &mut out);
        let line = String::from_utf8(out).unwrap();
        assert!(
            line.contains("\"pool\":null,\"upstream\":null,\"upstream_ms\":null"),
            "{line}"
        );
    }

    #[test]
    fn a_full_queue_drops_whole_batches_instead_of_blocking() {
        let (tx, rx) = mpsc::channel();
        let logger = Logger {
            tx,
            format: LogFormat::Combined,
            queued: Arc::new(AtomicUsize::new(QUEUE_BYTES - 1000)),
        };
        let mut batch = LogBatch::default();
        logger.append(&record(), &mut batch);
        logger.append(&record(), &mut batch);
        assert!(rx.try_recv().is_err(), "kept until the turn ends");
        logger.flush(&mut batch);
        assert_eq!(batch.take_dropped(), 0, "room for two lines");
        let sent = rx.try_recv().expect("one batch");
        assert_eq!(sent.iter().filter(|&&b| b == b'\n').count(), 2);
        for _ in 0..20 {
            logger.append(&record(), &mut batch);
        }
        logger.flush(&mut batch);
        assert_eq!(
            batch.take_dropped(),
            20,
            "over the bound: all 20 dropped, at once"
        );
        logger.flush(&mut batch);
        assert_eq!(batch.take_dropped(), 0, "and the batch is empty again");
    }
}
