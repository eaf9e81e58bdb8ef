//! (host, path) → pool: exact host, then wildcard host (longest suffix first), then no host;
//! within one host, the longest path prefix on a segment boundary. Pure: no sockets, no state.
//!
//! Paths are matched in normal form, so that a request cannot reach a pool its route would not
//! give it by spelling the path differently: dot segments removed (`/public/../cart` is
//! `/cart`), percent-encoded unreserved characters decoded (`/%63art` is `/cart`), runs of `/`
//! merged (`//cart` is `/cart`, as nginx's `merge_slashes`). The request goes upstream as it
//! came: only the matching uses the normal form.

use std::borrow::Cow;
use std::collections::HashMap;

/// One route: requests for `host` (exact or `*.suffix`; any when `None`) whose path starts
/// with `path` on a segment boundary (any when `None`) go to pool `pool`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Lowercase, no port, no trailing dot; `*.example.com` for a wildcard.
    pub host: Option<String>,
    /// Normalised like request paths ([`normalize_path`]), no trailing `/` but for `/`.
    pub path: Option<String>,
    /// Index of its pool in the configuration's list of pools.
    pub pool: usize,
}

/// Routes ordered for lookup.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// One catch-all route and nothing else: every request goes to this pool, no work at all.
    only: Option<usize>,
    /// Exact hosts (lowercase, no port, no trailing dot) → their paths.
    exact: HashMap<String, Paths>,
    /// Wildcard hosts as suffixes (`.example.com`), longest first.
    wildcard: Vec<(String, Paths)>,
    /// Routes without a host.
    any_host: Paths,
}

/// The path routes of one host: longest first, `None` (any path) last.
#[derive(Debug, Clone, Default)]
struct Paths(Vec<(Option<String>, usize)>);

impl Paths {
    fn add(&mut self, path: Option<String>, pool: usize) {
        self.0.push((path, pool));
        // Longer prefixes first; any-path last.
        self.0
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.as_ref().map_or(0, |p| p.len() + 1)));
    }

    fn find(&self, path: &str) -> Option<usize> {
        self.0
            .iter()
            .find(|(prefix, _)| prefix.as_deref().is_none_or(|p| prefix_on_segment(p, path)))
            .map(|&(_, pool)| pool)
    }
}

/// `prefix` is a prefix of `path` that ends on a segment boundary: `/cart` matches `/cart`,
/// `/cart/` and `/cart/7`, not `/cartoon`. (`path` is normalised and has no query.)
fn prefix_on_segment(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

impl Table {
    /// The table for `routes`.
    pub fn new(routes: &[RouteSpec]) -> Table {
        let mut t = Table::default();
        if let [RouteSpec {
            host: None,
            path: None,
            pool,
        }] = routes
        {
            t.only = Some(*pool);
            return t;
        }
        for r in routes {
            let path = r.path.clone();
            match r.host.as_deref() {
                None => t.any_host.add(path, r.pool),
                Some(h) if h.starts_with("*.") => {
                    let suffix = h[1..].to_string();
                    match t.wildcard.iter_mut().find(|(s, _)| *s == suffix) {
                        Some((_, paths)) => paths.add(path, r.pool),
                        None => {
                            let mut paths = Paths::default();
                            paths.add(path, r.pool);
                            t.wildcard.push((suffix, paths));
                        }
                    }
                }
                Some(h) => t.exact.entry(h.to_string()).or_default().add(path, r.pool),
            }
        }
        t.wildcard.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        t
    }

    /// Whether every request goes to one pool whatever its host and path.
    pub fn single_pool(&self) -> Option<usize> {
        self.only
    }

    /// The pool for a request to `host` (a Host value or an absolute-form authority) and
    /// `target` (its path and query, as received), or `None`: no route matches.
    #[inline(always)]
    pub fn lookup(&self, host: &[u8], target: &str) -> Option<usize> {
        if let Some(pool) = self.only {
            return Some(pool);
        }
        self.lookup_routes(host, target)
    }

    /// [`lookup`](Self::lookup) over the routes.
    #[inline(never)]
    fn lookup_routes(&self, host: &[u8], target: &str) -> Option<usize> {
        let host = request_host(host);
        let path = normalize_path(target);
        if let Some(paths) = self.exact.get(host.as_ref()) {
            if let Some(pool) = paths.find(&path) {
                return Some(pool);
            }
        }
        for (suffix, paths) in &self.wildcard {
            if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                if let Some(pool) = paths.find(&path) {
                    return Some(pool);
                }
            }
        }
        self.any_host.find(&path)
    }
}

/// A request's host for matching: lowercase, without the port and a trailing dot. `[v6]`
/// literals keep their brackets.
pub fn request_host(host: &[u8]) -> Cow<'_, str> {
    let text = String::from_utf8_lossy(host);
    let without_port = if text.starts_with('[') {
        match text.find(']') {
            Some(end) => &text[..=end],
            None => &text[..],
        }
    } else {
        match text.rfind(':') {
            Some(colon) => &text[..colon],
            None => &text[..],
        }
    };
    let trimmed = without_port.strip_suffix('.').unwrap_or(without_port);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) || trimmed.len() != text.len() {
        Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        text
    }
}

/// The normal form of a request target's path, for matching, so that a path cannot reach
/// another pool by another spelling: no query; every `%XX` decoded once (an encoded `/` or
/// `\\` then separates segments, as it does for a backend that decodes it; `%252F` is the
/// text `%2F`); `\\` read as `/` (as some servers do); path parameters (`;v=1`, Tomcat's
/// `..;`) dropped from each segment; `/` runs merged; dot segments removed (RFC 3986 §5.2.4).
/// A target that is not a path (`*`) stays as it is.
pub fn normalize_path(target: &str) -> Cow<'_, str> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    if !path.starts_with(['/', '\\']) {
        return Cow::Borrowed(path);
    }
    let simple = !path.contains(['%', '\\', ';'])
        && !path.contains("//")
        && !path.split('/').any(|s| s == "." || s == "..");
    if simple {
        return Cow::Borrowed(path);
    }
    let decoded = decode_once(path);
    let decoded = String::from_utf8_lossy(&decoded);
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        // A segment's parameters are not part of its name.
        let name = seg.split(';').next().unwrap_or("");
        match name {
            "" => {
                // Merged runs of '/'; only a last empty segment (a trailing '/') is kept.
                trailing_slash = i == last;
            }
            "." => trailing_slash = i == last,
            ".." => {
                out.pop();
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut result = String::with_capacity(decoded.len());
    for s in &out {
        result.push('/');
        result.push_str(s);
    }
    if trailing_slash || result.is_empty() {
        result.push('/');
    }
    Cow::Owned(result)
}

/// `path` with every `%XX` decoded once (a `%` without two hex digits stays) and every `\\`,
/// received or decoded, made a `/`.
fn decode_once(path: &str) -> Vec<u8> {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let mut c = b[i];
        i += 1;
        if c == b'%' {
            let hex = |at: usize| b.get(at).and_then(|&d| (d as char).to_digit(16));
            if let (Some(h), Some(l)) = (hex(i), hex(i + 1)) {
                c = (h * 16 + l) as u8;
                i += 2;
            }
        }
        out.push(if c == b'\\' { b'/' } else { c });
    }
    out
}

/// A route's `host` as written → its normal form, or why it is not a host.
pub fn normalize_route_host(host: &str) -> Result<String, String> {
    let (wild, name) = match host.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, host),
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let is_v6 = name.starts_with('[') && name.ends_with(']');
    if name.is_empty()
        || name.contains(':') && !is_v6
        || (!is_v6 && !name.split('.').all(label_ok))
        || (is_v6
            && name[1..name.len() - 1]
                .parse::<std::net::Ipv6Addr>()
                .is_err())
        || (wild && is_v6)
    {
        return Err(format!(
            "'{host}' is not a host name (or '*.' and a domain), without a port"
        ));
    }
    let name = name.to_ascii_lowercase();
    Ok(if wild { format!("*.{name}") } else { name })
}

/// A route's `path` as written → its normal form, or why it is not a path prefix.
pub fn normalize_route_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/')
        || path.contains(['?', '#'])
        || !path.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(format!(
            "'{path}' must start with '/' and have no query, fragment, space or control character"
        ));
    }
    let normal = normalize_path(path).into_owned();
    // A prefix matches on segment boundaries: `/cart/` and `/cart` mean the same.
    let trimmed = normal.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(host: Option<&str>, path: Option<&str>, pool: usize) -> RouteSpec {
        RouteSpec {
            host: host.map(|h| normalize_route_host(h).unwrap()),
            path: path.map(|p| normalize_route_path(p).unwrap()),
            pool,
        }
    }

    /// Routes by exact host, wildcard host and path: api → 1, *.example.com/cart → 2, default → 0.
    fn table() -> Table {
        Table::new(&[
            spec(Some("api.example.com"), None, 1),
            spec(Some("*.example.com"), Some("/cart"), 2),
            spec(None, None, 0),
            spec(Some("*.shop.example.com"), None, 3),
            spec(Some("api.example.com"), Some("/v2/admin"), 4),
            spec(None, Some("/static"), 5),
        ])
    }

    #[test]
    fn the_most_specific_route_wins() {
        let t = table();
        let l = |h: &str, p: &str| t.lookup(h.as_bytes(), p);
        assert_eq!(l("api.example.com", "/"), Some(1));
        assert_eq!(
            l("API.Example.COM:8080", "/x"),
            Some(1),
            "case and port ignored"
        );
        assert_eq!(l("api.example.com.", "/x"), Some(1), "trailing dot ignored");
        assert_eq!(
            l("api.example.com", "/v2/admin/users"),
            Some(4),
            "longer path wins"
        );
        assert_eq!(
            l("api.example.com", "/cart"),
            Some(1),
            "an exact host beats a wildcard"
        );
        assert_eq!(l("www.example.com", "/cart"), Some(2));
        assert_eq!(l("www.example.com", "/cart/7?x=1"), Some(2));
        assert_eq!(l("www.example.com", "/cart?x"), Some(2));
        assert_eq!(
            l("www.example.com", "/cartoon"),
            Some(0),
            "not on a segment boundary"
        );
        assert_eq!(
            l("example.com", "/cart"),
            Some(0),
            "*.example.com needs a subdomain"
        );
        assert_eq!(
            l("a.shop.example.com", "/"),
            Some(3),
            "the longer suffix first"
        );
        assert_eq!(l("a.shop.example.com", "/cart"), Some(3), "then its paths");
        assert_eq!(l("other.test", "/static/app.js"), Some(5));
        assert_eq!(l("other.test", "/"), Some(0));
        assert_eq!(l("[::1]:80", "/"), Some(0));
    }

    #[test]
    fn no_default_route_means_no_match() {
        let t = Table::new(&[spec(Some("a.test"), None, 0), spec(None, Some("/api"), 1)]);
        assert_eq!(t.lookup(b"a.test", "/"), Some(0));
        assert_eq!(t.lookup(b"b.test", "/api/x"), Some(1));
        assert_eq!(t.lookup(b"b.test", "/"), None);
        assert_eq!(t.single_pool(), None);
        let only = Table::new(&[spec(None, None, 3)]);
        assert_eq!(only.single_pool(), Some(3));
        assert_eq!(only.lookup(b"anything", "/../x"), Some(3));
    }

    #[test]
    fn spelling_the_path_differently_does_not_change_the_route() {
        // Route /cart to pool 2 and everything else to 0: each spelling of /cart must reach 2,
        // and what only looks like /cart must not.
        let t = Table::new(&[spec(None, Some("/cart"), 2), spec(None, None, 0)]);
        for p in [
            "/cart",
            "/public/../cart",
            "/./cart",
            "/%63art",
            "/%63%61%72%74/x",
            "//cart",
            "/cart/./",
            "/a/b/../../cart/1",
            "/../cart",
            "/%2e%2e/cart",
            "/x/%2E%2E/cart",
            "/%2fcart",
            "/x/..%2fcart",
            "/x\\..\\cart",
            "/x/..;/cart",
            "/cart;jsessionid=1/x",
        ] {
            assert_eq!(t.lookup(b"h", p), Some(2), "{p}");
        }
        for p in [
            "/cartoon",
            "/carts",
            "/cart/..%2f",
            "/c%61rtx",
            "/cart/../x",
            "/x/cart",
        ] {
            assert_eq!(t.lookup(b"h", p), Some(0), "{p}");
        }
    }

    #[test]
    fn normal_forms() {
        assert_eq!(normalize_path("/a/./b/../c"), "/a/c");
        assert_eq!(normalize_path("/a/b/.."), "/a/");
        assert_eq!(normalize_path("/.."), "/");
        assert_eq!(normalize_path("/a//b///c?x=/../"), "/a/b/c");
        assert_eq!(normalize_path("/%7euser/%41"), "/~user/A");
        assert_eq!(normalize_path("/a%2fb%2F"), "/a/b/");
        assert_eq!(normalize_path("/x/..%2Fapi"), "/api");
        assert_eq!(normalize_path("/x/..%5capi"), "/api");
        assert_eq!(normalize_path("/x\\..\\api"), "/api");
        assert_eq!(normalize_path("\\api"), "/api");
        assert_eq!(normalize_path("/x/..;/api;v=1/y"), "/api/y");
        assert_eq!(normalize_path("/x/%2e%2e%3Bv/api"), "/api");
        assert_eq!(normalize_path("/x/..%252Fapi"), "/x/..%2Fapi");
        assert_eq!(normalize_path("/%zz"), "/%zz");
        assert_eq!(normalize_path("/100%"), "/100%");
        assert_eq!(normalize_path("/é/../x"), "/x");
        assert_eq!(normalize_path("*"), "*");
        assert_eq!(normalize_path("/plain/path"), "/plain/path");
        assert_eq!(request_host(b"Example.COM:80"), "example.com");
        assert_eq!(request_host(b"[::1]:8080"), "[::1]");
        assert_eq!(request_host(b"a.test."), "a.test");
        assert_eq!(request_host(b"plain"), "plain");
    }

    #[test]
    fn route_hosts_and_paths_are_checked() {
        assert_eq!(
            normalize_route_host("API.example.com"),
            Ok("api.example.com".into())
        );
        assert_eq!(
            normalize_route_host("*.Example.com."),
            Ok("*.example.com".into())
        );
        assert_eq!(normalize_route_host("[::1]"), Ok("[::1]".into()));
        for bad in [
            "", "a:80", "*", "*.", "a..b", "a b", "*.[::1]", "a/b", "x.*.y",
        ] {
            assert!(normalize_route_host(bad).is_err(), "{bad}");
        }
        assert_eq!(normalize_route_path("/cart/"), Ok("/cart".into()));
        assert_eq!(normalize_route_path("/"), Ok("/".into()));
        assert_eq!(normalize_route_path("/a/../b"), Ok("/b".into()));
        for bad in ["cart", "/a?b", "/a b", "/a#b", ""] {
            assert!(normalize_route_path(bad).is_err(), "{bad}");
        }
    }
}
