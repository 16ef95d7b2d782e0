//! The web side of the fts port (issue 5, first part): `/api/stats` and
//! `/metrics` over HTTPS on the same port and certificate as the fts
//! protocol, chosen by ALPN, behind the access password when there is one.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A small parser of the Prometheus text format: every sample line is
/// `name value`, every sample has HELP and TYPE lines before it, values are
/// numbers, names are valid metric names. Returns the samples.
fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    let mut typed = BTreeMap::new();
    let mut helped = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(!help.is_empty());
            helped.insert(name.to_string(), ());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                ["counter", "gauge"].contains(&kind),
                "unexpected type {kind}"
            );
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter {name} without _total");
            }
            typed.insert(name.to_string(), kind.to_string());
        } else {
            assert!(!line.starts_with('#'), "stray comment {line}");
            let (name, value) = line.split_once(' ').expect("sample line");
            // Every sample is labelled with the node that served it.
            let (name, labels) = name.split_once('{').expect("sample without labels");
            assert!(
                labels.starts_with("node=\"") && labels.ends_with("\"}"),
                "{labels}"
            );
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad metric name {name}"
            );
            assert!(
                typed.contains_key(name) && helped.contains_key(name),
                "{name} untyped"
            );
            let v: f64 = value.parse().expect("numeric value");
            assert!(
                samples.insert(name.to_string(), v).is_none(),
                "{name} twice"
            );
        }
    }
    samples
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn stats_and_metrics_over_https_on_the_fts_port() {
    let tmp = tempfile::tempdir().unwrap();
    let pw = secret_file(tmp.path(), "pw", "web pw");
    let s = Setup::new(&["--password-file", pw.to_str().unwrap()]);
    let env = [("FTS_PASSWORD", "web pw")];
    let f = s.local("f.bin");
    random_file(&f, 3 << 20, 5);
    s.client
        .run_env(&["put", f.to_str().unwrap(), &s.url("")], &env)
        .ok();

    // Without the password: a Basic challenge, nothing else.
    let (code, head, body) = https_get(&s, "/api/stats", None);
    assert_eq!(code, 401, "{head}");
    assert!(
        head.to_lowercase().contains("www-authenticate: basic"),
        "{head}"
    );
    assert!(!body.contains("totals"));
    let (code, _, _) = https_get(&s, "/metrics", Some("x:wrong"));
    assert_eq!(code, 401);

    // /api/stats has the schema of `stats --json`.
    let (code, _, body) = https_get(&s, "/api/stats", Some("prom:web pw"));
    assert_eq!(code, 200, "{body}");
    let web: Value = serde_json::from_str(&body).unwrap();
    let cli = s.client.run_env(&["--json", "stats", &s.url("")], &env);
    cli.ok();
    let cli = cli.json();
    assert_eq!(keys(&web), keys(&cli));
    for k in ["server", "totals"] {
        assert_eq!(keys(&web[k]), keys(&cli[k]), "{k}");
    }
    assert_eq!(web["totals"]["bytes_received"], 3 << 20);
    assert_eq!(web["totals"]["auth_failures"], 1);
    let row = &cli["clients"][0];
    assert!(web["clients"].as_array().unwrap().is_empty());
    for k in [
        "id",
        "addr",
        "name",
        "connected_s",
        "state",
        "file",
        "bytes_done",
        "bytes_total",
        "rate_bps",
    ] {
        assert!(row.get(k).is_some(), "stats client row lacks {k}");
    }

    // /metrics is valid exposition with the same numbers.
    let (code, head, body) = https_get(&s, "/metrics", Some("prom:web pw"));
    assert_eq!(code, 200);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let m = parse_exposition(&body);
    assert_eq!(m["fts_bytes_received_total"], (3 << 20) as f64);
    assert_eq!(m["fts_files_received_total"], 1.0);
    assert_eq!(m["fts_clients_max"], 64.0);
    assert_eq!(m["fts_auth_failures_total"], 1.0);
    for name in [
        "fts_bytes_sent_total",
        "fts_saved_by_delta_bytes_total",
        "fts_saved_by_compression_bytes_total",
        "fts_connections_total",
        "fts_clients_connected",
        "fts_transfers_in_progress",
        "fts_uptime_seconds",
    ] {
        assert!(m.contains_key(name), "{name} missing");
    }

    // Unknown paths are 404; the fts protocol still works on the port.
    assert_eq!(https_get(&s, "/../../etc/passwd", Some("a:web pw")).0, 404);
    s.client.run_env(&["ls", &s.url("")], &env).ok();
}

const PW: &str = "web pw";
const ADMIN_PW: &str = "adm1n pw";

/// A server with an access password and an admin password.
fn web_setup(extra: &[&str]) -> Setup {
    let dir = tempfile::tempdir().unwrap().keep();
    let pw = secret_file(&dir, "pw", PW);
    let adm = secret_file(&dir, "adm", ADMIN_PW);
    let mut args = vec![
        "--password-file",
        pw.to_str().unwrap(),
        "--admin-password-file",
        adm.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Setup::new(&args)
}

/// A request with the access password.
fn get(s: &Setup, path: &str, more: &[(&str, &str)]) -> Resp {
    let auth = basic(&format!("u:{PW}"));
    let mut h = vec![("Authorization", auth.as_str())];
    h.extend_from_slice(more);
    https(s, "GET", path, &h, b"")
}

fn put(s: &Setup, path: &str, body: &[u8], more: &[(&str, &str)]) -> Resp {
    let auth = basic(&format!("u:{PW}"));
    let mut h = vec![("Authorization", auth.as_str())];
    h.extend_from_slice(more);
    https(s, "PUT", path, &h, body)
}

fn post_json(s: &Setup, path: &str, body: &Value, more: &[(&str, &str)]) -> Resp {
    let auth = basic(&format!("u:{PW}"));
    let mut h = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    h.extend_from_slice(more);
    https(s, "POST", path, &h, body.to_string().as_bytes())
}

#[test]
fn dashboard_assets_are_embedded_and_locked_down() {
    let s = web_setup(&[]);
    assert_eq!(https(&s, "GET", "/", &[], b"").status, 401);
    let page = get(&s, "/", &[]);
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let html = page.text();
    assert!(html.contains("<script src=\"/app.js\""), "{html}");
    // Nothing is fetched from elsewhere: every src/href is local.
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            let url = part.split('"').next().unwrap();
            assert!(
                url.starts_with('/') || url.starts_with('#'),
                "external reference {url}"
            );
        }
    }
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    assert_eq!(page.header("x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(
        page.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    for (path, kind) in [
        ("/app.js", "text/javascript"),
        ("/app.css", "text/css"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        let r = get(&s, path, &[]);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.header("content-type").unwrap().starts_with(kind),
            "{path}"
        );
        assert!(r.body.len() > 100, "{path}");
    }
    let js = get(&s, "/app.js", &[]).text();
    assert!(
        !js.contains("innerHTML"),
        "server text must not become HTML"
    );
    // The history behind the charts.
    let h = get(&s, "/api/history", &[]).json();
    assert_eq!(h["every_s"], 10);
    assert!(h["samples"].is_array());
}

/// A file of `size` bytes under the root, returned with its bytes.
fn root_file(s: &Setup, rel: &str, size: usize, seed: u64) -> Vec<u8> {
    let p = s.root().join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    random_file(&p, size, seed);
    std::fs::read(&p).unwrap()
}

#[test]
fn browse_download_with_ranges_and_upload() {
    let s = web_setup(&[]);
    let data = root_file(&s, "dir/ü n.bin", 1 << 20, 1);
    root_file(&s, "top.bin", 10, 2);

    // Listing.
    let ls = get(&s, "/api/ls?path=dir", &[]).json();
    assert_eq!(ls["path"], "dir");
    assert_eq!(ls["read_only"], false);
    let names: Vec<&str> = ls["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dir/ü n.bin"]);
    let root_ls = get(&s, "/api/ls", &[]).json();
    assert_eq!(root_ls["entries"].as_array().unwrap().len(), 2);

    // Whole file, with a name the browser can save under.
    let url = "/files/dir/%C3%BC%20n.bin";
    let r = get(&s, url, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    assert_eq!(r.header("accept-ranges").as_deref(), Some("bytes"));
    assert!(r
        .header("content-disposition")
        .unwrap()
        .contains("filename*=UTF-8''%C3%BC%20n.bin"));
    let etag = r.header("etag").unwrap();
    let modified = r.header("last-modified").unwrap();

    // Ranges: a slice, a suffix, an open end (what `curl -C -` sends).
    let r = get(&s, url, &[("Range", "bytes=100-199")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[100..200]);
    assert_eq!(
        r.header("content-range").as_deref(),
        Some("bytes 100-199/1048576")
    );
    let r = get(&s, url, &[("Range", "bytes=-10")]);
    assert_eq!(
        (r.status, r.body.as_slice()),
        (206, &data[data.len() - 10..])
    );
    let r = get(&s, url, &[("Range", "bytes=1000000-"), ("If-Range", &etag)]);
    assert_eq!((r.status, r.body.as_slice()), (206, &data[1_000_000..]));
    let r = get(
        &s,
        url,
        &[("Range", "bytes=1000000-"), ("If-Range", &modified)],
    );
    assert_eq!(r.status, 206);
    // A file that changed since: the whole of it.
    let r = get(&s, url, &[("Range", "bytes=10-"), ("If-Range", "\"old\"")]);
    assert_eq!((r.status, r.body.len()), (200, data.len()));
    let r = get(&s, url, &[("Range", "bytes=2000000-")]);
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range").as_deref(),
        Some("bytes */1048576")
    );
    // HEAD: the size, no body.
    let auth = basic(&format!("u:{PW}"));
    let r = https(&s, "HEAD", url, &[("Authorization", &auth)], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length").as_deref(), Some("1048576"));
    assert!(r.body.is_empty());
    // A directory without its trailing slash redirects to its index
    // (tests below).
    let r = get(&s, "/files/dir", &[]);
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location").as_deref(), Some("/files/dir/"));
    assert_eq!(get(&s, "/files/nope.bin", &[]).status, 404);

    // Upload: streamed, atomic, counted.
    let up = (0..3_000_000u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect::<Vec<_>>();
    let r = put(&s, "/files/dir/up%20load.bin", &up, &[]);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["path"], "dir/up load.bin");
    let stored = s.root().join("dir/up load.bin");
    assert_eq!(std::fs::read(&stored).unwrap(), up);
    assert_eq!(mode(&stored), 0o644);
    // Replacing works the same way.
    let r = put(&s, "/files/dir/up%20load.bin", b"second", &[]);
    assert_eq!(r.status, 201);
    assert_eq!(std::fs::read(&stored).unwrap(), b"second");
    assert_no_temp_files(s.root());
    let st = get(&s, "/api/stats", &[]).json();
    assert_eq!(st["totals"]["files_received"], 2);
    assert!(st["totals"]["bytes_sent"].as_u64().unwrap() >= 2 << 20);
    let ev = s.server.wait_event("web upload", |e| {
        e["event"] == "web_upload" && e["path"] == "dir/up load.bin"
    });
    assert_eq!(ev["category"], "transfer");

    // Refusals: no password, names fts keeps, directories, missing parents.
    assert_eq!(https(&s, "PUT", "/files/x.bin", &[], b"x").status, 401);
    assert_eq!(put(&s, "/files/.x.fts-part", b"x", &[]).status, 403);
    assert_eq!(put(&s, "/files/dir", b"x", &[]).status, 403);
    assert_eq!(put(&s, "/files/no/such/x.bin", b"x", &[]).status, 404);
    assert!(put(&s, "/files/", b"x", &[]).status >= 400);
}

#[test]
fn a_cut_upload_leaves_nothing() {
    use tokio::io::AsyncWriteExt;
    let s = web_setup(&[]);
    root_file(&s, "keep.bin", 1000, 3);
    let before = std::fs::read(s.root().join("keep.bin")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut t = tls_with_alpn(&s, b"http/1.1").await;
        let head = format!(
            "PUT /files/keep.bin HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: 4000000\r\n\r\n",
            basic(&format!("u:{PW}"))
        );
        t.write_all(head.as_bytes()).await.unwrap();
        t.write_all(&vec![7u8; 500_000]).await.unwrap();
        t.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The connection dies mid-body.
    });
    drop(rt);
    let deadline = Instant::now() + WAIT;
    while std::fs::read_dir(s.root())
        .unwrap()
        .any(|e| fts::fsutil::is_temp_name(&e.unwrap().file_name().to_string_lossy()))
    {
        assert!(Instant::now() < deadline, "temporary file left behind");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(std::fs::read(s.root().join("keep.bin")).unwrap(), before);
    assert_no_temp_files(s.root());
}

#[test]
fn read_only_and_single_file_shares_refuse_uploads() {
    let s = web_setup(&["--read-only"]);
    root_file(&s, "a.bin", 100, 4);
    assert_eq!(put(&s, "/files/b.bin", b"x", &[]).status, 403);
    assert_eq!(get(&s, "/api/ls", &[]).json()["read_only"], true);
    assert_eq!(get(&s, "/files/a.bin", &[]).status, 200);
    assert!(!s.root().join("b.bin").exists());

    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("one.iso");
    random_file(&one, 5000, 5);
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let server = Server::start(&one, &home, &[]);
    let s1 = Setup {
        tmp,
        server,
        client: Client::new(),
    };
    let r = https(&s1, "GET", "/files/one.iso", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, std::fs::read(&one).unwrap());
    let ls = https(&s1, "GET", "/api/ls", &[], b"").json();
    assert_eq!(ls["entries"][0]["path"], "one.iso");
    assert_eq!(ls["read_only"], true);
    assert_eq!(https(&s1, "PUT", "/files/other", &[], b"x").status, 403);
}

#[test]
fn url_paths_never_leave_the_root() {
    let s = web_setup(&[]);
    root_file(&s, "dir/in.bin", 10, 6);
    // Something outside the root to aim at, and a symlink pointing there.
    let outside = s.tmp.path().join("secret.txt");
    std::fs::write(&outside, "top secret").unwrap();
    std::os::unix::fs::symlink(s.tmp.path(), s.root().join("esc")).unwrap();
    std::os::unix::fs::symlink(&outside, s.root().join("dir/link")).unwrap();
    for path in [
        "/files/../secret.txt",
        "/files/dir/../../secret.txt",
        "/files/%2e%2e/secret.txt",
        "/files/%2E%2E%2Fsecret.txt",
        "/files/dir%2f..%2f..%2fsecret.txt",
        "/files/dir/..%2F..%2Fsecret.txt",
        "/files/..%5csecret.txt",
        "/files/esc/secret.txt",
        "/files/dir/link",
        "/files/%2Fetc%2Fpasswd",
        "/files//etc/passwd",
        "/files/dir%00/in.bin",
        "/api/ls?path=..",
        "/api/ls?path=%2Fetc",
        "/api/ls?path=esc",
        "/api/ls?path=dir%2F..%2F..",
    ] {
        let r = get(&s, path, &[]);
        assert!(
            [400, 403, 404].contains(&r.status),
            "{path}: {} {}",
            r.status,
            r.text()
        );
        assert!(!r.text().contains("top secret"), "{path} leaked");
        assert!(!r.text().contains("\"entries\""), "{path} listed");
    }
    // Writes cannot escape either.
    for path in [
        "/files/../evil.txt",
        "/files/%2e%2e/evil.txt",
        "/files/esc/evil.txt",
        "/files/dir/link",
    ] {
        let r = put(&s, path, b"evil", &[]);
        assert!([400, 403, 404].contains(&r.status), "{path}: {}", r.status);
    }
    assert!(!s.tmp.path().join("evil.txt").exists());
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "top secret");
    // Inside is fine.
    assert_eq!(get(&s, "/files/dir/in.bin", &[]).status, 200);
}

/// Logs in as admin over HTTPS: (cookie pair, CSRF token).
fn admin_login(s: &Setup) -> (String, String) {
    let r = post_json(
        s,
        "/api/admin/login",
        &serde_json::json!({ "password": ADMIN_PW }),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let set = r.header("set-cookie").unwrap();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "cookie without {attr}: {set}");
    }
    let cookie = set.split(';').next().unwrap().to_string();
    (cookie, r.json()["csrf"].as_str().unwrap().to_string())
}

/// Reads server-sent events from `/api/events` with `cookie` until
/// `pred` accepts an (event, data) pair or the wait runs out.
fn sse_until(s: &Setup, cookie: Option<&str>, mut pred: impl FnMut(&str, &Value) -> bool) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    block_on(async {
        let mut t = tls_with_alpn(s, b"http/1.1").await;
        let c = cookie
            .map(|c| format!("Cookie: {c}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "GET /api/events HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n{c}\r\n",
            basic(&format!("u:{PW}"))
        );
        t.write_all(req.as_bytes()).await.unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = match tokio::time::timeout_at(deadline, t.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => n,
                _ => return false,
            };
            buf.extend_from_slice(&chunk[..n]);
            // Events are "event: NAME\ndata: JSON\n\n" (inside chunked framing,
            // which never splits a line here: each event is one chunk).
            let text = String::from_utf8_lossy(&buf).into_owned();
            let mut event = "";
            for line in text.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e;
                } else if let Some(d) = line.strip_prefix("data: ") {
                    if let Ok(v) = serde_json::from_str::<Value>(d) {
                        if pred(event, &v) {
                            return true;
                        }
                    }
                }
            }
            buf.clear();
        }
    })
}

#[test]
fn admin_in_the_browser_needs_a_session_and_its_csrf_token() {
    let s = web_setup(&[]);
    let env = [("FTS_PASSWORD", PW)];
    let big = s.local("big.bin");
    random_file(&big, 48 << 20, 7);
    let mut up = Bg::start(
        &s,
        &[
            "--name",
            "bob",
            "put",
            "--bwlimit",
            "4M",
            big.to_str().unwrap(),
            &s.url(""),
        ],
        &env,
        false,
    );
    let id = loop {
        let st = get(&s, "/api/stats", &[]).json();
        let row = st["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "bob" && c["state"] == "uploading")
            .cloned();
        if let Some(r) = row {
            break r["id"].as_u64().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let warn = serde_json::json!({ "id": id, "text": "web warning 1" });

    // No session: refused, and logged as a refused admin action.
    let r = post_json(&s, "/api/admin/warn", &warn, &[]);
    assert_eq!(r.status, 401);
    let r = get(&s, "/api/admin/session", &[]).json();
    assert_eq!(
        (r["admin"].as_bool(), r["admin_enabled"].as_bool()),
        (Some(false), Some(true))
    );
    // A wrong admin password: refused, counted.
    let r = post_json(
        &s,
        "/api/admin/login",
        &serde_json::json!({ "password": "guess" }),
        &[],
    );
    assert_eq!(r.status, 401);
    assert!(r.header("set-cookie").is_none());
    s.server.wait_event("failed admin login", |e| {
        e["event"] == "auth" && e["admin"] == true && e["ok"] == false
    });
    // A session cookie alone is not enough: the CSRF token must come too,
    // and a request from another origin is refused outright.
    let (cookie, csrf) = admin_login(&s);
    let r = post_json(&s, "/api/admin/warn", &warn, &[("Cookie", &cookie)]);
    assert_eq!(r.status, 403);
    let r = post_json(
        &s,
        "/api/admin/warn",
        &warn,
        &[("Cookie", &cookie), ("X-CSRF-Token", "0000")],
    );
    assert_eq!(r.status, 403);
    let r = post_json(
        &s,
        "/api/admin/kick",
        &serde_json::json!({ "id": id }),
        &[
            ("Cookie", &cookie),
            ("X-CSRF-Token", &csrf),
            ("Origin", "https://evil.example"),
        ],
    );
    assert_eq!(r.status, 403);
    s.server.wait_event("refused admin action", |e| {
        e["event"] == "admin"
            && e["ok"] == false
            && e["detail"].as_str().is_some_and(|d| d.contains("CSRF"))
    });
    assert_eq!(up.child.try_wait().unwrap(), None, "client was hurt");
    // The session survives a reload (the page asks for its token again).
    let r = get(&s, "/api/admin/session", &[("Cookie", &cookie)]);
    assert_eq!(r.json()["csrf"], csrf.as_str());

    // With both: warn reaches the client mid-put.
    let ok = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
    let r = post_json(&s, "/api/admin/warn", &warn, &ok);
    assert_eq!((r.status, r.json()["clients"].as_u64()), (200, Some(1)));
    let deadline = Instant::now() + WAIT;
    while !up.stderr().contains("web warning 1") {
        assert!(
            Instant::now() < deadline,
            "warning not shown: {}",
            up.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Chat: a client's message reaches the admin's event stream; the
    // admin's answer is kept for the client.
    let said = s.client.run_env(
        &[
            "--name",
            "carol",
            "chat",
            "-m",
            "hello from carol",
            &s.url(""),
        ],
        &env,
    );
    said.ok();
    assert!(
        sse_until(&s, Some(&cookie), |ev, v| ev == "chat"
            && v["text"] == "hello from carol"
            && v["from"] == "carol"),
        "waiting message not in the admin's stream"
    );
    let r = post_json(
        &s,
        "/api/admin/chat",
        &serde_json::json!({ "to": "carol", "text": "hi carol" }),
        &ok,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["stored"], true);
    let out = s
        .client
        .run_env(&["--name", "carol", "ls", &s.url("")], &env);
    assert!(out.stderr.contains("1 unread message"), "{}", out.stderr);
    // Without a session the stream carries stats only.
    let mut kinds = Vec::new();
    sse_until(&s, None, |ev, _| {
        kinds.push(ev.to_string());
        kinds.len() >= 2
    });
    assert!(kinds.iter().all(|k| k == "stats"), "{kinds:?}");

    // Kick: the client stops at once with exit code 10 and the reason.
    let r = post_json(
        &s,
        "/api/admin/kick",
        &serde_json::json!({ "id": id, "reason": "web says bye" }),
        &ok,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.wait(Duration::from_secs(5)), 10);
    assert!(up.stderr().contains("web says bye"), "{}", up.stderr());
    let ev = s.server.wait_event("kick", |e| {
        e["event"] == "admin" && e["action"] == "kick" && e["ok"] == true
    });
    assert_eq!(ev["target"], id);
    // Kicking someone gone is a clean 404.
    let r = post_json(&s, "/api/admin/kick", &serde_json::json!({ "id": id }), &ok);
    assert_eq!(r.status, 404);

    // Logged out: the cookie is dead.
    let r = post_json(&s, "/api/admin/logout", &serde_json::json!({}), &ok);
    assert_eq!(r.status, 200);
    let r = get(&s, "/api/admin/session", &[("Cookie", &cookie)]).json();
    assert_eq!(r["admin"], false);
    assert!(r.get("csrf").is_none());
    let r = post_json(&s, "/api/admin/warn", &warn, &ok);
    assert_eq!(r.status, 401);
}

#[test]
fn admin_login_is_refused_when_the_server_has_no_admin_password() {
    let s = Setup::new(&[]);
    let r = https(
        &s,
        "POST",
        "/api/admin/login",
        &[("Content-Type", "application/json")],
        br#"{"password":"x"}"#,
    );
    assert_eq!(r.status, 403);
    assert!(r.text().contains("disabled"), "{}", r.text());
}

#[test]
fn one_port_serves_an_upload_while_twenty_browsers_poll() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let s = Arc::new(web_setup(&[]));
    let env = [("FTS_PASSWORD", PW)];
    let big = s.local("load.bin");
    random_file(&big, 64 << 20, 8);
    let stop = Arc::new(AtomicBool::new(false));
    let saw_upload = Arc::new(AtomicU64::new(0));
    let pollers: Vec<_> = (0..20)
        .map(|i| {
            let (s, stop, saw) = (s.clone(), stop.clone(), saw_upload.clone());
            std::thread::spawn(move || {
                let mut polls = 0u64;
                // Half of them hold a live event stream as the page does
                // and read a few updates; all poll like a dashboard.
                if i % 2 == 0 {
                    let mut n = 0;
                    assert!(sse_until(&s, None, |ev, _| {
                        n += (ev == "stats") as u32;
                        n >= 2
                    }));
                }
                while !stop.load(Ordering::Relaxed) {
                    let path = ["/api/stats", "/", "/metrics", "/api/history"][polls as usize % 4];
                    let r = get(&s, path, &[]);
                    assert_eq!(r.status, 200, "poller {i} {path}: {}", r.text());
                    if path == "/api/stats"
                        && r.json()["clients"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|c| c["state"] == "uploading")
                    {
                        saw.fetch_add(1, Ordering::Relaxed);
                    }
                    polls += 1;
                }
                polls
            })
        })
        .collect();
    let started = Instant::now();
    let out = s.client.run_env(
        &[
            "--json",
            "put",
            "--bwlimit",
            "16M",
            big.to_str().unwrap(),
            &s.url(""),
        ],
        &env,
    );
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    out.ok();
    let polls: Vec<u64> = pollers.into_iter().map(|p| p.join().unwrap()).collect();
    assert_eq!(hash(&s.root().join("load.bin")), hash(&big));
    assert!(polls.iter().all(|&n| n > 0), "a poller starved: {polls:?}");
    assert!(
        saw_upload.load(Ordering::Relaxed) > 0,
        "no poll saw the upload"
    );
    eprintln!(
        "64 MiB put at --bwlimit 16M took {took:?} under {} polls from 20 pollers",
        polls.iter().sum::<u64>()
    );
}

/// Opens a TLS connection for HTTP/1.1 and sends `bytes` (not a whole
/// request), returning the connection.
async fn partial_request(s: &Setup, bytes: &[u8]) -> Tls {
    use tokio::io::AsyncWriteExt;
    let mut t = tls_with_alpn(s, b"http/1.1").await;
    t.write_all(bytes).await.unwrap();
    t.flush().await.unwrap();
    t
}

/// How long until the server closes `t` (reads EOF or an error), at most
/// `limit`.
async fn closed_within(t: &mut Tls, limit: Duration) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let start = tokio::time::Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(start + limit, t.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[test]
fn slow_and_oversized_requests_are_cut_without_blocking_others() {
    let s = web_setup(&["--http-timeout", "2"]);
    let env = [("FTS_PASSWORD", PW)];
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Slowloris: 20 connections that never finish their headers.
        let mut slow = Vec::new();
        for _ in 0..20 {
            slow.push(partial_request(&s, b"GET /api/stats HTTP/1.1\r\nHost: x\r\nX-a: ").await);
        }
        // Others are served meanwhile, over HTTPS and the fts protocol.
        let t0 = Instant::now();
        let s2 = &s;
        let r = tokio::task::block_in_place(|| get(s2, "/api/stats", &[]));
        assert_eq!(r.status, 200);
        tokio::task::block_in_place(|| {
            s2.client.run_env(&["ls", &s2.url("")], &env).ok();
        });
        assert!(t0.elapsed() < Duration::from_secs(2), "others were held up");
        // And the slow ones are cut after --http-timeout.
        for t in &mut slow {
            let took = closed_within(t, Duration::from_secs(6))
                .await
                .expect("a slow request was never cut");
            assert!(took < Duration::from_secs(6));
        }
        // A silent keep-alive connection is closed the same way.
        let mut idle = partial_request(&s, b"").await;
        assert!(closed_within(&mut idle, Duration::from_secs(6))
            .await
            .is_some());

        // An oversized head is refused, not buffered.
        let huge = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-big: {}\r\n\r\n",
            "a".repeat(200 * 1024)
        );
        let mut t = tls_with_alpn(&s, b"http/1.1").await;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = t.write_all(huge.as_bytes()).await;
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), t.read_to_end(&mut raw)).await;
        let r = parse_response(&raw);
        assert!(
            r.status == 431 || raw.is_empty(),
            "oversized head answered {}",
            r.status
        );
        // An oversized JSON body is refused too.
        let body = format!("{{\"password\":\"{}\"}}", "x".repeat(100 * 1024));
        let r = tokio::task::block_in_place(|| {
            https(
                s2,
                "POST",
                "/api/admin/login",
                &[
                    ("Authorization", &basic(&format!("u:{PW}"))),
                    ("Content-Type", "application/json"),
                ],
                body.as_bytes(),
            )
        });
        assert_eq!(r.status, 413);

        // One address cannot hold every HTTP slot: past its share, new
        // connections are closed at once, and they come back once the
        // hogs are gone.
        let mut hogs = Vec::new();
        for _ in 0..40 {
            hogs.push(partial_request(&s, b"").await);
        }
        let mut refused = 0;
        for t in &mut hogs[32..] {
            if closed_within(t, Duration::from_millis(500)).await.is_some() {
                refused += 1;
            }
        }
        assert_eq!(refused, 8, "per-address cap not applied");
        drop(hogs);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = tokio::task::block_in_place(|| get(s2, "/api/stats", &[]));
        assert_eq!(r.status, 200);
    });
    // The cut requests are in the log.
    s.server.wait_event("timeout logged", |e| {
        e["event"] == "rejected"
            && e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("timeout") || r.contains("timed out"))
    });
}

/// The `href`s of a page's links, in order.
fn hrefs(page: &str) -> Vec<String> {
    page.split("<a href=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect()
}

#[test]
fn directory_index_without_javascript() {
    let s = web_setup(&[]);
    let root = s.root().to_path_buf();
    root_file(&s, "dir/a <b>&\"c\".bin", 1234, 1);
    root_file(&s, "dir/sub dir/deep.txt", 7, 2);
    root_file(&s, "dir/ü#?%.bin", 3, 3);
    root_file(&s, "dir/javascript:alert(1)", 1, 4);
    root_file(&s, "top.bin", 10, 5);
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::os::unix::fs::symlink("../top.bin", root.join("dir/inside")).unwrap();
    let outside = s.tmp.path().join("outside.txt");
    std::fs::write(&outside, b"secret").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("dir/outside")).unwrap();
    filetime::set_file_mtime(
        root.join("dir/a <b>&\"c\".bin"),
        filetime::FileTime::from_unix_time(1_700_000_000, 0),
    )
    .unwrap();

    // The root, and the way there.
    let r = get(&s, "/files", &[]);
    assert_eq!(
        (r.status, r.header("location").as_deref()),
        (301, Some("/files/"))
    );
    let r = get(&s, "/files/", &[]);
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    let page = r.text();
    assert!(page.contains("<title>Index of /</title>"), "{page}");
    // Directories first, then files; no way up from the root; the
    // dashboard's live view linked.
    assert_eq!(hrefs(&page), ["/#files:", "dir/", "empty/", "top.bin"]);
    assert!(page.contains("<td class=\"size\">10</td>"), "{page}");
    // Nothing the CSP would block.
    assert!(
        !page.contains("<script") && !page.contains("style="),
        "{page}"
    );
    assert!(r
        .header("content-security-policy")
        .unwrap()
        .contains("script-src 'self'"));

    // A subdirectory: escaped names, encoded links, sizes, dates, symlinks
    // shown as such.
    let page = get(&s, "/files/dir/", &[]).text();
    assert!(page.contains("<title>Index of /dir/</title>"), "{page}");
    assert_eq!(
        hrefs(&page),
        [
            "/#files:dir",
            "../",
            "sub%20dir/",
            "a%20%3Cb%3E%26%22c%22.bin",
            "inside",
            "javascript%3Aalert%281%29",
            "outside",
            "%C3%BC%23%3F%25.bin",
        ]
    );
    assert!(
        page.contains(
            ">a &lt;b&gt;&amp;&quot;c&quot;.bin</a></td><td class=\"size\">1234</td><td>2023-11-14T22:13:20Z</td>"
        ),
        "{page}"
    );
    assert!(!page.contains("<b>"), "{page}");
    assert!(page.contains(">inside</a> → ../top.bin<"), "{page}");
    assert!(!page.contains(">secret<"), "{page}");
    // Every link leads where it says (relative to the page), the outside
    // one nowhere.
    assert_eq!(
        get(&s, "/files/dir/a%20%3Cb%3E%26%22c%22.bin", &[])
            .body
            .len(),
        1234
    );
    assert_eq!(get(&s, "/files/dir/%C3%BC%23%3F%25.bin", &[]).body.len(), 3);
    assert_eq!(get(&s, "/files/dir/inside", &[]).body.len(), 10);
    assert_eq!(get(&s, "/files/dir/outside", &[]).status, 403);
    let page = get(&s, "/files/dir/sub%20dir/", &[]).text();
    assert_eq!(hrefs(&page), ["/#files:dir%2Fsub%20dir", "../", "deep.txt"]);
    assert!(get(&s, "/files/empty/", &[]).text().contains("(empty)"));
    assert_eq!(get(&s, "/files/nope/", &[]).status, 404);
    assert_eq!(get(&s, "/files/../", &[]).status, 403);

    // The same password as downloads.
    let (code, _, body) = https_get(&s, "/files/dir/", None);
    assert_eq!(code, 401);
    assert!(!body.contains("sub dir"), "{body}");
    assert_eq!(https_get(&s, "/files/", Some("u:wrong")).0, 401);
    let r = https(
        &s,
        "HEAD",
        "/files/dir/",
        &[("Authorization", &basic(&format!("u:{PW}")))],
        b"",
    );
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());

    // wget -r fetches the whole share through the index pages.
    let have_wget = std::process::Command::new("wget")
        .arg("--version")
        .output()
        .is_ok();
    if !have_wget {
        assert!(
            std::env::var_os("CI").is_none(),
            "wget is needed for this test under CI"
        );
        eprintln!("wget not installed: skipping the wget -r part");
        return;
    }
    std::fs::remove_file(root.join("dir/outside")).unwrap();
    let into = s.tmp.path().join("wget");
    std::fs::create_dir_all(&into).unwrap();
    let o = std::process::Command::new("wget")
        .args([
            "-r",
            "-np",
            "-nH",
            "--no-check-certificate",
            "-q",
            "--user",
            "u",
            "--password",
            PW,
        ])
        .arg(format!("https://127.0.0.1:{}/files/", s.server.port))
        .current_dir(&into)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "wget: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let got = tree(&into.join("files"));
    let got: Vec<_> = got
        .into_iter()
        .filter(|(p, _)| !(p == "index.html" || p.ends_with("/index.html")))
        .collect();
    assert_eq!(got, tree(&root));
}
