//! Values as flags and the config file write them: durations (`500ms`, `10s`), sizes (`8k`,
//! `32KiB`), counts, listen and upstream addresses, and the formatting back for `--check`.
//! Pure functions over `&str` (name resolution aside), shared by clap's value parsers and the
//! file loader, so a value means the same wherever it is written.

use crate::http::rewrite::ForwardedFor;
use crate::text::redacted;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// An upstream address as written and as resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The address as the user wrote it, for logs and the status page.
    pub name: String,
    /// The resolved address we connect to.
    pub addr: SocketAddr,
}

/// A duration as `--check` prints it: whole hours, minutes or seconds when exact, else
/// milliseconds (the flags' own units, so the output reads back to the same value to the
/// millisecond).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".to_string()
    } else if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 && ms >= 120_000 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A size as `--check` prints it: `MiB` or `KiB` when exact, else bytes.
pub fn format_size(n: usize) -> String {
    if n != 0 && n % (1 << 20) == 0 {
        format!("{}MiB", n >> 20)
    } else if n != 0 && n % 1024 == 0 {
        format!("{}KiB", n >> 10)
    } else {
        n.to_string()
    }
}

/// `append` or `replace`, as written.
pub fn forwarded_for_name(f: ForwardedFor) -> &'static str {
    match f {
        ForwardedFor::Append => "append",
        ForwardedFor::Replace => "replace",
    }
}

/// Parse a log level name: `off`, `error`, `warn`, `info`, `debug`, `trace`.
pub fn parse_log_level(s: &str) -> Result<log::LevelFilter, String> {
    s.parse::<log::LevelFilter>()
        .map_err(|_| format!("'{s}' is not one of off, error, warn, info, debug, trace"))
}

/// A size like [`parse_size`], where 0 (off) is allowed too.
pub fn parse_size_or_zero(s: &str) -> Result<usize, String> {
    if s.trim() == "0" {
        Ok(0)
    } else {
        parse_size(s)
    }
}

/// Parse `append` or `replace` for --forwarded-for.
pub fn parse_forwarded_for(s: &str) -> Result<ForwardedFor, String> {
    match s {
        "append" => Ok(ForwardedFor::Append),
        "replace" => Ok(ForwardedFor::Replace),
        _ => Err(format!("'{s}' is not one of append, replace")),
    }
}

/// The number of CPU cores, or 1 when it cannot be told.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Parse a duration like `10s`, `500ms`, `2m`, `1h`; a decimal fraction (`1.5s`) is allowed.
/// Zero is allowed here; flags that need a positive value check that themselves.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let unit_nanos: u128 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        "" if number.is_empty() => return Err("empty duration".to_string()),
        "" => {
            return Err(format!(
                "missing unit in duration '{s}' (use ms, s, m, h or d)"
            ))
        }
        _ => {
            return Err(format!(
                "unknown unit in duration '{s}' (use ms, s, m, h or d)"
            ))
        }
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !(fraction.is_empty() || digits(fraction)) || number.ends_with('.') {
        return Err(format!("invalid number in duration '{s}'"));
    }
    let too_large = || format!("duration '{s}' is too large");
    if whole.len() > 20 {
        return Err(too_large());
    }
    if fraction.len() > 9 {
        return Err(format!("duration '{s}' has more than 9 decimals"));
    }
    // At most 20 and 9 digits: the parts fit in u128, and so do the products below.
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    let mut nanos = whole * unit_nanos;
    if !fraction.is_empty() {
        let scale = 10u128.pow(fraction.len() as u32);
        let fraction: u128 = fraction.parse().map_err(|_| too_large())?;
        nanos += fraction * unit_nanos / scale;
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_large())?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// [`parse_duration`], refusing zero: a zero timeout would expire everything at once.
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        Duration::ZERO => Err(format!("duration '{s}' must be greater than zero")),
        d => Ok(d),
    }
}

/// Parse a byte size: `8192`, `8k`, `32KiB`, `1m`, `1MiB` (k = 1024, m = 1024²). Must be > 0.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let multiplier: usize = match suffix {
        "" => 1,
        "k" | "K" | "KiB" | "kiB" => 1024,
        "m" | "M" | "MiB" => 1024 * 1024,
        _ => {
            return Err(format!(
                "invalid size '{s}' (use a number of bytes, optionally with k or m)"
            ))
        }
    };
    let bad = || format!("invalid size '{s}' (use a number of bytes, optionally with k or m)");
    let n: usize = number.parse().map_err(|_| bad())?;
    let size = n
        .checked_mul(multiplier)
        .ok_or_else(|| format!("size '{s}' is too large"))?;
    if size == 0 {
        return Err(format!("size '{s}' must be greater than zero"));
    }
    Ok(size)
}

/// The largest `max_head`: every connection's buffers are sized from it (four of them).
pub const MAX_HEAD_BOUND: usize = 1 << 20;
/// The largest `request_buffer`: each connection waiting on an upstream may hold this much.
pub const REQUEST_BUFFER_BOUND: usize = 16 << 20;

/// `size` unless it is over `bound`: then an error that names the bound and why it is there.
fn within(size: usize, bound: usize, s: &str, why: &str) -> Result<usize, String> {
    if size > bound {
        return Err(format!(
            "'{s}' is over the bound of {} ({why})",
            format_size(bound)
        ));
    }
    Ok(size)
}

/// Parse `max_head`: a size of at most [`MAX_HEAD_BOUND`].
pub fn parse_head_size(s: &str) -> Result<usize, String> {
    within(
        parse_size(s)?,
        MAX_HEAD_BOUND,
        s,
        "each connection's buffers are sized from it",
    )
}

/// Parse `request_buffer`: 0, or a size of at most [`REQUEST_BUFFER_BOUND`].
pub fn parse_request_buffer(s: &str) -> Result<usize, String> {
    within(
        parse_size_or_zero(s)?,
        REQUEST_BUFFER_BOUND,
        s,
        "each connection may hold this much",
    )
}

/// A plain count of at least 1 (workers, fields).
pub fn parse_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{s}' is not a whole number")),
    }
}

/// The listen backlog: 1 to u32::MAX (the kernel caps it at somaxconn anyway).
pub fn parse_backlog(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{s}' is not a whole number up to {}", u32::MAX)),
    }
}

/// Split `host:port` or `[v6]:port` into the host (brackets removed) and the port text.
/// `whole` is what the user wrote, for the error messages.
fn split_host_port<'a>(s: &'a str, whole: &str) -> Result<(&'a str, &'a str), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("missing ']' in '{whole}'"))?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!("invalid IPv6 address '{host}' in '{whole}'"));
        }
        match after.strip_prefix(':') {
            Some(port) => Ok((host, port)),
            None if after.is_empty() => Err(format!("missing port in '{whole}'")),
            None => Err(format!("unexpected '{after}' after ']' in '{whole}'")),
        }
    } else {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("missing port in '{whole}'"))?;
        if host.contains(':') {
            return Err(format!(
                "IPv6 addresses need brackets: '[{host}]:PORT' (in '{whole}')"
            ));
        }
        if host.is_empty() {
            return Err(format!("missing host in '{whole}'"));
        }
        Ok((host, port))
    }
}

/// Parse a port; `allow_zero` for a listener (port 0: the kernel picks one, handy in tests).
fn parse_port(port: &str, whole: &str, allow_zero: bool) -> Result<u16, String> {
    if port.is_empty() {
        return Err(format!("missing port in '{whole}'"));
    }
    match port.parse::<u16>() {
        Ok(0) if !allow_zero => Err(format!("invalid port '0' in '{whole}'")),
        Ok(p) if port.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(format!("invalid port '{port}' in '{whole}'")),
    }
}

/// Resolve `host` (an IP literal or a name) with `port`; the first address of a name wins.
/// Returns the address and, when the name had several, a notice saying which one was taken.
fn resolve(host: &str, port: u16) -> Result<(SocketAddr, Option<String>), String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok((SocketAddr::new(ip, port), None));
    }
    let mut addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{host}': {e}"))?;
    let first = addrs
        .next()
        .ok_or_else(|| format!("cannot resolve '{host}': no address"))?;
    let others = addrs.count();
    let notice = (others > 0).then(|| {
        format!(
            "'{host}' resolves to {} addresses; using the first, {first}",
            others + 1
        )
    });
    Ok((first, notice))
}

/// Parse `:PORT`, `HOST:PORT`, `[V6]:PORT` for --listen. Returns (addr, dual_stack).
///
/// Only `:PORT` is dual-stack (`[::]:PORT` accepting IPv4 too); an explicit `[::]:PORT` means
/// IPv6 only, and `0.0.0.0:PORT` IPv4 only. A name is resolved now and its first address used.
pub fn parse_listen(s: &str) -> Result<(SocketAddr, bool), String> {
    if let Some(port) = s.strip_prefix(':') {
        let port = parse_port(port, s, true)?;
        return Ok((SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)), true));
    }
    let (host, port) = split_host_port(s, s)?;
    let port = parse_port(port, s, true)?;
    let (addr, _) = resolve(host, port)?;
    Ok((addr, false))
}

/// Split `host:port`, `[v6]:port` or `http://host:port` (an upstream as written) into its
/// host and port, resolving nothing.
fn upstream_authority(s: &str) -> Result<(&str, u16), String> {
    let authority = match s.split_once("://") {
        None => s,
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
            return Err("https upstreams are not supported".to_string())
        }
        Some((scheme, _)) => {
            return Err(format!(
                "unsupported scheme '{scheme}' in '{s}' (use http:// or none)"
            ))
        }
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "'{s}' must be just a host and port (no path, query or user)"
        ));
    }
    let (host, port) = split_host_port(authority, s)?;
    let port = parse_port(port, s, false)?;
    Ok((host, port))
}

/// Parse and resolve `host:port`, `[v6]:port` or `http://host:port` for --upstream.
///
/// The name is kept as written, for logs. A name resolving to several addresses uses the first
/// one, and the notice about it comes back too.
pub fn parse_upstream_noting(s: &str) -> Result<(Address, Option<String>), String> {
    let (host, port) = upstream_authority(s)?;
    let (addr, notice) = resolve(host, port)?;
    let notice = notice.map(|n| {
        format!("upstream {s}: {n} (resolve = true in a pool makes every address a member)")
    });
    Ok((
        Address {
            name: s.to_string(),
            addr,
        },
        notice,
    ))
}

/// An upstream `resolve = true` makes a name of: its host (a DNS name, lowercase, no
/// trailing dot) and port. An IP address is refused: there is nothing to look up.
pub fn parse_upstream_name(s: &str) -> Result<(String, u16), String> {
    let (host, port) = upstream_authority(s)?;
    if host.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "'{host}' is an IP address: resolve = true is for names"
        ));
    }
    Ok((parse_dns_name(host)?, port))
}

/// A DNS name as a lookup takes it: letters, digits, `-` and `_` in dot-separated labels of
/// 1 to 63 bytes, 253 bytes at most; lowercased, a trailing dot dropped.
pub fn parse_dns_name(s: &str) -> Result<String, String> {
    let name = s.strip_suffix('.').unwrap_or(s);
    let good_label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(good_label) {
        return Err(format!("'{s}' is not a DNS name"));
    }
    Ok(name.to_ascii_lowercase())
}

/// A DNS server of `[dns] servers`: `IP` (port 53) or `IP:PORT` / `[V6]:PORT`.
pub fn parse_dns_server(s: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    s.parse::<SocketAddr>()
        .map_err(|_| format!("'{s}' is not IP or IP:PORT"))
}

/// A share in percent, `20%` (0 to 100).
pub fn parse_percent(s: &str) -> Result<u32, String> {
    let digits = s
        .strip_suffix('%')
        .ok_or_else(|| format!("'{s}' must be a percentage such as \"20%\""))?;
    match digits.trim().parse::<u32>() {
        Ok(n) if n <= 100 && !digits.trim().is_empty() => Ok(n),
        _ => Err(format!("'{s}' must be a whole percentage from 0% to 100%")),
    }
}

/// The log level for `verbose` `-v`s and `quiet` `-q`s (they offset each other).
pub fn log_level(verbose: u8, quiet: u8) -> log::LevelFilter {
    use log::LevelFilter::*;
    match i16::from(verbose) - i16::from(quiet) {
        i16::MIN..=-3 => Off,
        -2 => Error,
        -1 => Warn,
        0 => Info,
        1 => Debug,
        _ => Trace,
    }
}

/// Whether `url` is a Redis URL we can use (`redis://[user:password@]host[:port][/db]`, or
/// `redis+unix:///path`): `[client_limits] shared`.
pub fn check_redis_url(url: &str) -> Result<(), String> {
    if url.starts_with("rediss://") {
        return Err("TLS (rediss://) is not supported; use redis:// on a trusted network".into());
    }
    redis::Client::open(url)
        .map(|_| ())
        .map_err(|e| format!("'{}' is not a Redis URL: {e}", redacted(url)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn v4(a: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::from(a), port))
    }

    /// An upstream address without the notice.
    fn parse_upstream(s: &str) -> Result<Address, String> {
        parse_upstream_noting(s).map(|(upstream, _)| upstream)
    }

    #[test]
    fn formatting_reads_back() {
        for d in [
            "0s", "500ms", "1500ms", "10s", "60s", "2m", "90s", "1h", "36h",
        ] {
            let v = parse_duration(d).unwrap();
            assert_eq!(format_duration(v), d);
        }
        for n in ["1", "1000", "8KiB", "1MiB", "1025", "64KiB", "3MiB"] {
            let v = parse_size(n).unwrap();
            assert_eq!(format_size(v), n);
        }
        assert_eq!(format_size(0), "0");
        assert_eq!(parse_log_level("debug"), Ok(log::LevelFilter::Debug));
        assert!(parse_log_level("loud").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.25m"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("1.5ms"), Ok(Duration::from_micros(1500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(
            parse_duration("10"),
            Err("missing unit in duration '10' (use ms, s, m, h or d)".to_string())
        );
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(
            parse_duration("10w"),
            Err("unknown unit in duration '10w' (use ms, s, m, h or d)".to_string())
        );
        assert_eq!(parse_duration(""), Err("empty duration".to_string()));
        for bad in ["s", ".5s", "1.s", "1..5s", "-1s", "1 s", " 1s", "1.2.3s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_duration("99999999999999999999999h").is_err());
        assert!(parse_duration("1.0000000001s").is_err());
        assert_eq!(
            parse_positive_duration("0ms"),
            Err("duration '0ms' must be greater than zero".to_string())
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8192"), Ok(8192));
        assert_eq!(parse_size("8k"), Ok(8192));
        assert_eq!(parse_size("32K"), Ok(32768));
        assert_eq!(parse_size("32KiB"), Ok(32768));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert_eq!(
            parse_size("8kb"),
            Err("invalid size '8kb' (use a number of bytes, optionally with k or m)".to_string())
        );
        for bad in ["", "k", "-1", "1.5k", "0", "0k", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn listen_forms() {
        let any6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, 8000));
        assert_eq!(parse_listen(":8000"), Ok((any6, true)));
        assert_eq!(
            parse_listen("127.0.0.1:8000"),
            Ok((v4([127, 0, 0, 1], 8000), false))
        );
        assert_eq!(
            parse_listen("0.0.0.0:80"),
            Ok((v4([0, 0, 0, 0], 80), false))
        );
        assert_eq!(
            parse_listen("[::1]:8000"),
            Ok((SocketAddr::from((Ipv6Addr::LOCALHOST, 8000)), false))
        );
        assert_eq!(parse_listen("[::]:8000"), Ok((any6, false)));
        assert_eq!(parse_listen(":0").map(|(a, _)| a.port()), Ok(0));
        let (local, dual) = parse_listen("localhost:8000").unwrap();
        assert!(local.ip().is_loopback() && local.port() == 8000 && !dual);
        assert_eq!(
            parse_listen("8000"),
            Err("missing port in '8000'".to_string())
        );
        assert_eq!(parse_listen(":"), Err("missing port in ':'".to_string()));
        assert_eq!(
            parse_listen(":http"),
            Err("invalid port 'http' in ':http'".to_string())
        );
        assert_eq!(
            parse_listen(":65536"),
            Err("invalid port '65536' in ':65536'".to_string())
        );
        assert_eq!(
            parse_listen(":+80"),
            Err("invalid port '+80' in ':+80'".to_string())
        );
        assert!(parse_listen("::1:8000").is_err());
        assert!(parse_listen("[::1]").is_err());
        assert!(parse_listen("[nope]:80").is_err());
    }

    #[test]
    fn upstream_forms() {
        let up = |s: &str| parse_upstream(s).map(|u| (u.name, u.addr));
        let a = v4([10, 0, 0, 1], 8080);
        assert_eq!(up("10.0.0.1:8080"), Ok(("10.0.0.1:8080".to_string(), a)));
        assert_eq!(
            up("http://10.0.0.1:8080"),
            Ok(("http://10.0.0.1:8080".to_string(), a))
        );
        assert_eq!(up("HTTP://10.0.0.1:8080/").map(|(_, a)| a), Ok(a));
        assert_eq!(
            up("[::1]:80").map(|(_, a)| a),
            Ok(SocketAddr::from((Ipv6Addr::LOCALHOST, 80)))
        );
        assert_eq!(
            up("http://[::1]:80/").map(|(_, a)| a),
            Ok(SocketAddr::from((Ipv6Addr::LOCALHOST, 80)))
        );
        let (name, addr) = up("localhost:9000").unwrap();
        assert_eq!(name, "localhost:9000");
        assert!(addr.ip().is_loopback() && addr.port() == 9000);
    }

    #[test]
    fn upstream_errors() {
        let err = |s: &str| parse_upstream(s).map(|u| u.addr).unwrap_err();
        assert_eq!(
            err("https://10.0.0.1:443"),
            "https upstreams are not supported"
        );
        assert_eq!(err("HTTPS://x:443"), "https upstreams are not supported");
        assert_eq!(err("10.0.0.1"), "missing port in '10.0.0.1'");
        assert_eq!(err("http://10.0.0.1"), "missing port in 'http://10.0.0.1'");
        assert_eq!(err("10.0.0.1:"), "missing port in '10.0.0.1:'");
        assert_eq!(err("10.0.0.1:0"), "invalid port '0' in '10.0.0.1:0'");
        assert_eq!(
            err("10.0.0.1:99999"),
            "invalid port '99999' in '10.0.0.1:99999'"
        );
        assert_eq!(err("10.0.0.1:x"), "invalid port 'x' in '10.0.0.1:x'");
        assert_eq!(err("[::1]"), "missing port in '[::1]'");
        assert_eq!(
            err("::1:80"),
            "IPv6 addresses need brackets: '[::1]:PORT' (in '::1:80')"
        );
        assert_eq!(err(":80"), "missing host in ':80'");
        assert_eq!(
            err("ftp://x:21"),
            "unsupported scheme 'ftp' in 'ftp://x:21' (use http:// or none)"
        );
        assert_eq!(
            err("http://x:80/api"),
            "'http://x:80/api' must be just a host and port (no path, query or user)"
        );
        assert!(
            err("no-such-host.invalid:80").starts_with("cannot resolve 'no-such-host.invalid': ")
        );
    }

    #[test]
    fn redis_urls_are_checked() {
        assert_eq!(check_redis_url("redis://127.0.0.1:6379/0"), Ok(()));
        assert_eq!(check_redis_url("redis://:secret@redis.internal/2"), Ok(()));
        assert!(check_redis_url("rediss://h:6380").is_err());
        assert!(check_redis_url("http://h:6379").is_err());
    }
}
