//! The admin pages from a [`View`]: Prometheus text (format 0.0.4), the JSON status, and the
//! live status page. Pure: a view in, bytes out.

use super::view::{AcmeView, TlsView, UpstreamView, View};
use crate::metrics::{BUCKETS_US, LOCAL_CODES};
use crate::text::json_str;
use std::fmt::Write;

/// A Prometheus label value: backslash, double quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// HTML text: `&`, `<`, `>`, `"` and `'` escaped.
fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The response classes as labels.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// `# HELP` and `# TYPE` lines.
fn head(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}");
    let _ = writeln!(o, "# TYPE {name} {kind}");
}

/// Every (pool, upstream) pair the upstream metrics carry: each upstream once, under the
/// first pool that lists it.
fn primaries(v: &View) -> Vec<(&str, &UpstreamView)> {
    v.pools
        .iter()
        .flat_map(|p| {
            p.upstreams
                .iter()
                .filter(|u| u.primary)
                .map(move |u| (p.name.as_str(), u))
        })
        .collect()
}

/// Prometheus text exposition format 0.0.4.
pub fn metrics(v: &View) -> String {
    let mut o = String::with_capacity(4096);
    let ups = primaries(v);
    // An upstream from DNS is labelled by the name looked up and, apart, its address.
    let lbl = |pool: &str, u: &UpstreamView| {
        if u.discovered {
            format!(
                "pool=\"{}\",upstream=\"{}\",address=\"{}\"",
                label(pool),
                label(&u.name),
                label(&u.address)
            )
        } else {
            format!(
                "pool=\"{}\",upstream=\"{}\"",
                label(pool),
                label(&u.address)
            )
        }
    };
    head(
        &mut o,
        "goround_upstream_up",
        "gauge",
        "1 if the upstream is in the rotation, 0 if it is out.",
    );
    for (p, u) in &ups {
        let _ = writeln!(o, "goround_upstream_up{{{}}} {}", lbl(p, u), u8::from(u.up));
    }
    head(
        &mut o,
        "goround_upstream_requests_total",
        "counter",
        "Requests sent to the upstream.",
    );
    for (p, u) in &ups {
        let _ = writeln!(
            o,
            "goround_upstream_requests_total{{{}}} {}",
            lbl(p, u),
            u.requests
        );
    }
    head(
        &mut o,
        "goround_upstream_responses_total",
        "counter",
        "Final responses received from the upstream, by status class.",
    );
    for (p, u) in &ups {
        for (i, class) in CLASSES.iter().enumerate().skip(1) {
            let _ = writeln!(
                o,
                "goround_upstream_responses_total{{{},code=\"{class}\"}} {}",
                lbl(p, u),
                u.responses[i]
            );
        }
    }
    head(
        &mut o,
        "goround_upstream_active_requests",
        "gauge",
        "Requests in flight to the upstream now.",
    );
    for (p, u) in &ups {
        let _ = writeln!(
            o,
            "goround_upstream_active_requests{{{}}} {}",
            lbl(p, u),
            u.active_requests
        );
    }
    head(
        &mut o,
        "goround_upstream_response_seconds",
        "histogram",
        "Time from the request sent to the response head received.",
    );
    for (p, u) in &ups {
        let l = lbl(p, u);
        let mut cumulative = 0;
        for (i, bound) in BUCKETS_US.iter().enumerate() {
            cumulative += u.histogram.buckets[i];
            let _ = writeln!(
                o,
                "goround_upstream_response_seconds_bucket{{{l},le=\"{}\"}} {cumulative}",
                *bound as f64 / 1e6
            );
        }
        let count = u.histogram.count();
        let _ = writeln!(
            o,
            "goround_upstream_response_seconds_bucket{{{l},le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            o,
            "goround_upstream_response_seconds_sum{{{l}}} {}",
            u.histogram.sum_us as f64 / 1e6
        );
        let _ = writeln!(o, "goround_upstream_response_seconds_count{{{l}}} {count}");
    }
    head(
        &mut o,
        "goround_upstream_connect_failures_total",
        "counter",
        "Connects to the upstream that were refused, unreachable or timed out.",
    );
    for (p, u) in &ups {
        let _ = writeln!(
            o,
            "goround_upstream_connect_failures_total{{{}}} {}",
            lbl(p, u),
            u.connect_failures
        );
    }
    head(
        &mut o,
        "goround_upstream_health_checks_total",
        "counter",
        "Health checks of the upstream, by result.",
    );
    for (p, u) in &ups {
        let _ = writeln!(
            o,
            "goround_upstream_health_checks_total{{{},result=\"pass\"}} {}",
            lbl(p, u),
            u.checks.0
        );
        let _ = writeln!(
            o,
            "goround_upstream_health_checks_total{{{},result=\"fail\"}} {}",
            lbl(p, u),
            u.checks.1
        );
    }
    head(
        &mut o,
        "goround_upstream_ejections_total",
        "counter",
        "Ejections of the upstream by outlier detection, by reason.",
    );
    for (p, u) in &ups {
        for (reason, n) in [("failures", u.ejections.0), ("5xx", u.ejections.1)] {
            let _ = writeln!(
                o,
                "goround_upstream_ejections_total{{{},reason=\"{reason}\"}} {n}",
                lbl(p, u)
            );
        }
    }
    head(
        &mut o,
        "goround_retries_refused_total",
        "counter",
        "Retries the pool's retry budget refused.",
    );
    for p in &v.pools {
        let _ = writeln!(
            o,
            "goround_retries_refused_total{{pool=\"{}\"}} {}",
            label(&p.name),
            p.retries_refused
        );
    }
    head(
        &mut o,
        "goround_local_5xx_total",
        "counter",
        "502, 503 and 504 the proxy answered itself for requests routed to the pool.",
    );
    for p in &v.pools {
        let _ = writeln!(
            o,
            "goround_local_5xx_total{{pool=\"{}\"}} {}",
            label(&p.name),
            p.local_5xx
        );
    }
    if !v.dns.is_empty() {
        head(
            &mut o,
            "goround_dns_lookups_total",
            "counter",
            "Lookups of the names upstreams are given by, by result.",
        );
        for d in &v.dns {
            let _ = writeln!(
                o,
                "goround_dns_lookups_total{{name=\"{n}\",result=\"ok\"}} {}\n\
                 goround_dns_lookups_total{{name=\"{n}\",result=\"failed\"}} {}",
                d.ok,
                d.failed,
                n = label(&d.name)
            );
        }
        head(
            &mut o,
            "goround_dns_last_success_timestamp_seconds",
            "gauge",
            "When the name last resolved, Unix seconds (0: never).",
        );
        for d in &v.dns {
            let _ = writeln!(
                o,
                "goround_dns_last_success_timestamp_seconds{{name=\"{}\"}} {}",
                label(&d.name),
                d.last_success_unix_ms / 1000
            );
        }
    }
    head(
        &mut o,
        "goround_upstream_queue_length",
        "gauge",
        "Requests waiting for a max_conns slot in the pool.",
    );
    for p in &v.pools {
        let _ = writeln!(
            o,
            "goround_upstream_queue_length{{pool=\"{}\"}} {}",
            label(&p.name),
            p.queued
        );
    }
    head(
        &mut o,
        "goround_queue_timeouts_total",
        "counter",
        "Requests that waited the pool's queue_timeout for a slot and got 503.",
    );
    for p in &v.pools {
        let _ = writeln!(
            o,
            "goround_queue_timeouts_total{{pool=\"{}\"}} {}",
            label(&p.name),
            p.queue_timeouts
        );
    }
    head(
        &mut o,
        "goround_client_connections",
        "gauge",
        "Client connections open now.",
    );
    let _ = writeln!(o, "goround_client_connections {}", v.open);
    head(
        &mut o,
        "goround_client_connections_total",
        "counter",
        "Client connections accepted.",
    );
    let _ = writeln!(o, "goround_client_connections_total {}", v.accepted);
    tcp_metrics(&mut o, v);
    head(
        &mut o,
        "goround_client_requests_total",
        "counter",
        "Requests received from clients.",
    );
    let _ = writeln!(o, "goround_client_requests_total {}", v.requests);
    head(
        &mut o,
        "goround_local_responses_total",
        "counter",
        "Responses goround-mio made itself, by status code.",
    );
    for (i, code) in LOCAL_CODES.iter().enumerate() {
        let _ = writeln!(
            o,
            "goround_local_responses_total{{code=\"{code}\"}} {}",
            v.local[i]
        );
    }
    head(
        &mut o,
        "goround_rate_limited_total",
        "counter",
        "Requests refused by a client rate limit, by pool.",
    );
    for p in &v.pools {
        let _ = writeln!(
            o,
            "goround_rate_limited_total{{pool=\"{}\"}} {}",
            label(&p.name),
            p.rate_limited
        );
    }
    head(
        &mut o,
        "goround_bytes_received_total",
        "counter",
        "Bytes read from clients.",
    );
    let _ = writeln!(o, "goround_bytes_received_total {}", v.bytes_received);
    head(
        &mut o,
        "goround_bytes_sent_total",
        "counter",
        "Bytes written to clients.",
    );
    let _ = writeln!(o, "goround_bytes_sent_total {}", v.bytes_sent);
    head(
        &mut o,
        "goround_access_log_dropped_total",
        "counter",
        "Access-log lines dropped because the writer fell behind.",
    );
    let _ = writeln!(
        o,
        "goround_access_log_dropped_total {}",
        v.access_log_dropped
    );
    head(
        &mut o,
        "goround_config_reloads_total",
        "counter",
        "Configuration reloads (SIGHUP), by result.",
    );
    let _ = writeln!(
        o,
        "goround_config_reloads_total{{result=\"ok\"}} {}",
        v.reloads_ok
    );
    let _ = writeln!(
        o,
        "goround_config_reloads_total{{result=\"error\"}} {}",
        v.reloads_error
    );
    head(
        &mut o,
        "goround_config_last_reload_success_timestamp_seconds",
        "gauge",
        "When the configuration was last loaded successfully (Unix time).",
    );
    let _ = writeln!(
        o,
        "goround_config_last_reload_success_timestamp_seconds {}",
        v.last_reload_success_unix
    );
    if let Some(s) = v.shared_limits {
        head(
            &mut o,
            "goround_shared_limits_up",
            "gauge",
            "1 while rate counts are exchanged with Redis ([client_limits] shared), 0 while limits are per instance.",
        );
        let _ = writeln!(o, "goround_shared_limits_up {}", u8::from(s.up));
        head(
            &mut o,
            "goround_shared_limits_syncs_total",
            "counter",
            "Exchanges with Redis (script calls, and failed connection attempts), by result.",
        );
        let _ = writeln!(
            o,
            "goround_shared_limits_syncs_total{{result=\"ok\"}} {}\n\
             goround_shared_limits_syncs_total{{result=\"error\"}} {}",
            s.syncs_ok, s.syncs_failed
        );
        head(
            &mut o,
            "goround_shared_limits_clients_sent_total",
            "counter",
            "Per-client counts sent to Redis.",
        );
        let _ = writeln!(
            o,
            "goround_shared_limits_clients_sent_total {}",
            s.clients_sent
        );
    }
    if let Some(t) = &v.tls {
        tls_metrics(&mut o, t);
    }
    if let Some(a) = &v.acme {
        acme_metrics(&mut o, a);
    }
    head(
        &mut o,
        "goround_uptime_seconds",
        "gauge",
        "Seconds since goround-mio started.",
    );
    let _ = writeln!(o, "goround_uptime_seconds {}", v.uptime_seconds);
    head(
        &mut o,
        "goround_build_info",
        "gauge",
        "Always 1; the version is in the label.",
    );
    let _ = writeln!(
        o,
        "goround_build_info{{version=\"{}\"}} 1",
        label(v.version)
    );
    o
}

/// The HTTPS listener's metrics.
fn tls_metrics(o: &mut String, t: &TlsView) {
    head(
        o,
        "goround_tls_handshakes_total",
        "counter",
        "TLS handshakes on the HTTPS listener, by result (and why one failed).",
    );
    let _ = writeln!(o, "goround_tls_handshakes_total{{result=\"ok\"}} {}", t.ok);
    for (why, n) in crate::tls::HandshakeFailure::ALL.iter().zip(t.failed) {
        let _ = writeln!(
            o,
            "goround_tls_handshakes_total{{result=\"failed\",reason=\"{}\"}} {n}",
            why.name()
        );
    }
    head(
        o,
        "goround_tls_resumed_total",
        "counter",
        "TLS handshakes that resumed a session (a ticket).",
    );
    let _ = writeln!(o, "goround_tls_resumed_total {}", t.resumed);
    head(
        o,
        "goround_tls_handshake_seconds",
        "histogram",
        "TLS handshake time, from the accept to the handshake's end.",
    );
    let mut cumulative = 0;
    for (bound, n) in crate::metrics::TLS_BUCKETS_US.iter().zip(t.buckets) {
        cumulative += n;
        let _ = writeln!(
            o,
            "goround_tls_handshake_seconds_bucket{{le=\"{}\"}} {cumulative}",
            *bound as f64 / 1e6
        );
    }
    cumulative += t.buckets[t.buckets.len() - 1];
    let _ = writeln!(
        o,
        "goround_tls_handshake_seconds_bucket{{le=\"+Inf\"}} {cumulative}\n\
         goround_tls_handshake_seconds_sum {}\ngoround_tls_handshake_seconds_count {cumulative}",
        t.sum_us as f64 / 1e6
    );
    head(
        o,
        "goround_tls_certificate_expiry_timestamp_seconds",
        "gauge",
        "When each certificate of the HTTPS listener expires (Unix time), by its first name.",
    );
    for (names, not_after) in &t.certificates {
        let name = names.first().map_or("", String::as_str);
        let _ = writeln!(
            o,
            "goround_tls_certificate_expiry_timestamp_seconds{{name=\"{}\"}} {not_after}",
            label(name)
        );
    }
}

/// ACME's metrics.
fn acme_metrics(o: &mut String, a: &AcmeView) {
    head(
        o,
        "goround_acme_orders_total",
        "counter",
        "Certificate orders to the ACME CA, by result.",
    );
    let _ = writeln!(
        o,
        "goround_acme_orders_total{{result=\"ok\"}} {}\ngoround_acme_orders_total{{result=\"failed\"}} {}",
        a.orders_ok, a.orders_failed
    );
    head(
        o,
        "goround_acme_next_renewal_timestamp_seconds",
        "gauge",
        "When each ACME domain's certificate is next ordered or renewed (Unix time).",
    );
    for d in &a.domains {
        if let Some(t) = d.next_renewal {
            let _ = writeln!(
                o,
                "goround_acme_next_renewal_timestamp_seconds{{name=\"{}\"}} {t}",
                label(&d.name)
            );
        }
    }
}

/// Unix seconds as RFC 3339 for JSON, or `null`.
fn json_time(t: Option<i64>) -> String {
    t.map_or("null".to_string(), |t| {
        json_str(&crate::access_log::rfc3339_secs(t))
    })
}

/// ACME in `/status`.
fn acme_json(a: &AcmeView) -> String {
    let domains: Vec<String> = a
        .domains
        .iter()
        .map(|d| {
            let (since, error) = match &d.state {
                crate::acme::DomainState::Failing { since, error } => {
                    (json_time(Some(*since)), json_str(error))
                }
                crate::acme::DomainState::Pending { error: Some(e) } => {
                    ("null".to_string(), json_str(e))
                }
                _ => ("null".to_string(), "null".to_string()),
            };
            format!(
                "{{\"name\":{},\"state\":\"{}\",\"not_after\":{},\"next_renewal\":{},\"failing_since\":{since},\"error\":{error}}}",
                json_str(&d.name),
                d.state.name(),
                json_time(d.not_after),
                json_time(d.next_renewal),
            )
        })
        .collect();
    format!(
        "{{\"directory\":{},\"orders\":{{\"ok\":{},\"failed\":{}}},\"domains\":[{}]}}",
        json_str(&a.directory),
        a.orders_ok,
        a.orders_failed,
        domains.join(",")
    )
}

/// A domain's state in words, as the page shows it.
fn acme_state_text(d: &crate::acme::DomainStatus) -> String {
    let at = |t: i64| crate::access_log::rfc3339_secs(t);
    match &d.state {
        crate::acme::DomainState::Pending { error: None } => "pending".to_string(),
        crate::acme::DomainState::Pending { error: Some(e) } => format!("pending: {e}"),
        crate::acme::DomainState::Valid => {
            format!("valid until {}", d.not_after.map_or(String::new(), at))
        }
        crate::acme::DomainState::Failing { since, error } => format!(
            "valid until {}; renewal failing since {}: {error}",
            d.not_after.map_or(String::new(), at),
            at(*since)
        ),
        crate::acme::DomainState::Configured => "covered by a configured certificate".to_string(),
    }
}

/// ACME's domains on the page.
fn acme_section(a: &AcmeView) -> String {
    let mut out = format!(
        "<section class=\"pool\"><h2>ACME <small>{}</small></h2><table><thead><tr>\
         <th>domain</th><th>state</th></tr></thead><tbody>",
        html(&a.directory)
    );
    for d in &a.domains {
        let class = match d.state {
            crate::acme::DomainState::Valid | crate::acme::DomainState::Configured => "up",
            _ => "down",
        };
        let _ = write!(
            out,
            "<tr class=\"{class}\"><td>{}</td><td>{}</td></tr>",
            html(&d.name),
            html(&acme_state_text(d)),
        );
    }
    out.push_str("</tbody></table></section>");
    out
}

/// The HTTPS listener in `/status`.
fn tls_json(t: &TlsView, now_unix: i64) -> String {
    let certs: Vec<String> = t
        .certificates
        .iter()
        .map(|(names, not_after)| {
            let names: Vec<String> = names.iter().map(|n| json_str(n)).collect();
            format!(
                "{{\"names\":[{}],\"not_after\":{},\"days_left\":{}}}",
                names.join(","),
                json_str(&crate::access_log::rfc3339_secs(*not_after)),
                (not_after - now_unix).div_euclid(86_400)
            )
        })
        .collect();
    format!(
        "{{\"listen\":{},\"certificates\":[{}]}}",
        json_str(&t.listen),
        certs.join(",")
    )
}

/// A millisecond figure for JSON: `null` without observations.
fn ms(x: Option<f64>) -> String {
    x.map_or("null".to_string(), |m| format!("{m:.3}"))
}

/// The JSON status.
pub fn status(v: &View) -> String {
    let mut o = String::with_capacity(2048);
    let _ = write!(
        o,
        "{{\"version\":{},\"uptime_seconds\":{},\"config_loaded_unix_ms\":{},\"pools\":[",
        json_str(v.version),
        v.uptime_seconds,
        v.config_loaded_unix_ms
    );
    for (i, p) in v.pools.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(
            o,
            "{{\"name\":{},\"strategy\":{},\"rate_limited\":{},\"queued\":{},\"queue_timeouts\":{},\"retries_refused\":{},\"local_5xx\":{},\"upstreams\":[",
            json_str(&p.name),
            json_str(p.strategy.name()),
            p.rate_limited,
            p.queued,
            p.queue_timeouts,
            p.retries_refused,
            p.local_5xx
        );
        for (j, u) in p.upstreams.iter().enumerate() {
            if j > 0 {
                o.push(',');
            }
            let last = match &u.last_check {
                Some(c) => format!(
                    "{{\"ok\":{},\"unix_ms\":{},\"detail\":{}}}",
                    c.ok,
                    c.unix_ms,
                    json_str(&c.detail)
                ),
                None => "null".to_string(),
            };
            let change = match &u.last_change {
                Some(c) => format!(
                    "{{\"up\":{},\"by\":\"{}\",\"reason\":{},\"unix_ms\":{}}}",
                    c.up,
                    c.by.name(),
                    json_str(&c.reason),
                    c.unix_ms
                ),
                None => "null".to_string(),
            };
            let _ = write!(
                o,
                "{{\"address\":{},\"name\":{},\"up\":{},\"weight\":{},\"backup\":{},\"max_conns\":{},\
                 \"active_requests\":{},\"requests\":{},\"connect_failures\":{},\
                 \"responses\":{{\"2xx\":{},\"3xx\":{},\"4xx\":{},\"5xx\":{}}},\
                 \"health_checks\":{{\"pass\":{},\"fail\":{}}},\"last_check\":{last},\
                 \"last_change\":{change},\"ejected_until\":{},\
                 \"ejections\":{{\"failures\":{},\"5xx\":{}}},\"discovered\":{},\
                 \"slow_start_left_ms\":{},\"response_ms\":{{\"p50\":{},\"p99\":{}}}}}",
                json_str(&u.address),
                json_str(&u.name),
                u.up,
                u.weight,
                u.backup,
                u.max_conns.map_or("null".to_string(), |c| c.to_string()),
                u.active_requests,
                u.requests,
                u.connect_failures,
                u.responses[1],
                u.responses[2],
                u.responses[3],
                u.responses[4],
                u.checks.0,
                u.checks.1,
                u.ejected_until_unix_ms
                    .map_or("null".to_string(), |t| t.to_string()),
                u.ejections.0,
                u.ejections.1,
                u.discovered,
                u.slow_start_left_ms
                    .map_or("null".to_string(), |t| t.to_string()),
                ms(u.histogram.quantile_ms(0.5)),
                ms(u.histogram.quantile_ms(0.99)),
            );
        }
        o.push_str("]}");
    }
    let local: Vec<String> = LOCAL_CODES
        .iter()
        .zip(v.local)
        .map(|(c, n)| format!("\"{c}\":{n}"))
        .collect();
    let rate_limited: u64 = v.pools.iter().map(|p| p.rate_limited).sum();
    let _ = write!(
        o,
        "],\"clients\":{{\"open\":{},\"accepted\":{},\"requests\":{},\"bytes_received\":{},\"bytes_sent\":{}}},\
         \"local_responses\":{{{}}},\"rate_limited\":{rate_limited},\"shared_limits\":{},\"tls\":{},\"acme\":{},\"dns\":{},\"tcp\":{},\"shutting_down\":{}}}",
        v.open,
        v.accepted,
        v.requests,
        v.bytes_received,
        v.bytes_sent,
        local.join(","),
        match v.shared_limits {
            Some(s) => format!(
                "{{\"up\":{},\"syncs_ok\":{},\"syncs_failed\":{},\"clients_sent\":{}}}",
                s.up, s.syncs_ok, s.syncs_failed, s.clients_sent
            ),
            None => "null".to_string(),
        },
        v.tls.as_ref().map_or("null".to_string(), |t| tls_json(
            t,
            (crate::upstream::unix_ms() / 1000) as i64
        )),
        v.acme.as_ref().map_or("null".to_string(), acme_json),
        dns_json(v),
        tcp_json(v),
        v.shutting_down
    );
    o
}

/// The `[[tcp]]` listeners' metrics (none without a TCP listener).
fn tcp_metrics(o: &mut String, v: &View) {
    if v.tcp.is_empty() {
        return;
    }
    head(
        o,
        "goround_tcp_connections",
        "gauge",
        "TCP-mode connections open now, all listeners together.",
    );
    let open: u64 = v.tcp.iter().map(|t| t.open).sum();
    let _ = writeln!(o, "goround_tcp_connections {open}");
    head(
        o,
        "goround_tcp_connections_total",
        "counter",
        "TCP-mode connections accepted, by listener.",
    );
    for t in &v.tcp {
        let _ = writeln!(
            o,
            "goround_tcp_connections_total{{listener=\"{}\"}} {}",
            label(&t.listen),
            t.accepted
        );
    }
    head(
        o,
        "goround_tcp_bytes_total",
        "counter",
        "TCP-mode bytes by listener: in, from its clients; out, to its clients.",
    );
    for t in &v.tcp {
        for (dir, n) in [("in", t.bytes_in), ("out", t.bytes_out)] {
            let _ = writeln!(
                o,
                "goround_tcp_bytes_total{{listener=\"{}\",direction=\"{dir}\"}} {n}",
                label(&t.listen)
            );
        }
    }
}

/// The `[[tcp]]` listeners, as `/status` gives them.
fn tcp_json(v: &View) -> String {
    let all: Vec<String> = v
        .tcp
        .iter()
        .map(|t| {
            let routes: Vec<String> = t
                .routes
                .iter()
                .map(|(sni, pool)| {
                    format!(
                        "{{\"sni\":{},\"pool\":{}}}",
                        sni.as_deref().map_or("null".to_string(), json_str),
                        json_str(pool)
                    )
                })
                .collect();
            format!(
                "{{\"listen\":{},\"pool\":{},\"routes\":{},\"open\":{},\"connections\":{},\
                 \"bytes_in\":{},\"bytes_out\":{}}}",
                json_str(&t.listen),
                t.pool.as_deref().map_or("null".to_string(), json_str),
                if t.pool.is_some() {
                    "null".to_string()
                } else {
                    format!("[{}]", routes.join(","))
                },
                t.open,
                t.accepted,
                t.bytes_in,
                t.bytes_out
            )
        })
        .collect();
    format!("[{}]", all.join(","))
}

/// The `[[tcp]]` listeners on the page: where each sends its connections, how many are open.
fn tcp_section(v: &View) -> String {
    if v.tcp.is_empty() {
        return String::new();
    }
    let mut out = "<section class=\"pool\"><h2>TCP listeners</h2><table><thead><tr>\
         <th>listener</th><th>to</th><th>open</th><th>connections</th><th>bytes in</th><th>bytes out</th>\
         </tr></thead><tbody>"
        .to_string();
    for t in &v.tcp {
        let to = match &t.pool {
            Some(p) => html(p),
            None if t.routes.is_empty() => "refusing (removed by a reload)".to_string(),
            None => t
                .routes
                .iter()
                .map(|(sni, pool)| {
                    format!(
                        "{} → {}",
                        html(sni.as_deref().unwrap_or("(default)")),
                        html(pool)
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
        };
        let _ = write!(
            out,
            "<tr class=\"up\"><td>{}</td><td>{to}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html(&t.listen),
            t.open,
            t.accepted,
            t.bytes_in,
            t.bytes_out
        );
    }
    out.push_str("</tbody></table></section>");
    out
}

/// The names looked up, as `/status` gives them.
fn dns_json(v: &View) -> String {
    let names: Vec<String> = v
        .dns
        .iter()
        .map(|d| {
            let addrs: Vec<String> = d.addresses.iter().map(|a| json_str(a)).collect();
            format!(
                "{{\"name\":{},\"type\":{},\"addresses\":[{}],\"last_success_unix_ms\":{},\
                 \"ttl\":{},\"lookups\":{{\"ok\":{},\"failed\":{}}},\"error\":{}}}",
                json_str(&d.name),
                json_str(d.kind),
                addrs.join(","),
                if d.last_success_unix_ms == 0 {
                    "null".to_string()
                } else {
                    d.last_success_unix_ms.to_string()
                },
                d.ttl.map_or("null".to_string(), |t| t.to_string()),
                d.ok,
                d.failed,
                d.error.as_deref().map_or("null".to_string(), json_str)
            )
        })
        .collect();
    format!("[{}]", names.join(","))
}

/// The names looked up on the page: their addresses, when each last resolved, and why the
/// lookups fail during an outage.
fn dns_section(v: &View) -> String {
    if v.dns.is_empty() {
        return String::new();
    }
    let mut out = "<section class=\"pool\"><h2>DNS</h2><table><thead><tr>\
         <th>name</th><th>state</th><th>addresses</th><th>last resolved</th><th>TTL</th>\
         </tr></thead><tbody>"
        .to_string();
    for d in &v.dns {
        let class = if d.error.is_some() { "down" } else { "up" };
        let state = match &d.error {
            Some(e) => format!("failing: {} (keeping the last answer)", html(e)),
            None if d.last_success_unix_ms == 0 => "not resolved yet".to_string(),
            None => "ok".to_string(),
        };
        let when = if d.last_success_unix_ms == 0 {
            "never".to_string()
        } else {
            crate::access_log::rfc3339_secs((d.last_success_unix_ms / 1000) as i64)
        };
        let _ = write!(
            out,
            "<tr class=\"{class}\"><td>{} <small>{}</small></td><td>{state}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html(&d.name),
            d.kind,
            html(&d.addresses.join(", ")),
            html(&when),
            d.ttl.map_or("-".to_string(), |t| format!("{t}s")),
        );
    }
    out.push_str("</tbody></table></section>");
    out
}

/// The state of an upstream in words, as the page shows it.
fn state(u: &UpstreamView) -> &'static str {
    match (u.up, u.backup) {
        (false, _) => "down",
        (true, true) => "backup",
        (true, false) => "up",
    }
}

/// How long ago `then_ms` was, as the page says it.
fn ago(now_ms: u64, then_ms: u64) -> String {
    let s = now_ms.saturating_sub(then_ms).div_ceil(1000);
    match s {
        0..90 => format!("{s} s ago"),
        90..5400 => format!("{} min ago", (s + 30) / 60),
        _ => format!("{} h ago", (s + 1800) / 3600),
    }
}

/// The state cell: a down upstream says why, what found it (a live request, the health
/// checks, ...) and when, apart from what its last check found; an ejected one when it is
/// back.
fn state_text(u: &UpstreamView, now_ms: u64) -> String {
    let back = u.ejected_until_unix_ms.map(|until| {
        format!(
            " · back in {} s",
            until.saturating_sub(now_ms).div_ceil(1000)
        )
    });
    match &u.last_change {
        Some(c) if !u.up && !c.up => {
            let by = match c.by {
                crate::upstream::ChangedBy::Request => "live request",
                crate::upstream::ChangedBy::HealthCheck => "health check",
                crate::upstream::ChangedBy::Outlier => "outlier detection",
                crate::upstream::ChangedBy::Discovery => "DNS",
            };
            // A reason that names what found it already (`health check: ...`) says it once.
            let by = if c.reason.starts_with(by) {
                String::new()
            } else {
                format!("{by}, ")
            };
            format!(
                "down: {} ({by}{}){}",
                html(&c.reason),
                ago(now_ms, c.unix_ms),
                back.unwrap_or_default()
            )
        }
        _ if back.is_some() => format!("ejected{}", back.unwrap_or_default()),
        _ if u.up && u.slow_start_left_ms.is_some() => "up (slow start)".to_string(),
        _ => state(u).to_string(),
    }
}

/// The last-check cell: what the last health check found, and when (not why the upstream is
/// down: the state cell says that).
fn check_text(u: &UpstreamView, now_ms: u64) -> String {
    match &u.last_check {
        Some(c) => format!(
            "{} {} · {}",
            if c.ok { "ok" } else { "failed" },
            html(&c.detail),
            ago(now_ms, c.unix_ms)
        ),
        None => "-".to_string(),
    }
}

/// Pools with more upstreams than this start folded.
const FOLDED_ABOVE: usize = 50;

/// The columns of a pool's table (the script builds the same).
const POOL_COLUMNS: &str = "<th>upstream</th><th>state</th><th>weight</th><th>in flight</th>\
<th>requests</th><th>2xx</th><th>3xx</th><th>4xx</th><th>5xx</th><th>failures</th>\
<th>last check</th><th>p50</th><th>p99</th><th>requests, 1 h</th><th>p99, 1 h</th>";

/// The live status page: rendered here (the tables work without JavaScript), then refreshed
/// every 2 s by its script from `/status` and `/status/history`, without reloading: the
/// script also draws the last hour (the clients', each pool's, each upstream's). No external
/// asset.
pub fn page(v: &View) -> String {
    let now_ms = crate::upstream::unix_ms();
    let mut rows = String::new();
    for p in &v.pools {
        let down = p.upstreams.iter().filter(|u| !u.up).count();
        let _ = write!(
            rows,
            "<details class=\"pool\" data-pool=\"{name}\"{open}><summary><h2>{name} <small>{}</small></h2> \
             <span class=\"glance\">{} up, {down} down</span></summary>\
             <div class=\"chart\"></div><table><thead><tr>{POOL_COLUMNS}</tr></thead><tbody>",
            p.strategy.name(),
            p.upstreams.len() - down,
            name = html(&p.name),
            open = if p.upstreams.len() > FOLDED_ABOVE {
                ""
            } else {
                " open"
            },
        );
        for u in &p.upstreams {
            let fmt_ms = |x: Option<f64>| x.map_or("-".to_string(), |m| format!("{m:.1} ms"));
            let _ = write!(
                rows,
                "<tr class=\"{s}\" data-upstream=\"{a}\"><td>{a}{n}</td><td>{t}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td class=\"spark\"></td><td class=\"spark\"></td></tr>",
                u.weight,
                u.active_requests,
                u.requests,
                u.responses[1],
                u.responses[2],
                u.responses[3],
                u.responses[4],
                u.connect_failures,
                check_text(u, now_ms),
                fmt_ms(u.histogram.quantile_ms(0.5)),
                fmt_ms(u.histogram.quantile_ms(0.99)),
                s = state(u),
                t = state_text(u, now_ms),
                a = html(&u.address),
                n = if u.discovered {
                    format!(" <small>{}</small>", html(&u.name))
                } else {
                    String::new()
                },
            );
        }
        rows.push_str("</tbody></table></details>");
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>goround-mio status</title><style>{STYLE}</style></head><body>\
         <h1>goround-mio <small id=\"version\">{version}</small></h1>\
         <p id=\"summary\">{summary}</p>\
         <noscript><p class=\"foot\">The charts of the last hour need JavaScript; the tables \
         are as of this page's load.</p></noscript>\
         <div id=\"clients\"></div><div id=\"tls\">{tls}</div><div id=\"acme\">{acme}</div><div id=\"dns\">{dns}</div><div id=\"tcp\">{tcp}</div><div id=\"pools\">{rows}</div>\
         <p class=\"foot\">Refreshed every 2 s from <a href=\"/status\">/status</a> and \
         <a href=\"/status/history\">/status/history</a> (the last hour in 10 s buckets); \
         metrics at <a href=\"/metrics\">/metrics</a>. <span id=\"updated\"></span></p>\
         <script>{SCRIPT}</script></body></html>\n",
        version = html(v.version),
        summary = html(&summary(v)),
        tls = v.tls.as_ref().map_or(String::new(), |t| tls_section(
            t,
            (now_ms / 1000) as i64
        )),
        acme = v.acme.as_ref().map_or(String::new(), acme_section),
        dns = dns_section(v),
        tcp = tcp_section(v),
    )
}

/// The HTTPS listener's certificates on the page: names, expiry, days left, marked when fewer
/// than `tls::certs::EXPIRY_WARNING_DAYS`.
fn tls_section(t: &TlsView, now_unix: i64) -> String {
    let mut out = format!(
        "<section class=\"pool\"><h2>HTTPS <small>{}</small></h2><table><thead><tr>\
         <th>certificate</th><th>expires</th><th>days left</th></tr></thead><tbody>",
        html(&t.listen)
    );
    for (names, not_after) in &t.certificates {
        let days = (not_after - now_unix).div_euclid(86_400);
        let class = if days < crate::tls::certs::EXPIRY_WARNING_DAYS {
            "down"
        } else {
            "up"
        };
        let _ = write!(
            out,
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{days}</td></tr>",
            html(&names.join(", ")),
            html(&crate::access_log::rfc3339_secs(*not_after)),
        );
    }
    out.push_str("</tbody></table></section>");
    out
}

/// The line under the title.
fn summary(v: &View) -> String {
    format!(
        "up {}s · {} client connections open · {} accepted · {} requests · {} rate limited",
        v.uptime_seconds,
        v.open,
        v.accepted,
        v.requests,
        v.pools.iter().map(|p| p.rate_limited).sum::<u64>()
    )
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}\
h1 small,h2 small{color:#888;font-weight:normal;font-size:60%}\
table{border-collapse:collapse;margin-bottom:1.5em}\
th,td{padding:.25em .5em;border-bottom:1px solid #ddd;text-align:right}\
th:nth-child(-n+2),td:nth-child(-n+2),th:nth-child(11),td:nth-child(11){text-align:left}\
tr.up td:nth-child(2){color:#176f2c;font-weight:bold}\
tr.backup td:nth-child(2){color:#8a6d00;font-weight:bold}\
tr.down{background:#fde2e1}tr.down td:nth-child(2){color:#b3261e;font-weight:bold}\
.foot{color:#888}details.pool{margin-bottom:1em}details.pool>summary{cursor:pointer;list-style-position:outside}details.pool>summary h2{display:inline;font-size:1.2em}.glance{color:#666;margin-left:.6em}td.spark{white-space:nowrap;text-align:left}svg.spark{vertical-align:middle;background:#f6f8fa}svg.spark path{fill:none;stroke:#1f6feb;stroke-width:1.2}svg.p99 path{stroke:#8250df}svg.chart{width:100%;max-width:900px;height:90px;display:block;background:#f6f8fa}svg.chart path{fill:none;stroke-width:1.5}svg.chart line.grid{stroke:#e1e4e8;stroke-width:1}path.rate{stroke:#1f6feb}path.errors{stroke:#d1242f}path.conns{stroke:#8c959f}path.limited{stroke:#bc4c00}line.mark{stroke-width:2}line.mark-down{stroke:#d1242f}line.mark-up{stroke:#1a7f37}line.mark-ejected{stroke:#bc4c00}line.mark-slow_start{stroke:#8250df}.axis{display:flex;justify-content:space-between;max-width:900px;color:#888;font-size:80%;margin-bottom:.4em}.legend{font-size:90%;color:#444;margin:.3em 0}.key{display:inline-block;width:1.2em;height:3px;vertical-align:middle;margin:0 .3em 0 .8em}.key.rate{background:#1f6feb}.key.errors{background:#d1242f}.key.conns{background:#8c959f}.key.limited{background:#bc4c00}";

/// Refreshes the tables from `/status` every 2 s, and the charts from `/status/history`
/// (after the first whole hour, only the buckets since the last answer); builds the same rows
/// the server does.
const SCRIPT: &str = r#"
(function(){
var HOUR=3600000;
var H={b:[],ev:[],next:0,now:0};
var BY={'request':'live request','health_check':'health check','outlier_detection':'outlier detection','dns':'DNS'};
function esc(s){return String(s).replace(/[&<>"']/g,function(c){return {'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c];});}
function ms(x){return x===null||x===undefined?'-':x.toFixed(1)+' ms';}
function ago(now,t){var s=Math.max(0,Math.ceil((now-t)/1000));return s<90?s+' s ago':s<5400?Math.round(s/60)+' min ago':Math.round(s/3600)+' h ago';}
function fmt(v){return v>=100?String(Math.round(v)):v>=10?v.toFixed(1):v.toFixed(2);}
function pct(v){return (v*100).toFixed(v<0.1?2:1)+' %';}
function num(v){return v===null||v===undefined||isNaN(v)?null:v;}
/* The history's answer into H.b, one object per bucket; from its first bucket on, it replaces
   what was there (the open bucket of the last answer is closed by now, or still open). */
function merge(h){
  var st=h.buckets.start_unix_ms,secs=h.buckets.seconds;
  if(st.length){var from=st[0];H.b=H.b.filter(function(b){return b.start<from;});}
  for(var i=0;i<st.length;i++){
    var b={start:st[i],secs:Math.max(secs[i],1),c:{},p:{}};
    for(var k in h.clients){b.c[k]=h.clients[k][i];}
    h.pools.forEach(function(p){
      if(p.requests[i]===null)return;
      var r=p.responses;
      var q={requests:p.requests[i],responses:r['1xx'][i]+r['2xx'][i]+r['3xx'][i]+r['4xx'][i]+r['5xx'][i],
        e5:r['5xx'][i],l5:p.local_5xx[i],rl:p.rate_limited[i],u:{}};
      p.upstreams.forEach(function(u){
        if(u.requests[i]===null)return;
        q.u[u.address]={requests:u.requests[i],e5:u.responses['5xx'][i],f:u.failures[i],p50:u.p50_ms[i],p99:u.p99_ms[i],state:u.state[i]};
      });
      b.p[p.name]=q;
    });
    H.b.push(b);
  }
  H.now=h.now_unix_ms;
  H.b=H.b.filter(function(b){return b.start+b.secs*1000>H.now-HOUR;});
  h.events.forEach(function(e){
    if(!H.ev.some(function(x){return x.unix_ms===e.unix_ms&&x.pool===e.pool&&x.address===e.address&&x.state===e.state;}))H.ev.push(e);
  });
  H.ev=H.ev.filter(function(e){return e.unix_ms>H.now-HOUR;});
  if(st.length)H.next=st[st.length-1];
  /* The charts span the last hour, or less while less has been seen. */
  H.x0=Math.min(H.b.length?Math.max(H.now-HOUR,H.b[0].start):H.now,H.now-60000);
  H.span=H.now-H.x0;
}
/* One value per bucket, with the bucket's start and end. */
function series(get){return H.b.map(function(b){return {t:b.start,e:b.start+b.secs*1000,v:num(get(b))};});}
function xAt(t,W){return Math.min(W,Math.max(0,(t-H.x0)/H.span*W));}
function peak(pts){return pts.reduce(function(m,p){return p.v!==null&&p.v>m?p.v:m;},0);}
function last(pts){for(var i=pts.length-1;i>=0;i--){if(pts[i].v!==null)return pts[i].v;}return null;}
/* The open bucket's value: what is happening now (null when nothing is). */
function current(pts){return pts.length?pts[pts.length-1].v:null;}
/* Steps: each bucket a level over its own span, so that one bucket shows too. */
function path(pts,W,Hh,max){
  var d='',pen=false;
  pts.forEach(function(p){
    if(p.v===null){pen=false;return;}
    var y=(Hh-1-(max>0?p.v/max:0)*(Hh-3)).toFixed(1);
    d+=(pen?'L':'M')+xAt(p.t,W).toFixed(1)+' '+y+'L'+xAt(p.e,W).toFixed(1)+' '+y;pen=true;
  });
  return d;
}
function marks(evs,W,Hh){
  return evs.filter(function(e){return e.unix_ms>=H.x0;}).map(function(e){
    var x=xAt(e.unix_ms,W).toFixed(1);
    var what=e.state.replace('_',' ')+(e.reason?': '+e.reason:'')+(e.by?' ('+(BY[e.by]||e.by)+')':'');
    return '<line class="mark mark-'+e.state+'" x1="'+x+'" x2="'+x+'" y1="0" y2="'+Hh+'"><title>'+
      esc(e.address+' '+what+', '+new Date(e.unix_ms).toLocaleTimeString())+'</title></line>';
  }).join('');
}
function spark(pts,cls,evs,unit){
  var W=100,Hh=22,v=last(pts);
  return '<svg class="spark '+cls+'" viewBox="0 0 '+W+' '+Hh+'" width="'+W+'" height="'+Hh+'" preserveAspectRatio="none">'+
    marks(evs,W,Hh)+'<path d="'+path(pts,W,Hh,peak(pts))+'"/></svg> <small>'+(v===null?'-':fmt(v)+unit)+'</small>';
}
function grid(W,Hh){
  var g='';for(var i=1;i<6;i++){var x=(i/6*W).toFixed(1);g+='<line class="grid" x1="'+x+'" x2="'+x+'" y1="0" y2="'+Hh+'"/>';}
  return g;
}
function before(t){var s=Math.round(t/1000);return s<120?'-'+s+' s':'-'+Math.round(s/60)+' min';}
function chart(attrs,lines,evs){
  var W=720,Hh=90;
  return '<svg class="chart" '+attrs+' viewBox="0 0 '+W+' '+Hh+'" preserveAspectRatio="none">'+grid(W,Hh)+marks(evs,W,Hh)+
    lines.map(function(l){return '<path class="'+l[0]+'" d="'+path(l[1],W,Hh,l[2])+'"/>';}).join('')+
    '</svg><div class="axis"><span>'+before(H.span)+'</span><span>'+before(H.span/2)+'</span><span>now</span></div>';
}
function poolChart(name){
  var rate=series(function(b){var q=b.p[name];return q?q.requests/b.secs:null;});
  var err=series(function(b){var q=b.p[name];if(!q)return null;var n=q.responses+q.l5;return n?(q.e5+q.l5)/n:null;});
  var rp=peak(rate),ep=peak(err),rn=current(rate),en=current(err);
  var evs=H.ev.filter(function(e){return e.pool===name;});
  return '<div class="legend"><span class="key rate"></span>requests/s '+(rn===null?'-':fmt(rn))+' now, '+fmt(rp)+' peak'+
    ' <span class="key errors"></span>errors (5xx and local 5xx) '+(en===null?'-':pct(en))+' now, '+pct(ep)+' peak</div>'+
    chart('data-pool="'+esc(name)+'" data-error-share="'+(en===null?0:en)+'" data-error-peak="'+ep+'"',
      [['rate',rate,rp],['errors',err,Math.max(ep,0.05)]],evs);
}
function clientsChart(){
  if(!H.b.length)return '';
  var req=series(function(b){return b.c.requests/b.secs;}),con=series(function(b){return b.c.connections/b.secs;});
  var l5=series(function(b){return b.c.local_5xx/b.secs;}),rl=series(function(b){return b.c.rate_limited/b.secs;});
  var top=Math.max(peak(req),peak(con)),bad=Math.max(peak(l5),peak(rl),1);
  var n=function(p){var v=current(p);return v===null?'-':fmt(v);};
  return '<section class="pool"><h2>Clients <small>the last hour</small></h2><div class="legend">'+
    '<span class="key rate"></span>requests/s '+n(req)+' <span class="key conns"></span>new connections/s '+n(con)+
    ' <span class="key errors"></span>local 5xx/s '+n(l5)+' <span class="key limited"></span>rate limited/s '+n(rl)+'</div>'+
    chart('data-clients="1"',[['rate',req,top],['conns',con,top],['errors',l5,bad],['limited',rl,bad]],[])+'</section>';
}
function stateText(u,now){
  var back=u.ejected_until?' \u00b7 back in '+Math.max(0,Math.ceil((u.ejected_until-now)/1000))+' s':'';
  var lc=u.last_change;
  if(!u.up&&lc&&!lc.up){var by=BY[lc.by]||lc.by;
    return 'down: '+esc(lc.reason)+' ('+(lc.reason.indexOf(by)===0?'':esc(by)+', ')+ago(now,lc.unix_ms)+')'+back;}
  if(back)return 'ejected'+back;
  if(u.up&&u.slow_start_left_ms!==null&&u.slow_start_left_ms!==undefined)return 'up (slow start)';
  return !u.up?'down':(u.backup?'backup':'up');
}
function render(s){
  var now=H.now||Date.now();
  var open={};
  document.querySelectorAll('#pools details').forEach(function(d){open[d.getAttribute('data-pool')]=d.open;});
  var html='';
  s.pools.forEach(function(p){
    var down=p.upstreams.filter(function(u){return !u.up;}).length;
    var isOpen=open.hasOwnProperty(p.name)?open[p.name]:p.upstreams.length<=50;
    html+='<details class="pool" data-pool="'+esc(p.name)+'"'+(isOpen?' open':'')+'><summary><h2>'+esc(p.name)+' <small>'+esc(p.strategy)+
      '</small></h2> <span class="glance">'+(p.upstreams.length-down)+' up, '+down+' down</span></summary>'+
      '<div class="chart">'+poolChart(p.name)+'</div><table><thead><tr>'+
      '<th>upstream</th><th>state</th><th>weight</th><th>in flight</th><th>requests</th>'+
      '<th>2xx</th><th>3xx</th><th>4xx</th><th>5xx</th><th>failures</th><th>last check</th>'+
      '<th>p50</th><th>p99</th><th>requests, 1 h</th><th>p99, 1 h</th></tr></thead><tbody>';
    p.upstreams.forEach(function(u){
      var st=!u.up?'down':(u.backup?'backup':'up');
      var c=u.last_check?((u.last_check.ok?'ok ':'failed ')+esc(u.last_check.detail)+' · '+ago(now,u.last_check.unix_ms)):'-';
      var evs=H.ev.filter(function(e){return e.pool===p.name&&e.address===u.address;});
      var reqs=series(function(b){var q=b.p[p.name];var x=q&&q.u[u.address];return x?x.requests/b.secs:null;});
      var p99=series(function(b){var q=b.p[p.name];var x=q&&q.u[u.address];return x?x.p99:null;});
      html+='<tr class="'+st+'" data-upstream="'+esc(u.address)+'"><td>'+esc(u.address)+(u.discovered?' <small>'+esc(u.name)+'</small>':'')+'</td><td>'+stateText(u,now)+'</td><td>'+u.weight+
        '</td><td>'+u.active_requests+'</td><td>'+u.requests+'</td><td>'+u.responses['2xx']+'</td><td>'+u.responses['3xx']+
        '</td><td>'+u.responses['4xx']+'</td><td>'+u.responses['5xx']+'</td><td>'+u.connect_failures+'</td><td>'+c+
        '</td><td>'+ms(u.response_ms.p50)+'</td><td>'+ms(u.response_ms.p99)+'</td><td class="spark">'+spark(reqs,'requests',evs,'/s')+
        '</td><td class="spark">'+spark(p99,'p99',evs,' ms')+'</td></tr>';
    });
    html+='</tbody></table></details>';
  });
  document.getElementById('pools').innerHTML=html;
  document.getElementById('clients').innerHTML=clientsChart();
  if(s.tls){
    var t='<section class="pool"><h2>HTTPS <small>'+esc(s.tls.listen)+'</small></h2><table><thead><tr>'+
      '<th>certificate</th><th>expires</th><th>days left</th></tr></thead><tbody>';
    s.tls.certificates.forEach(function(c){
      t+='<tr class="'+(c.days_left<14?'down':'up')+'"><td>'+esc(c.names.join(', '))+'</td><td>'+
        esc(c.not_after)+'</td><td>'+c.days_left+'</td></tr>';
    });
    document.getElementById('tls').innerHTML=t+'</tbody></table></section>';
  }
  if(s.dns&&s.dns.length){
    var d='<section class="pool"><h2>DNS</h2><table><thead><tr><th>name</th><th>state</th><th>addresses</th>'+
      '<th>last resolved</th><th>TTL</th></tr></thead><tbody>';
    s.dns.forEach(function(n){
      var state=n.error?'failing: '+esc(n.error)+' (keeping the last answer)':(n.last_success_unix_ms?'ok':'not resolved yet');
      var when=n.last_success_unix_ms?new Date(n.last_success_unix_ms).toISOString().replace(/\.\d+Z$/,'Z'):'never';
      d+='<tr class="'+(n.error?'down':'up')+'"><td>'+esc(n.name)+' <small>'+esc(n.type)+'</small></td><td>'+state+
        '</td><td>'+esc(n.addresses.join(', '))+'</td><td>'+when+'</td><td>'+(n.ttl===null?'-':n.ttl+'s')+'</td></tr>';
    });
    document.getElementById('dns').innerHTML=d+'</tbody></table></section>';
  }
  if(s.tcp&&s.tcp.length){
    var c='<section class="pool"><h2>TCP listeners</h2><table><thead><tr><th>listener</th><th>to</th><th>open</th>'+
      '<th>connections</th><th>bytes in</th><th>bytes out</th></tr></thead><tbody>';
    s.tcp.forEach(function(l){
      var to=l.pool!==null?esc(l.pool):(l.routes.length?l.routes.map(function(r){
        return esc(r.sni===null?'(default)':r.sni)+' \u2192 '+esc(r.pool);}).join(', '):'refusing (removed by a reload)');
      c+='<tr class="up"><td>'+esc(l.listen)+'</td><td>'+to+'</td><td>'+l.open+'</td><td>'+l.connections+
        '</td><td>'+l.bytes_in+'</td><td>'+l.bytes_out+'</td></tr>';
    });
    document.getElementById('tcp').innerHTML=c+'</tbody></table></section>';
  }
  if(s.acme){
    var a='<section class="pool"><h2>ACME <small>'+esc(s.acme.directory)+'</small></h2><table><thead><tr>'+
      '<th>domain</th><th>state</th></tr></thead><tbody>';
    s.acme.domains.forEach(function(d){
      var txt=d.state==='valid'?'valid until '+esc(d.not_after):d.state==='failing'?'valid until '+
        esc(d.not_after)+'; renewal failing since '+esc(d.failing_since)+': '+esc(d.error):
        d.state==='pending'?'pending'+(d.error?': '+esc(d.error):''):'covered by a configured certificate';
      a+='<tr class="'+(d.state==='valid'||d.state==='configured'?'up':'down')+'"><td>'+esc(d.name)+
        '</td><td>'+txt+'</td></tr>';
    });
    document.getElementById('acme').innerHTML=a+'</tbody></table></section>';
  }
  var rl=s.pools.reduce(function(a,p){return a+p.rate_limited;},0);
  document.getElementById('summary').textContent='up '+s.uptime_seconds+'s · '+s.clients.open+
    ' client connections open · '+s.clients.accepted+' accepted · '+s.clients.requests+' requests · '+rl+' rate limited';
  document.getElementById('updated').textContent='Updated '+new Date().toLocaleTimeString()+'.';
}
function get(url){return fetch(url,{cache:'no-store'}).then(function(r){if(!r.ok)throw r.status;return r.json();});}
var busy=false;
function tick(){
  /* One refresh at a time: a slow answer (the first hour of history) is not asked again. */
  if(busy)return;
  busy=true;
  Promise.all([get('/status'),get('/status/history?since='+H.next)]).then(function(r){merge(r[1]);render(r[0]);})
    .catch(function(){document.getElementById('updated').textContent='(no answer from /status)';})
    .then(function(){busy=false;});
}
tick();
setInterval(tick,2000);
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> View {
        crate::admin::view::sample()
    }

    #[test]
    fn metrics_are_prometheus_text_with_each_upstream_once() {
        let m = metrics(&view());
        assert!(m.contains("# TYPE goround_upstream_up gauge\n"));
        assert!(m.contains("goround_upstream_up{pool=\"web\",upstream=\"127.0.0.1:8081\"} 1\n"));
        assert!(m.contains("goround_upstream_up{pool=\"web\",upstream=\"127.0.0.1:8082\"} 0\n"));
        assert_eq!(
            m.matches("goround_upstream_requests_total{").count(),
            2,
            "the shared upstream once"
        );
        assert!(m.contains("goround_upstream_responses_total{pool=\"web\",upstream=\"127.0.0.1:8081\",code=\"2xx\"} 10\n"));
        assert!(m.contains("goround_upstream_response_seconds_bucket{pool=\"web\",upstream=\"127.0.0.1:8081\",le=\"0.0025\"} 0\n"));
        assert!(m.contains("goround_upstream_response_seconds_bucket{pool=\"web\",upstream=\"127.0.0.1:8081\",le=\"0.005\"} 10\n"));
        assert!(m.contains("goround_upstream_response_seconds_bucket{pool=\"web\",upstream=\"127.0.0.1:8081\",le=\"+Inf\"} 10\n"));
        assert!(m.contains("goround_upstream_response_seconds_sum{pool=\"web\",upstream=\"127.0.0.1:8081\"} 0.03\n"));
        assert!(m.contains("goround_upstream_health_checks_total{pool=\"web\",upstream=\"127.0.0.1:8081\",result=\"fail\"} 1\n"));
        assert!(m.contains("goround_rate_limited_total{pool=\"web\"} 3\n"));
        assert!(
            m.contains("goround_rate_limited_total{pool=\"api\\\"x\"} 0\n"),
            "label escaping"
        );
        assert!(m.contains("goround_client_connections 2\n"));
        assert!(m.contains("goround_local_responses_total{code=\"429\"} 0\n"));
        assert!(m.contains("goround_build_info{version=\"0.1.0\"} 1\n"));
        // Every sample line belongs to a declared family.
        for line in m.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(m.contains(&format!("# TYPE {family} ")), "{line}");
        }
    }

    #[test]
    fn status_is_json_with_the_documented_keys() {
        let s = status(&view());
        for key in [
            "\"version\":\"0.1.0\"",
            "\"uptime_seconds\":12",
            "\"name\":\"web\"",
            "\"strategy\":\"round_robin\"",
            "\"address\":\"127.0.0.1:8082\",\"name\":\"127.0.0.1:8082\",\"up\":false",
            "\"responses\":{\"2xx\":10,\"3xx\":0,\"4xx\":0,\"5xx\":0}",
            "\"last_check\":null",
            "\"response_ms\":{\"p50\":3.750,\"p99\":4.975}",
            "\"clients\":{\"open\":2,\"accepted\":7,\"requests\":20",
            "\"rate_limited\":3",
            "\"name\":\"api\\\"x\"",
        ] {
            assert!(s.contains(key), "{key} in {s}");
        }
        // Balanced braces and brackets outside strings: well-formed enough to be parsed.
        let (mut depth, mut in_str, mut esc) = (0i32, false, false);
        for c in s.chars() {
            match (in_str, esc, c) {
                (true, true, _) => esc = false,
                (true, false, '\\') => esc = true,
                (true, false, '"') => in_str = false,
                (false, _, '"') => in_str = true,
                (false, _, '{' | '[') => depth += 1,
                (false, _, '}' | ']') => depth -= 1,
                _ => {}
            }
            assert!(depth >= 0);
        }
        assert_eq!(depth, 0);
    }

    #[test]
    fn the_page_works_without_javascript_and_marks_down_rows() {
        let p = page(&view());
        assert!(p.starts_with("<!DOCTYPE html>"));
        assert!(p.contains("<tr class=\"down\" data-upstream=\"127.0.0.1:8082\">"));
        assert!(p.contains("<tr class=\"up\" data-upstream=\"127.0.0.1:8081\">"));
        assert!(p.contains("api&quot;x"), "names are escaped");
        assert!(p.contains("3.8 ms"), "p50 shown");
        assert!(
            !p.contains("http://") && !p.contains("https://"),
            "no external asset"
        );
        assert!(p.contains("setInterval(tick,2000)"));
    }
}
