//! The web side of the fts port (issue 5, first part): `/api/stats` and
//! `/metrics` over HTTPS on the same port and certificate as the fts
//! protocol, chosen by ALPN, behind the access password when there is one.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;

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
