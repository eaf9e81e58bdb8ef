//! The effective configuration as TOML, every default filled in (`--check`): what the proxy
//! would run with, in the file's own keys, so it can be read back as a config file.

use super::defaults::MAX_DEFAULT_IDLE;
use super::spec::{Check, Config, PoolSpec, Rate, Strategy};
use super::values::{format_duration, format_size, forwarded_for_name};
use std::fmt::Write;

/// A TOML string literal.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The listen address as written in the file (`:PORT` for the dual-stack wildcard).
fn listen(cfg: &Config) -> String {
    if cfg.dual_stack {
        format!(":{}", cfg.listen.port())
    } else {
        cfg.listen.to_string()
    }
}

/// `cfg` as a config file.
pub fn effective(cfg: &Config) -> String {
    let mut out = String::new();
    let o = &mut out;
    let _ = writeln!(
        o,
        "# The effective configuration: every key, defaults filled in."
    );
    let _ = writeln!(o, "listen = {}", quote(&listen(cfg)));
    let _ = writeln!(o, "workers = {}", cfg.workers);
    for (key, d) in [
        ("health_interval", cfg.health_interval),
        ("health_timeout", cfg.health_timeout),
        ("connect_timeout", cfg.connect_timeout),
        ("client_header_timeout", cfg.client_header_timeout),
        ("keepalive_timeout", cfg.keepalive_timeout),
        ("read_timeout", cfg.read_timeout),
        ("write_timeout", cfg.write_timeout),
        ("shutdown_timeout", cfg.shutdown_timeout),
    ] {
        let _ = writeln!(o, "{key} = {}", quote(&format_duration(d)));
    }
    let _ = writeln!(o, "backlog = {}", cfg.backlog);
    let _ = writeln!(
        o,
        "max_request_line = {}",
        quote(&format_size(cfg.limits.max_request_line))
    );
    let _ = writeln!(o, "max_head = {}", quote(&format_size(cfg.limits.max_head)));
    let _ = writeln!(o, "max_fields = {}", cfg.limits.max_fields);
    match cfg.upstream_idle {
        Some(n) => {
            let _ = writeln!(o, "upstream_idle = {n}");
        }
        None => {
            let _ = writeln!(
                o,
                "# upstream_idle: not set, a tenth of the open-files limit at start (at most {})",
                MAX_DEFAULT_IDLE
            );
        }
    }
    let _ = writeln!(
        o,
        "upstream_idle_timeout = {}",
        quote(&format_duration(cfg.upstream_idle_timeout))
    );
    let _ = writeln!(o, "upstream_max_requests = {}", cfg.upstream_max_requests);
    if cfg.splice_min == cfg.splice_min_response {
        let _ = writeln!(o, "splice_min = {}", quote(&format_size(cfg.splice_min)));
    } else {
        let _ = writeln!(
            o,
            "# splice_min: not set, {} for request bodies and tunnels, {} for response bodies",
            format_size(cfg.splice_min),
            format_size(cfg.splice_min_response)
        );
    }
    let _ = writeln!(
        o,
        "request_buffer = {}",
        quote(&format_size(cfg.request_buffer))
    );
    match cfg.max_connections {
        Some(n) => {
            let _ = writeln!(o, "max_connections = {n}");
        }
        None => {
            let _ = writeln!(
                o,
                "# max_connections: not set, derived from the open-files limit at start"
            );
        }
    }
    let _ = writeln!(
        o,
        "forwarded_for = {}",
        quote(forwarded_for_name(cfg.forwarded_for))
    );
    let _ = writeln!(o, "underscores_in_headers = {}", cfg.underscores_in_headers);
    let _ = writeln!(o, "proxy_protocol = {}", cfg.proxy_protocol);
    let blocks: Vec<String> = cfg
        .proxy_protocol_from
        .iter()
        .map(|c| quote(&c.to_string()))
        .collect();
    let _ = writeln!(o, "proxy_protocol_from = [{}]", blocks.join(", "));
    let _ = writeln!(
        o,
        "log_level = {}",
        quote(&cfg.log_level.to_string().to_ascii_lowercase())
    );
    // A section that is not set is named all the same, with what its absence means.
    match &cfg.tls {
        Some(t) => tls_table(o, t),
        None => {
            let _ = writeln!(o, "\n# [tls]: not set, no HTTPS listener");
        }
    }
    match &cfg.acme {
        Some(a) => acme_table(o, a),
        None => {
            let _ = writeln!(o, "\n# [acme]: not set, no certificates ordered");
        }
    }
    match cfg.admin {
        Some(admin) => {
            let _ = writeln!(o, "\n[admin]\nlisten = {}", quote(&admin.to_string()));
            match &cfg.admin_token {
                Some((path, _)) => {
                    let _ = writeln!(o, "token_file = {}", quote(&path.to_string_lossy()));
                }
                None => {
                    let _ = writeln!(
                        o,
                        "# token_file: not set, the pages answer loopback clients only"
                    );
                }
            }
        }
        None => {
            let _ = writeln!(o, "\n# [admin]: not set, no admin listener");
        }
    }
    match &cfg.access_log {
        Some(log) => {
            let _ = writeln!(
                o,
                "\n[access_log]\npath = {}\nformat = {}",
                quote(&log.path.describe()),
                quote(log.format.name())
            );
        }
        None => {
            let _ = writeln!(o, "\n# [access_log]: not set, no access log");
        }
    }
    let limits = &cfg.client_limits;
    if limits.rate.is_none() && limits.connections.is_none() && limits.shared.is_none() {
        let _ = writeln!(
            o,
            "\n# [client_limits]: not set, no rate or connection limit per client"
        );
    }
    if limits.rate.is_some() || limits.connections.is_some() {
        let _ = writeln!(o, "\n[client_limits]");
        rate(o, limits.rate);
        if let Some(c) = limits.connections {
            let _ = writeln!(o, "connections = {c}");
        }
        let _ = writeln!(o, "max_clients = {}", limits.max_clients);
    }
    if let Some(url) = &limits.shared {
        if limits.rate.is_none() && limits.connections.is_none() {
            let _ = writeln!(o, "\n[client_limits]");
        }
        let _ = writeln!(o, "shared = {}", quote(url));
    }
    let d = &cfg.dns;
    let _ = writeln!(o, "\n[dns]");
    if d.servers.is_empty() {
        let _ = writeln!(o, "# servers: not set, the nameservers of /etc/resolv.conf");
    } else {
        let list: Vec<String> = d.servers.iter().map(|s| quote(&s.to_string())).collect();
        let _ = writeln!(o, "servers = [{}]", list.join(", "));
    }
    let _ = writeln!(o, "interval = {}", quote(&format_duration(d.interval)));
    let _ = writeln!(o, "timeout = {}", quote(&format_duration(d.timeout)));
    for pool in &cfg.pools {
        pool_table(o, pool);
    }
    for t in &cfg.tcp {
        o.push_str(&super::tcp::describe(t, &cfg.pools));
    }
    for route in &cfg.routes {
        let _ = writeln!(o, "\n[[routes]]");
        if let Some(h) = &route.host {
            let _ = writeln!(o, "host = {}", quote(h));
        }
        if let Some(p) = &route.path {
            let _ = writeln!(o, "path = {}", quote(p));
        }
        let _ = writeln!(o, "pool = {}", quote(&cfg.pools[route.pool].name));
    }
    out
}

fn pool_table(o: &mut String, pool: &PoolSpec) {
    let _ = writeln!(o, "\n[pools.{}]", pool.name);
    let _ = writeln!(o, "strategy = {}", quote(pool.strategy.name()));
    if pool.strategy == Strategy::Hash {
        if let Some(k) = &pool.hash_key {
            let _ = writeln!(o, "hash_key = {}", quote(&k.describe()));
        }
    }
    let _ = writeln!(o, "retries = {}", pool.retries);
    if let Some(v) = pool.send_proxy {
        let _ = writeln!(o, "send_proxy = \"v{v}\"");
    }
    if let Some(t) = &pool.tls {
        let _ = writeln!(o, "tls = true");
        if let Some(n) = &t.server_name {
            let _ = writeln!(o, "tls_server_name = {}", quote(n));
        }
        if let Some(ca) = &t.ca {
            let _ = writeln!(o, "tls_ca = {}", quote(&ca.to_string_lossy()));
        }
        let _ = writeln!(o, "tls_verify = {}", t.verify);
    }
    let _ = writeln!(
        o,
        "slow_start = {}",
        quote(&format_duration(pool.slow_start))
    );
    let _ = writeln!(
        o,
        "queue_timeout = {}",
        quote(&format_duration(pool.queue_timeout))
    );
    let _ = writeln!(
        o,
        "retry_budget = {}",
        quote(&format!("{}%", pool.retry_budget))
    );
    if let Some(d) = &pool.discover {
        let _ = writeln!(o, "discover = {}", quote(&format!("srv:{}", d.name)));
    } else {
        let _ = writeln!(o, "upstreams = [");
    }
    for n in &pool.names {
        let _ = write!(
            o,
            "  {{ address = {}, resolve = true, weight = {}, backup = {}",
            quote(&n.name),
            n.weight,
            n.backup
        );
        if let Some(c) = n.max_conns {
            let _ = write!(o, ", max_conns = {c}");
        }
        let _ = writeln!(o, " }},");
    }
    for u in &pool.upstreams {
        let _ = write!(
            o,
            "  {{ address = {}, weight = {}, backup = {}",
            quote(&u.address.name),
            u.weight,
            u.backup
        );
        if let Some(c) = u.max_conns {
            let _ = write!(o, ", max_conns = {c}");
        }
        let _ = writeln!(o, " }},");
    }
    if pool.discover.is_none() {
        let _ = writeln!(o, "]");
    }
    let h = &pool.health;
    let _ = writeln!(o, "\n[pools.{}.health]", pool.name);
    let check = match h.check {
        Check::Tcp => "tcp",
        Check::Http => "http",
    };
    let _ = writeln!(o, "check = {}", quote(check));
    let _ = writeln!(o, "path = {}", quote(&h.path));
    if let Some(host) = &h.host {
        let _ = writeln!(o, "host = {}", quote(host));
    }
    let _ = writeln!(o, "expect = {}", quote(&h.expect.describe()));
    let _ = writeln!(o, "interval = {}", quote(&format_duration(h.interval)));
    let _ = writeln!(o, "timeout = {}", quote(&format_duration(h.timeout)));
    let _ = writeln!(o, "rise = {}", h.rise);
    let _ = writeln!(o, "fall = {}", h.fall);
    let out = &pool.outlier;
    let _ = writeln!(o, "\n[pools.{}.outlier]", pool.name);
    let _ = writeln!(o, "consecutive_failures = {}", out.consecutive_failures);
    let _ = writeln!(o, "consecutive_5xx = {}", out.consecutive_5xx);
    let _ = writeln!(o, "ejection = {}", quote(&format_duration(out.ejection)));
    let _ = writeln!(
        o,
        "max_ejection = {}",
        quote(&format_duration(out.max_ejection))
    );
    let _ = writeln!(o, "max_ejected_percent = {}", out.max_ejected_percent);
    if pool.client_rate.is_some() {
        let _ = writeln!(o, "\n[pools.{}.client_limits]", pool.name);
        rate(o, pool.client_rate);
    }
}

/// `requests_per_second` and `burst`.
fn rate(o: &mut String, rate: Option<Rate>) {
    if let Some(r) = rate {
        if r.per_second.fract() == 0.0 {
            let _ = writeln!(o, "requests_per_second = {}", r.per_second as u64);
        } else {
            let _ = writeln!(o, "requests_per_second = {}", r.per_second);
        }
        let _ = writeln!(o, "burst = {}", r.burst);
    }
}

fn acme_table(o: &mut String, a: &super::AcmeSpec) {
    let _ = writeln!(o, "\n[acme]");
    match &a.email {
        Some(e) => {
            let _ = writeln!(o, "email = {}", quote(e));
        }
        None => {
            let _ = writeln!(o, "# email: not set, an account without a contact");
        }
    }
    let _ = writeln!(o, "directory = {}", quote(&a.directory));
    let domains: Vec<String> = a.domains.iter().map(|d| quote(d)).collect();
    let _ = writeln!(o, "domains = [{}]", domains.join(", "));
    let _ = writeln!(o, "storage = {}", quote(&a.storage.to_string_lossy()));
    let _ = writeln!(o, "challenge = {}", quote(a.challenge.name()));
    let _ = writeln!(
        o,
        "renew_before = {}",
        quote(&format_duration(a.renew_before))
    );
    if let Some(c) = &a.ca_bundle {
        let _ = writeln!(o, "ca_bundle = {}", quote(&c.to_string_lossy()));
    }
}

fn tls_table(o: &mut String, t: &super::TlsSpec) {
    let listen = if t.dual_stack {
        format!(":{}", t.listen.port())
    } else {
        t.listen.to_string()
    };
    let _ = writeln!(o, "\n[tls]\nlisten = {}", quote(&listen));
    let _ = writeln!(o, "certificates = [");
    for (cert, key) in &t.certificates {
        let _ = writeln!(
            o,
            "  {{ cert = {}, key = {} }},",
            quote(&cert.to_string_lossy()),
            quote(&key.to_string_lossy())
        );
    }
    let _ = writeln!(o, "]");
    if let Some(d) = &t.certificate_dir {
        let _ = writeln!(o, "certificate_dir = {}", quote(&d.to_string_lossy()));
    }
    let _ = writeln!(o, "min_version = {}", quote(t.min_version.name()));
    let _ = writeln!(
        o,
        "handshake_timeout = {}",
        quote(&format_duration(t.handshake_timeout))
    );
    let _ = writeln!(o, "session_tickets = {}", t.session_tickets);
    match &t.ticket_key_file {
        Some(p) => {
            let _ = writeln!(o, "ticket_key_file = {}", quote(&p.to_string_lossy()));
        }
        None => {
            let _ = writeln!(o, "# ticket_key_file: not set, keys made here and rotated");
        }
    }
    let _ = writeln!(o, "redirect_http = {}", t.redirect_http);
    if let Some(h) = &t.hsts {
        let _ = writeln!(o, "hsts = {}", quote(h));
    }
}
