//! Bad input: paths that try to leave the root, missing files, garbage and
//! oversized frames on the wire, a forged integrity hash. The server must
//! refuse, log, drop the offender and keep serving everyone else.

mod common;
use common::*;
use fts::model::Meta;
use fts::proto::{FrameReader, Msg, PROTOCOL_VERSION};
use std::io::{Read, Write};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Sets up a share with a secret file next to (outside) it and a symlink
/// inside it pointing out.
fn escape_setup() -> (Setup, std::path::PathBuf) {
    let s = Setup::new(&[]);
    let outside = s.tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"top secret").unwrap();
    std::os::unix::fs::symlink(&outside, s.root().join("escape")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), s.root().join("secretlink")).unwrap();
    std::fs::write(s.root().join("ok"), b"fine").unwrap();
    (s, outside)
}

#[test]
fn paths_that_leave_the_root_are_refused() {
    let (s, outside) = escape_setup();
    let dl = s.local("dl");
    std::fs::create_dir_all(&dl).unwrap();
    let src = s.local("payload");
    std::fs::write(&src, b"evil").unwrap();
    let d = dl.to_str().unwrap();
    for remote in [
        "../outside/secret",
        "a/../../outside/secret",
        "/etc/passwd",
        "escape/secret",
        "secretlink",
        "escape",
    ] {
        let url = s.url(remote);
        let out = s.run(&["--json", "get", "-r", &url, d]);
        out.code(5);
        assert_eq!(out.err_json()["error"]["kind"], "permission", "{remote}");
        s.run(&["ls", &url]).code(5);
        s.run(&["put", src.to_str().unwrap(), &url]).code(5);
    }
    s.run(&["put", src.to_str().unwrap(), &s.url("escape/new")])
        .code(5);
    s.run(&["put", src.to_str().unwrap(), &s.url("../new")])
        .code(5);
    // Nothing was read out or written outside.
    assert_eq!(std::fs::read_dir(&dl).unwrap().count(), 0);
    let names: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["secret"]);
    assert_eq!(
        std::fs::read(outside.join("secret")).unwrap(),
        b"top secret"
    );
    assert!(!s.tmp.path().join("new").exists());
    // A recursive get of the root skips the links instead of following them.
    let all = s.local("all");
    let out = s.run(&["get", "-r", &s.url(""), all.to_str().unwrap()]);
    out.ok();
    assert!(all.join("ok").exists());
    assert!(!all.join("escape").exists() && !all.join("secretlink").exists());
    // The server is still serving.
    s.run(&["ls", &s.url("")]).ok();
}

#[test]
fn missing_files_are_exit_3() {
    let s = Setup::new(&[]);
    let out = s.run(&[
        "--json",
        "put",
        s.local("no-such-file").to_str().unwrap(),
        &s.url(""),
    ]);
    out.code(3);
    assert_eq!(out.err_json()["error"]["kind"], "not_found");
    s.run(&["get", &s.url("nothing"), s.local("x").to_str().unwrap()])
        .code(3);
    assert!(!s.local("x").exists());
    s.run(&["ls", &s.url("nothing")]).code(3);
    // Into a directory that does not exist on the server.
    std::fs::write(s.local("f"), b"f").unwrap();
    s.run(&["put", s.local("f").to_str().unwrap(), &s.url("nodir/")])
        .code(3);
    s.run(&["put", s.local("f").to_str().unwrap(), &s.url("nodir/f")])
        .code(3);
    // One of two sources missing: partial, the other lands.
    std::fs::write(s.local("g"), b"g").unwrap();
    let out = s.run(&[
        "--json",
        "put",
        s.local("g").to_str().unwrap(),
        s.local("gone").to_str().unwrap(),
        &s.url(""),
    ]);
    out.code(9);
    assert_eq!(out.json()["files_transferred"], 1);
    assert_eq!(std::fs::read(s.root().join("g")).unwrap(), b"g");
}

#[test]
fn usage_errors_are_exit_2() {
    let c = Client::new();
    c.run(&["put", "only-one-arg"]).code(2);
    c.run(&["put", "a", "b"]).code(2); // target not remote
    c.run(&["get", "host:x", "fts://h:1/y"]).code(2); // target not local
    c.run(&["ls", "fts://h:0/"]).code(2);
    c.run(&["frobnicate"]).code(2);
    c.run(&["--help"]).ok();
}

#[test]
fn connection_refused_is_exit_6() {
    let c = Client::new();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let out = c.run(&["--json", "ls", &format!("fts://127.0.0.1:{port}/")]);
    out.code(6);
    assert_eq!(out.err_json()["error"]["kind"], "connect");
}

#[test]
fn garbage_bytes_are_dropped_and_others_still_served() {
    let s = Setup::new(&[]);
    std::fs::write(s.root().join("f"), b"x").unwrap();
    let mut sock = std::net::TcpStream::connect(&s.server.addr).unwrap();
    // (Bytes that start like an HTTP request get a plain answer instead:
    // tests/serve.rs.)
    sock.write_all(b"\x00\xff\xfe garbage GET / HTTP/1.1\r\n\r\n\x16\x03\x01\xff\xff")
        .unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    let _ = sock.read_to_end(&mut buf); // the server closes on us
    s.server.wait_event("rejected", |v| {
        v["event"] == "rejected"
            && v["reason"]
                .as_str()
                .unwrap_or("")
                .contains("TLS handshake failed")
    });
    s.run(&["ls", &s.url("")]).ok();
}

#[test]
fn oversized_length_prefix_drops_only_that_connection() {
    let s = Setup::new(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // An idle, well-behaved session stays up meanwhile.
        let ((mut gr, mut gw), welcome) = raw_session(&s, PROTOCOL_VERSION).await;
        assert!(matches!(welcome, Msg::Welcome { .. }));

        let mut bad = raw_tls(&s).await;
        bad.write_all(&[2, 0xff, 0xff, 0xff, 0xff]).await.unwrap();
        bad.flush().await.unwrap();
        let mut r = FrameReader::new(bad, Duration::from_secs(10));
        assert!(
            r.read_opt().await.map(|o| o.is_none()).unwrap_or(true),
            "server kept talking"
        );

        gw.msg(&Msg::Stat { path: "".into() }).await.unwrap();
        gw.flush().await.unwrap();
        assert!(matches!(
            gr.read_msg().await.unwrap(),
            Msg::StatReply { entry: Some(_) }
        ));
    });
    // It never said hello, so it is logged as rejected.
    s.server.wait_event("rejected with the reason", |v| {
        v["event"] == "rejected"
            && v["category"] == "error"
            && v["reason"]
                .as_str()
                .unwrap_or("")
                .contains("exceeds the limit")
    });
    s.run(&["ls", &s.url("")]).ok();

    // A wrong protocol version is refused with a clear error.
    rt.block_on(async {
        match raw_session(&s, 999).await.1 {
            Msg::Error { message, .. } => {
                assert!(message.contains("protocol version"), "{message}")
            }
            m => panic!("{m:?}"),
        }
    });
}

#[test]
fn forged_hash_is_an_integrity_error_and_target_untouched() {
    let s = Setup::new(&[]);
    std::fs::write(s.root().join("target"), b"original").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ((mut r, mut w), _) = raw_session(&s, PROTOCOL_VERSION).await;
        let meta = Meta {
            size: 8,
            mtime: 0,
            mtime_ns: 0,
            mode: 0o644,
        };
        w.msg(&Msg::Put {
            id: 1,
            path: "target".into(),
            meta,
            resume: None,
            delta_base: None,
        })
        .await
        .unwrap();
        w.data(b"tampered").await.unwrap();
        w.msg(&Msg::PutEnd {
            id: 1,
            hash: blake3::hash(b"something else").to_hex().to_string(),
        })
        .await
        .unwrap();
        w.flush().await.unwrap();
        match r.read_msg().await.unwrap() {
            Msg::Error {
                id: Some(1), kind, ..
            } => assert_eq!(kind, fts::ErrorKind::Integrity),
            m => panic!("{m:?}"),
        }
        // More data than announced is a protocol violation.
        w.msg(&Msg::Put {
            id: 2,
            path: "target".into(),
            meta: Meta { size: 2, ..meta },
            resume: None,
            delta_base: None,
        })
        .await
        .unwrap();
        w.data(b"too long").await.unwrap();
        w.flush().await.unwrap();
        assert!(r.read_opt().await.map(|o| o.is_none()).unwrap_or(true));
    });
    assert_eq!(std::fs::read(s.root().join("target")).unwrap(), b"original");
    assert_no_temp_files(s.root());
    s.run(&["ls", &s.url("")]).ok();
}

#[test]
fn ipv6_loopback_works() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("six"), b"6").unwrap();
    let server = Server::start_on(tmp.path(), &tmp.path().join(".home"), "[::1]:0", &[]);
    let c = Client::new();
    let v = c
        .run(&["--json", "ls", &format!("fts://[::1]:{}/six", server.port)])
        .json();
    assert_eq!(v[0]["path"], "six");
}
