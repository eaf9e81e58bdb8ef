//! A path cannot reach another pool by another spelling: routes match the path after every
//! `%XX` is decoded once, `\` is read as `/`, `;parameters` are dropped from each segment, dot
//! segments are removed and runs of `/` merged; the request still goes upstream as it came.

mod common;

use common::*;

/// Which backend got the request for `path`, and the request line it got.
fn route(proxy: &Proxy, api: &RawBackend, web: &RawBackend, path: &str) -> (&'static str, String) {
    let (a, w) = (api.requests().len(), web.requests().len());
    let reply = send_raw(
        proxy.addr(),
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert!(
        reply.starts_with(b"HTTP/1.1 200 "),
        "{path}: {}",
        show(&reply)
    );
    let line = |r: &[u8]| {
        let end = find(r, b"\r\n").unwrap_or(r.len());
        String::from_utf8_lossy(&r[..end]).into_owned()
    };
    match (api.requests().len() - a, web.requests().len() - w) {
        (1, 0) => ("api", line(api.requests().last().unwrap())),
        (0, 1) => ("web", line(web.requests().last().unwrap())),
        other => panic!("{path}: {other:?}"),
    }
}

#[test]
fn every_spelling_of_a_path_reaches_the_pool_of_its_normal_form() {
    let api = RawBackend::fixed(&ok_response("api"));
    let web = RawBackend::fixed(&ok_response("web"));
    let config = format!(
        "[pools.api]\nupstreams = [\"127.0.0.1:{}\"]\n[pools.web]\nupstreams = [\"127.0.0.1:{}\"]\n\
         [[routes]]\npath = \"/api\"\npool = \"api\"\n[[routes]]\npool = \"web\"\n",
        api.port(),
        web.port()
    );
    let (proxy, _dir) = Proxy::with_config(&config, &[]);
    for (path, pool) in [
        ("/api/x", "api"),
        ("/apix", "web"),
        ("/web/x", "web"),
        ("/web/../api/x", "api"),
        ("/web/%2e%2e/api/x", "api"),
        ("/%61pi/x", "api"),
        ("//api//x", "api"),
        // An encoded slash or backslash separates segments as it does for a backend that
        // decodes it.
        ("/web/..%2Fapi/x", "api"),
        ("/web%2f..%2fapi/x", "api"),
        ("/web/..%5Capi/x", "api"),
        ("/web\\..\\api/x", "api"),
        ("/api%2Fx", "api"),
        // Path parameters (`;v=1`, Tomcat's `..;`) are not part of a segment's name.
        ("/api;v=1/x", "api"),
        ("/web/..;/api/x", "api"),
        ("/web/..;x=1/api/x", "api"),
        // Decoded once: `%252F` is the text `%2F`, not a separator.
        ("/web/..%252Fapi/x", "web"),
        // The query is not the path.
        ("/web?to=/api/x", "web"),
    ] {
        let (got, line) = route(&proxy, &api, &web, path);
        assert_eq!(got, pool, "{path}");
        assert_eq!(line, format!("GET {path} HTTP/1.1"), "forwarded as it came");
    }
}
