//! Pools routed by Host and path from a config file: the most specific route wins, paths match
//! in normal form (so no spelling reaches another pool), the request goes upstream as it came,
//! and a request no route matches gets a 404 naming its host.

mod common;

use common::*;

/// Three recording backends named by their answer, behind the example routes.
struct Routed {
    api: RawBackend,
    carts: RawBackend,
    web: RawBackend,
    proxy: Proxy,
    _dir: TempDir,
}

fn named(body: &str) -> RawBackend {
    RawBackend::fixed(&ok_response(body))
}

fn routed(default_route: bool) -> Routed {
    let (api, carts, web) = (named("api"), named("carts"), named("web"));
    let default = if default_route {
        "[[routes]]\npool = \"web\"\n"
    } else {
        "[[routes]]\nhost = \"www.test\"\npool = \"web\"\n"
    };
    let config = format!(
        "health_interval = \"1h\"\n\
         [pools.web]\nupstreams = [\"127.0.0.1:{}\"]\n\
         [pools.api]\nupstreams = [\"127.0.0.1:{}\"]\n\
         [pools.carts]\nupstreams = [\"127.0.0.1:{}\"]\n\
         [[routes]]\nhost = \"api.example.com\"\npool = \"api\"\n\
         [[routes]]\nhost = \"*.example.com\"\npath = \"/cart\"\npool = \"carts\"\n\
         {default}",
        web.port(),
        api.port(),
        carts.port()
    );
    let (proxy, dir) = Proxy::with_config(&config, &[]);
    Routed {
        api,
        carts,
        web,
        proxy,
        _dir: dir,
    }
}

/// `GET target` with `Host: host` on a fresh connection: the status and the body.
fn get_host(proxy: &Proxy, host: &str, target: &str) -> (u16, String) {
    let mut c = ResponseReader::connect(proxy.addr());
    c.send(format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
    let r = c.read_response("GET");
    (r.status, r.body_text())
}

#[test]
fn requests_go_to_the_pool_of_the_most_specific_route() {
    let r = routed(true);
    for (host, target, want) in [
        ("api.example.com", "/", "api"),
        ("API.example.com:8000", "/users", "api"),
        ("api.example.com.", "/cart", "api"),
        ("www.example.com", "/cart", "carts"),
        ("shop.example.com", "/cart/7?x=1", "carts"),
        ("www.example.com", "/cart?x", "carts"),
        ("www.example.com", "/cartoon", "web"),
        ("www.example.com", "/", "web"),
        ("example.com", "/cart", "web"),
        ("other.test", "/anything", "web"),
    ] {
        assert_eq!(
            get_host(&r.proxy, host, target),
            (200, want.to_string()),
            "{host} {target}"
        );
    }
    // The absolute-form target's authority is the host (RFC 9112 §3.2.2), not the Host field.
    let mut c = ResponseReader::connect(r.proxy.addr());
    c.send(b"GET http://api.example.com/x HTTP/1.1\r\nHost: www.example.com\r\n\r\n");
    assert_eq!(c.read_response("GET").body_text(), "api");
}

#[test]
fn every_spelling_of_a_path_routes_as_its_normal_form_and_goes_upstream_unchanged() {
    let r = routed(true);
    let attempts = [
        "/public/../cart",
        "/./cart",
        "/%63art",
        "/%63%61%72%74/items",
        "//cart",
        "/cart/./x",
        "/a/b/../../cart",
        "/../cart",
        "/%2e%2e/cart",
        "/x/%2E%2E/cart/1",
    ];
    for target in attempts {
        assert_eq!(
            get_host(&r.proxy, "www.example.com", target),
            (200, "carts".to_string()),
            "{target}"
        );
    }
    let got = r.carts.wait_requests(attempts.len(), IO_TIMEOUT);
    for (req, target) in got.iter().zip(attempts) {
        let line = format!("GET {target} HTTP/1.1\r\n");
        assert!(
            req.starts_with(line.as_bytes()),
            "forwarded as received: {}",
            show(req)
        );
    }
    // And what only looks like the prefix does not get in.
    for target in ["/cartoon", "/carts", "/x/cart", "/cart/../x", "/cart/..%2f"] {
        assert_eq!(
            get_host(&r.proxy, "www.example.com", target),
            (200, "web".to_string()),
            "{target}"
        );
    }
    assert!(r.api.requests().is_empty());
}

#[test]
fn a_request_no_route_matches_gets_404_naming_its_host_and_the_connection_lives_on() {
    let r = routed(false);
    let mut c = ResponseReader::connect(r.proxy.addr());
    c.send(b"GET / HTTP/1.1\r\nHost: nowhere.test\r\n\r\n");
    let resp = c.read_response("GET");
    assert_bytes_eq(
        &resp.raw,
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 33\r\n\r\n\
          no route for host 'nowhere.test'\n",
        "404",
    );
    // Kept alive: the next request on the same connection is routed.
    c.send(b"GET / HTTP/1.1\r\nHost: www.test\r\n\r\n");
    assert_eq!(c.read_response("GET").body_text(), "web");
    // With a body that was not read, the connection closes after the 404.
    let reply = send_raw(
        r.proxy.addr(),
        b"POST / HTTP/1.1\r\nHost: nowhere.test\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert!(
        reply.starts_with(b"HTTP/1.1 404 Not Found\r\n"),
        "{}",
        show(&reply)
    );
    assert!(
        find(&reply, b"\r\nConnection: close\r\n").is_some(),
        "{}",
        show(&reply)
    );
    assert!(r.web.requests().len() == 1 && r.api.requests().is_empty());
}
