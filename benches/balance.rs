//! What routing and each strategy cost per request: a route lookup among 10 routes, and one
//! pick per strategy over 4 upstreams (the hash strategies with their key's hashing).
//!
//! `cargo bench --bench balance`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use goround_mio::balance::{hash, Pool};
use goround_mio::config::{
    Address, Check, HashKey, HealthSpec, PoolSpec, RouteSpec, StatusRanges, Strategy, UpstreamSpec,
};
use goround_mio::route::{normalize_route_host, normalize_route_path, Table};
use goround_mio::upstream::{Registry, Tried};

fn spec(strategy: Strategy, weights: &[u32], key: Option<HashKey>) -> PoolSpec {
    PoolSpec {
        name: "p".into(),
        strategy,
        hash_key: key,
        upstreams: weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| {
                let addr = SocketAddr::from(([10, 0, 0, 1], 8000 + i as u16));
                UpstreamSpec {
                    address: Address {
                        name: addr.to_string(),
                        addr,
                    },
                    weight,
                    backup: false,
                    max_conns: None,
                }
            })
            .collect(),
        health: HealthSpec {
            check: Check::Tcp,
            send_proxy: None,
            tls: false,
            path: "/".into(),
            host: None,
            expect: StatusRanges(vec![(200, 399)]),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            rise: 1,
            fall: 1,
        },
        retries: 2,
        slow_start: Duration::ZERO,
        queue_timeout: Duration::from_secs(5),
        client_rate: None,
        send_proxy: None,
        tls: None,
        names: Vec::new(),
        discover: None,
        outlier: goround_mio::config::OUTLIER,
        retry_budget: goround_mio::config::RETRY_BUDGET,
    }
}

fn routes(c: &mut Criterion) {
    let route = |host: Option<&str>, path: Option<&str>, pool| RouteSpec {
        host: host.map(|h| normalize_route_host(h).unwrap()),
        path: path.map(|p| normalize_route_path(p).unwrap()),
        pool,
    };
    let table = Table::new(&[
        route(Some("api.example.com"), None, 0),
        route(Some("api.example.com"), Some("/v2"), 1),
        route(Some("static.example.com"), None, 2),
        route(Some("*.example.com"), Some("/cart"), 3),
        route(Some("*.example.com"), Some("/checkout"), 4),
        route(Some("*.shop.example.com"), None, 5),
        route(Some("admin.example.org"), None, 6),
        route(None, Some("/static"), 7),
        route(None, Some("/api"), 8),
        route(None, None, 9),
    ]);
    let single = Table::new(&[route(None, None, 0)]);
    let mut g = c.benchmark_group("route lookup");
    g.bench_function("one catch-all route (the default pool)", |b| {
        b.iter(|| single.lookup(black_box(b"www.example.com"), black_box("/index.html")))
    });
    g.bench_function("10 routes, wildcard host and path", |b| {
        b.iter(|| {
            table.lookup(
                black_box(b"www.example.com"),
                black_box("/cart/items/7?x=1"),
            )
        })
    });
    g.bench_function("10 routes, exact host", |b| {
        b.iter(|| table.lookup(black_box(b"api.example.com"), black_box("/v2/users")))
    });
    g.bench_function("10 routes, a path to normalise", |b| {
        b.iter(|| {
            table.lookup(
                black_box(b"www.example.com"),
                black_box("/a/../cart/%69tems"),
            )
        })
    });
    g.finish();
}

fn strategies(c: &mut Criterion) {
    let registry = Registry::new(1);
    let tried = Tried::default();
    let client = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 33));
    let headers = [
        httparse::Header {
            name: "Cookie",
            value: b"_ga=GA1.2.3; session=8f14e45fceea167a5a36dedd4bea2543; theme=dark",
        },
        httparse::Header {
            name: "X-User",
            value: b"alice",
        },
    ];
    let mut g = c.benchmark_group("pick, 4 upstreams");
    let cases = [
        (
            "round_robin, equal weights",
            spec(Strategy::RoundRobin, &[1; 4], None),
        ),
        (
            "round_robin, weights 5:1:1:1 (smooth)",
            spec(Strategy::RoundRobin, &[5, 1, 1, 1], None),
        ),
        ("least_conn", spec(Strategy::LeastConn, &[1; 4], None)),
    ];
    for (name, s) in cases {
        let pool = Pool::new(&s, &[], &registry, false).unwrap();
        let mut local = vec![0i64; 4];
        g.bench_function(name, |b| b.iter(|| pool.pick(&tried, None, &mut local, 1)));
    }
    let ip = Pool::new(
        &spec(Strategy::IpHash, &[1; 4], Some(HashKey::ClientIp)),
        &[],
        &registry,
        false,
    )
    .unwrap();
    g.bench_function("ip_hash (hash the address, ring lookup)", |b| {
        b.iter(|| {
            let k = hash::key_of(&HashKey::ClientIp, black_box(client), &headers, "/");
            ip.pick(&tried, k, &mut [], 1)
        })
    });
    let cookie = HashKey::Cookie("session".into());
    let by_cookie = Pool::new(
        &spec(Strategy::Hash, &[1; 4], Some(cookie.clone())),
        &[],
        &registry,
        false,
    )
    .unwrap();
    g.bench_function(
        "hash cookie:session (find the cookie, hash, ring lookup)",
        |b| {
            b.iter(|| {
                let k = hash::key_of(&cookie, client, black_box(&headers), "/");
                by_cookie.pick(&tried, k, &mut [], 1)
            })
        },
    );
    g.finish();
}

criterion_group!(benches, routes, strategies);
criterion_main!(benches);
