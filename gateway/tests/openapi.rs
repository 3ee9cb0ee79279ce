//! `gateway/openapi.json` stays the document of the gateway's routes: every route the
//! router declares (read from its source, so a route added without documenting it
//! fails here) is in the document with the same methods, and nothing else is; every
//! documented operation is served by the running gateway; and the gateway serves the
//! file itself at `/openapi.json`.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use support::{Gateway, exchange};

const DOCUMENT: &str = include_str!("../openapi.json");
const HTTP_ROUTES: &str = include_str!("../src/http/mod.rs");
const APP: &str = include_str!("../src/app.rs");
const INTERACTIONS: &str = include_str!("../src/http/interactions.rs");
const DEMO: &str = include_str!("../src/demo.rs");
const DASHBOARD: &str = include_str!("../src/dashboard.rs");

/// The routers `router()` merges in, by the expression it merges, and their source.
const MERGED: &[(&str, &str)] = &[
    ("crate::demo::routes()", DEMO),
    ("crate::dashboard::routes()", DASHBOARD),
];

/// Routes that are not in the document, and why.
const UNDOCUMENTED: &[(&str, &str)] = &[(
    "crate::ws::ECHO_PATH",
    "the diagnostic echo (--diagnostic-echo), for conformance suites only",
)];

/// Path → methods (upper case).
type Routes = BTreeMap<String, BTreeSet<String>>;

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("gateway/openapi.json is JSON")
}

fn documented() -> Routes {
    let doc = document();
    let mut routes = Routes::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let methods = item
            .as_object()
            .expect("a path item")
            .keys()
            .filter(|k| {
                ["get", "put", "post", "delete", "patch", "options", "head"].contains(&k.as_str())
            })
            .map(|k| k.to_ascii_uppercase())
            .collect();
        routes.insert(path.clone(), methods);
    }
    routes
}

/// The text between the parentheses that open at `open` (the index just after `(`).
fn balanced(src: &str, open: usize) -> &str {
    let mut depth = 1;
    for (i, c) in src[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &src[open..open + i];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses after {}", &src[open..]);
}

/// The HTTP methods a method router expression names (`get(h).post(g)`).
fn methods(expr: &str) -> BTreeSet<String> {
    let bytes = expr.as_bytes();
    let mut found = BTreeSet::new();
    for m in ["get", "post", "put", "delete", "patch"] {
        let mut from = 0;
        while let Some(at) = expr[from..].find(&format!("{m}(")) {
            let at = from + at;
            let before = at.checked_sub(1).map(|i| bytes[i]);
            if !before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
                found.insert(m.to_ascii_uppercase());
            }
            from = at + m.len();
        }
    }
    found
}

/// Every `.route(path, methods)` in `src`, a part of the file `file` (the path a
/// literal or the name of a constant declared in `file`).
fn declared(src: &str, file: &str) -> Vec<(String, BTreeSet<String>)> {
    for call in [
        ".nest(",
        ".nest_service(",
        ".route_service(",
        ".fallback_service(",
    ] {
        assert!(
            !src.contains(call),
            "`{call}` in a router: teach this test to read the routes it adds"
        );
    }
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = src[from..].find(".route(") {
        let open = from + at + ".route(".len();
        let args = balanced(src, open);
        let (path, expr) = args.split_once(',').expect("route(path, methods)");
        let path = resolve(path.trim(), file);
        out.push((path, methods(expr)));
        from = open;
    }
    out
}

/// A route's path: a literal, or the literal of a `const` of that name in `file`
/// (other paths stay as written, for `UNDOCUMENTED`).
fn resolve(path: &str, file: &str) -> String {
    if let Some(literal) = path.strip_prefix('"') {
        return literal.trim_end_matches('"').to_owned();
    }
    let declaration = format!("const {path}: &str = \"");
    file.find(&declaration)
        .and_then(|at| file[at + declaration.len()..].split_once('"'))
        .map_or_else(|| path.to_owned(), |(literal, _)| literal.to_owned())
}

/// The routes of each router `router_fn` merges in.
fn merged(router_fn: &str) -> Vec<(String, BTreeSet<String>)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = router_fn[from..].find(".merge(") {
        let open = from + at + ".merge(".len();
        let what = balanced(router_fn, open).trim();
        let (_, src) = MERGED
            .iter()
            .find(|(expr, _)| *expr == what)
            .unwrap_or_else(|| panic!("router() merges `{what}`: add its source to MERGED"));
        let routes_fn = &src[src.find("fn routes(").expect("fn routes")..];
        out.extend(declared(
            &routes_fn[..routes_fn.find("\n}").expect("its end")],
            src,
        ));
        from = open;
    }
    out
}

/// The collection names `interactions::collection` accepts (`keywords`, …).
fn collections() -> Vec<String> {
    let start = INTERACTIONS.find("fn collection(").expect("fn collection");
    let body = &INTERACTIONS[start..];
    let body = &body[..body.find("\n}").expect("its end")];
    body.lines()
        .filter_map(|l| l.trim().strip_prefix('"')?.split_once('"'))
        .filter(|(_, rest)| rest.trim_start().starts_with("=> Some("))
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// The router's routes, as served: the generic `{what}` route once per collection.
fn routed() -> Routes {
    let routes_fn = &HTTP_ROUTES[HTTP_ROUTES.find("fn routes(").expect("fn routes")..];
    let router_fn = &APP[APP.find("fn router(").expect("fn router")..];
    let router_fn = &router_fn[..router_fn.find("\n}").expect("its end")];
    let routes_fn = &routes_fn[..routes_fn.find("\n}").expect("its end")];
    let mut routes = Routes::new();
    let all = declared(routes_fn, HTTP_ROUTES)
        .into_iter()
        .chain(declared(router_fn, APP))
        .chain(merged(router_fn));
    for (path, methods) in all {
        assert!(!methods.is_empty(), "no method found for {path}");
        if UNDOCUMENTED.iter().any(|(p, _)| *p == path) {
            continue;
        }
        assert!(
            path.starts_with('/'),
            "a route at `{path}`: add it to UNDOCUMENTED or the document"
        );
        let expanded = if path.contains("{what}") {
            collections()
                .iter()
                .map(|c| path.replace("{what}", c))
                .collect()
        } else {
            vec![path]
        };
        for p in expanded {
            routes.entry(p).or_default().extend(methods.iter().cloned());
        }
    }
    routes
}

#[test]
fn every_route_is_documented_with_its_methods_and_nothing_else_is() {
    assert_eq!(collections(), ["keywords", "quizzes", "lotteries"]);
    let routed = routed();
    let documented = documented();
    assert!(
        routed.len() > 20,
        "too few routes read from the source: {routed:?}"
    );
    for (path, methods) in &routed {
        assert_eq!(
            documented.get(path),
            Some(methods),
            "{path} is routed with {methods:?}: document it in gateway/openapi.json"
        );
    }
    for path in documented.keys() {
        assert!(
            routed.contains_key(path),
            "{path} is documented but not routed"
        );
    }
}

/// Every `$ref` resolves, and every error answer of the API is the shared error body.
#[test]
fn the_document_is_whole() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in &all {
        let pointer = r.strip_prefix('#').expect("a local $ref");
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
    let resolve = |v: &Value| -> Value {
        match v["$ref"].as_str() {
            Some(r) => doc.pointer(&r[1..]).unwrap().clone(),
            None => v.clone(),
        }
    };
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, answer) in op["responses"].as_object().unwrap() {
                let code: u16 = status.parse().unwrap();
                // 431 is hyper's (no body); /readyz says why it is not ready in its own words.
                if code < 400 || code == 431 || path == "/readyz" {
                    continue;
                }
                let answer = resolve(answer);
                assert_eq!(
                    answer["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/Error",
                    "{method} {path} {status}"
                );
            }
            if PUBLIC.contains(&path.as_str()) {
                assert_eq!(op["security"], Value::Array(vec![]), "{path} needs no key");
                for status in ["400", "404", "503"] {
                    assert!(
                        op["responses"].get(status).is_some(),
                        "{method} {path} lacks {status}"
                    );
                }
            } else if path.starts_with("/v1/") {
                assert_eq!(op["security"][0]["apiKey"], Value::Array(vec![]), "{path}");
                for status in ["400", "401", "429", "503"] {
                    assert!(
                        op["responses"].get(status).is_some(),
                        "{method} {path} lacks {status}"
                    );
                }
                if op.get("requestBody").is_some() {
                    for status in ["413", "415"] {
                        assert!(
                            op["responses"].get(status).is_some(),
                            "{method} {path} lacks {status}"
                        );
                    }
                }
            }
        }
    }
}

/// The API routes anyone may call, without a key.
const PUBLIC: [&str; 1] = ["/v1/rooms/{room}/lotteries/{id}/draw"];

#[tokio::test]
async fn the_gateway_serves_the_document_and_every_operation_in_it() {
    let gw = Gateway::start(&[]);
    let req = "GET /openapi.json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let a = exchange(gw.addr, &[req.as_bytes()]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(
        a.body,
        document(),
        "the served document is gateway/openapi.json"
    );
    // Without a key an API route answers 401, an operation-free path 404 and a wrong
    // method 405: a documented operation that is not served shows up as one of those.
    for (path, methods) in documented() {
        let concrete = path
            .replace("{room}", "r")
            .replace("{poll}", "p-1")
            .replace("{coupon}", "c-1")
            .replace("{id}", id_for(&path));
        for method in methods {
            let req = format!(
                "{method} {concrete} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
            );
            let a = exchange(gw.addr, &[req.as_bytes()]).await;
            let expected = match path.as_str() {
                // Served without a key: the room has no such lottery.
                p if PUBLIC.contains(&p) => 404,
                p if p.starts_with("/v1/") => 401,
                "/ws" => 400, // not an upgrade
                _ => 200,
            };
            assert_eq!(a.status, expected, "{method} {concrete}: {}", a.body);
        }
    }
}

fn id_for(path: &str) -> &'static str {
    if path.contains("/quizzes/") {
        "q-1"
    } else if path.contains("/lotteries/") {
        "l-1"
    } else {
        "k-1"
    }
}
