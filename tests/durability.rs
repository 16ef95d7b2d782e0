//! Durability: an upload is made durable (one pass per batch, not one
//! fsync per file) before the server acknowledges it, on the fts protocol
//! and the web alike; `fts get` and a sync pull make their files durable
//! before reporting success; `--no-fsync` turns each side off. The server
//! counts its passes in the stats totals, the client in its report.

mod common;

use common::*;
use serde_json::Value;

fn totals(s: &Setup) -> Value {
    let out = s.run(&["--json", "stats", &s.url("")]);
    out.ok();
    out.json()["totals"].clone()
}

fn counts(t: &Value) -> (u64, u64) {
    (
        t["fsync_passes"].as_u64().unwrap(),
        t["files_fsynced"].as_u64().unwrap(),
    )
}

/// `n` small files below `dir`.
fn small_tree(dir: &std::path::Path, n: usize) {
    for i in 0..n {
        let p = dir.join(format!("d{}", i % 10)).join(format!("f{i}"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("small file {i}\n")).unwrap();
    }
}

#[test]
fn a_put_is_durable_before_it_is_acknowledged_and_small_files_share_passes() {
    let s = Setup::new(&[]);
    assert_eq!(counts(&totals(&s)), (0, 0));

    // The counter moves before the acknowledgement goes out: as soon as
    // `put` has returned, the file is counted, with no waiting. A batch
    // takes two passes: the data before the rename, the name after it.
    let one = s.local("one.bin");
    random_file(&one, 100_000, 1);
    s.run(&["put", one.to_str().unwrap(), &s.url("")]).ok();
    assert_eq!(counts(&totals(&s)), (2, 1));

    // 2,000 small files in one pipelined run: every one covered before
    // its acknowledgement, in far fewer passes than files.
    let src = s.local("tree");
    small_tree(&src, 2000);
    let out = s.run(&["--json", "put", "-r", src.to_str().unwrap(), &s.url("")]);
    out.ok();
    assert_eq!(out.json()["files_transferred"], 2000);
    let (passes, files) = counts(&totals(&s));
    assert_eq!(files, 2001);
    assert!(
        passes - 2 <= 200,
        "{} passes for 2000 small files: batching does not work",
        passes - 2
    );
    assert_eq!(tree(&s.root().join("tree")), tree(&src));

    // A web upload is acknowledged the same way.
    let r = https(&s, "PUT", "/files/web.txt", &[], b"from a browser");
    assert!(r.status < 300, "{}", r.text());
    assert_eq!(counts(&totals(&s)), (passes + 2, 2002));
}

/// Batches of a long run are made durable while the next one arrives;
/// failures in between keep their place: each reply still answers its own
/// request, the failed files are reported by name, all others stored.
#[test]
fn failures_between_overlapping_batches_keep_their_place() {
    let s = Setup::new(&[]);
    let src = s.local("tree");
    small_tree(&src, 1600);
    // On the server, three of the targets are directories (with content).
    let bad = ["d3/f13", "d7/f737", "d1/f1501"];
    for b in bad {
        std::fs::create_dir_all(s.root().join("tree").join(b).join("keep")).unwrap();
    }
    let out = s.run(&["--json", "put", "-r", src.to_str().unwrap(), &s.url("")]);
    out.code(9);
    let j = out.json();
    assert_eq!(j["files_transferred"], 1597, "{j}");
    let failed: Vec<String> = j["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors list: {j}"))
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    for b in bad {
        assert!(
            failed.iter().any(|f| f.ends_with(b)),
            "{b} not reported: {failed:?}"
        );
    }
    assert_eq!(failed.len(), 3, "{failed:?}");
    for i in 0..1600 {
        let rel = format!("d{}/f{i}", i % 10);
        let there = s.root().join("tree").join(&rel);
        if bad.contains(&rel.as_str()) {
            assert!(there.join("keep").is_dir(), "{rel} was replaced");
        } else {
            assert_eq!(
                std::fs::read(&there).unwrap(),
                std::fs::read(src.join(&rel)).unwrap(),
                "{rel}"
            );
        }
    }
    assert_eq!(counts(&totals(&s)).1, 1597);
}

#[test]
fn serve_no_fsync_acknowledges_without_a_pass() {
    let s = Setup::new(&["--no-fsync"]);
    let src = s.local("tree");
    small_tree(&src, 50);
    s.run(&["put", "-r", src.to_str().unwrap(), &s.url("")])
        .ok();
    let r = https(&s, "PUT", "/files/web.txt", &[], b"from a browser");
    assert!(r.status < 300, "{}", r.text());
    let t = totals(&s);
    assert_eq!(t["files_received"], 51);
    assert_eq!(counts(&t), (0, 0));
    assert_eq!(tree(&s.root().join("tree")), tree(&src));
}

#[test]
fn get_and_sync_pull_make_downloads_durable_unless_no_fsync() {
    let s = Setup::new(&[]);
    small_tree(&s.root().join("tree"), 300);
    let big = s.root().join("tree/big.bin");
    random_file(&big, 3 << 20, 2);

    let down = s.local("down");
    std::fs::create_dir_all(&down).unwrap();
    let out = s.run(&[
        "--json",
        "get",
        "-r",
        &s.url("tree"),
        down.to_str().unwrap(),
    ]);
    out.ok();
    let j = out.json();
    assert_eq!(j["files_transferred"], 301);
    assert_eq!(j["files_fsynced"], 301);
    // One local filesystem, one batch: two passes for the whole run (the
    // data before the renames, the names after them).
    assert_eq!(j["fsync_passes"], 2);
    assert_eq!(tree(&down.join("tree")), tree(&s.root().join("tree")));

    let fast = s.local("fast");
    let out = s.run(&[
        "--json",
        "get",
        "--no-fsync",
        &s.url("tree/big.bin"),
        fast.to_str().unwrap(),
    ]);
    out.ok();
    let j = out.json();
    assert_eq!(j["files_transferred"], 1);
    assert_eq!(
        (j["files_fsynced"].clone(), j["fsync_passes"].clone()),
        (0.into(), 0.into())
    );
    assert_eq!(hash(&fast), hash(&big));

    let pulled = s.local("pulled");
    let out = s.run(&["--json", "sync", &s.url("tree"), pulled.to_str().unwrap()]);
    out.ok();
    let j = out.json();
    assert_eq!(j["files_transferred"], 301);
    assert_eq!(j["files_fsynced"], 301);
    // Two passes per wave of directories the sync fetched files in (a
    // sync walks the tree a few dozen directories at a time): a handful
    // for the tree, not one per file.
    let passes = j["fsync_passes"].as_u64().unwrap();
    assert!(passes >= 2 && passes % 2 == 0 && passes <= 8, "{j}");

    let pulled2 = s.local("pulled2");
    let out = s.run(&[
        "--json",
        "sync",
        "--no-fsync",
        &s.url("tree"),
        pulled2.to_str().unwrap(),
    ]);
    out.ok();
    assert_eq!(out.json()["files_fsynced"], 0);
    assert_eq!(tree(&pulled2), tree(&s.root().join("tree")));

    // Downloads are the client's business: the server made no pass.
    assert_eq!(counts(&totals(&s)), (0, 0));
}
