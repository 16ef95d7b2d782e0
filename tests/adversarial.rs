//! Hostile peers and hostile share contents: connection floods that never
//! finish a handshake, frames dribbled a byte at a time, password guessing
//! in parallel, symlinks swapped while the server works, and names with
//! newlines, invalid UTF-8 or absurd lengths. (Garbage, oversized lengths,
//! wrong versions and `..` paths are in tests/hostile.rs.)

mod common;
use common::*;
use fts::proto::{FrameReader, FrameWriter, Msg, ALPN_FTS, PROTOCOL_VERSION};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Waits (bounded) for the peer to close `tcp`; true if it did.
async fn closed_by_server(tcp: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 64];
    matches!(
        tokio::time::timeout(within, tcp.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[test]
fn a_flood_of_silent_connections_from_one_address_does_not_lock_others_out() {
    let s = Setup::new(&[]);
    std::fs::write(s.root().join("f"), b"still here").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut flood = rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..300 {
            v.push(tcp_from(&s, Some("127.0.0.2")).await);
        }
        v
    });
    // The server holds at most 256 handshakes in progress per address;
    // the rest of that address's connections are closed at once.
    let cut = rt.block_on(async {
        let mut n = 0;
        for t in flood.iter_mut().skip(256) {
            if closed_by_server(t, Duration::from_secs(5)).await {
                n += 1;
            }
        }
        n
    });
    assert_eq!(
        cut, 44,
        "connections beyond the per-address cap were left open"
    );
    let still_open = rt.block_on(async {
        let mut n = 0;
        for t in flood.iter_mut().take(256) {
            if !closed_by_server(t, Duration::from_millis(5)).await {
                n += 1;
            }
        }
        n
    });
    assert_eq!(still_open, 256);
    // Meanwhile everyone else is served: the CLI, and a TLS session from a
    // third address.
    let missing = s.local("nodir/");
    let out = s.run(&["--json", "get", &s.url("f"), missing.to_str().unwrap()]);
    out.code(3);
    assert!(out.stderr.contains("no such directory"), "{}", out.stderr);
    let out = s.run(&["--json", "get", &s.url("f"), s.local("f").to_str().unwrap()]);
    out.ok();
    assert_eq!(std::fs::read(s.local("f")).unwrap(), b"still here");
    rt.block_on(async {
        let (_, first) = hello_from(&s, "127.0.0.3").await;
        assert!(matches!(first, Msg::Welcome { .. }), "{first:?}");
    });
    s.server.wait_event("refusal logged", |v| {
        v["event"] == "rejected"
            && v["addr"].as_str().unwrap_or("").starts_with("127.0.0.2:")
            && v["reason"]
                .as_str()
                .unwrap_or("")
                .starts_with("too many TLS handshakes in progress from this address")
    });
    // Once the flood is gone, the address is welcome again.
    drop(flood);
    rt.block_on(async {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut t = tcp_from(&s, Some("127.0.0.2")).await;
            if !closed_by_server(&mut t, Duration::from_millis(300)).await {
                break;
            }
            assert!(Instant::now() < deadline, "127.0.0.2 still refused");
        }
    });
}

/// A protocol session from `local` that has said hello; its first reply.
async fn hello_from(s: &Setup, local: &str) -> (Halves, Msg) {
    let tls = tls_from(s, ALPN_FTS, tcp_from(s, Some(local)).await).await;
    hello_over(tls, PROTOCOL_VERSION).await
}

#[test]
fn sessions_idling_at_the_login_cannot_take_every_slot() {
    let pw_dir = tempfile::tempdir().unwrap();
    let pw = secret_file(pw_dir.path(), "pw", "sesame");
    let s = Setup::new(&["--password-file", pw.to_str().unwrap()]);
    block_on(async {
        let mut idle = Vec::new();
        for _ in 0..16 {
            let (h, first) = hello_from(&s, "127.0.0.4").await;
            assert!(matches!(first, Msg::Welcome { .. }), "{first:?}");
            idle.push(h);
        }
        // The 17th from that address is turned away with a reason.
        match hello_from(&s, "127.0.0.4").await.1 {
            Msg::Error { message, .. } => {
                assert!(message.contains("waiting to log in"), "{message}")
            }
            m => panic!("{m:?}"),
        }
        // Others log in as usual.
        let out = s
            .client
            .run_env(&["--json", "ls", &s.url("")], &[("FTS_PASSWORD", "sesame")]);
        out.ok();
        // Logging in gives the slot back.
        let (r, w) = &mut idle[0];
        w.msg(&Msg::Auth {
            password: Some("sesame".into()),
            admin_password: None,
        })
        .await
        .unwrap();
        w.flush().await.unwrap();
        assert!(matches!(r.read_msg().await.unwrap(), Msg::AuthOk { .. }));
        let (_, first) = hello_from(&s, "127.0.0.4").await;
        assert!(matches!(first, Msg::Welcome { .. }), "{first:?}");
    });
}

/// Encodes `msgs` as the bytes a client would send.
fn encoded(msgs: &[Msg]) -> Vec<u8> {
    block_on(async {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = FrameWriter::new(a, WAIT);
        for m in msgs {
            w.msg(m).await.unwrap();
        }
        w.flush().await.unwrap();
        w.shutdown().await.unwrap();
        drop(w);
        let mut out = Vec::new();
        b.read_to_end(&mut out).await.unwrap();
        out
    })
}

#[test]
fn frames_dribbled_one_byte_at_a_time_are_still_understood() {
    let s = Setup::new(&[]);
    std::fs::write(s.root().join("f"), b"abc").unwrap();
    let bytes = encoded(&[
        Msg::Hello {
            version: PROTOCOL_VERSION,
            client: "dribble".into(),
            name: None,
            timeout_ms: None,
        },
        Msg::Stat { path: "f".into() },
    ]);
    block_on(async {
        let tls = raw_tls(&s).await;
        let (r, mut w) = tokio::io::split(tls);
        let mut r = FrameReader::new(r, WAIT);
        for b in &bytes {
            // One TLS record per byte, with a pause: the worst-case peer.
            w.write_all(std::slice::from_ref(b)).await.unwrap();
            w.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(matches!(r.read_msg().await.unwrap(), Msg::Welcome { .. }));
        match r.read_msg().await.unwrap() {
            Msg::StatReply { entry: Some(e) } => assert_eq!(e.size, 3),
            m => panic!("{m:?}"),
        }
    });
}

#[test]
fn parallel_password_guesses_from_one_address_are_answered_one_by_one() {
    let pw_dir = tempfile::tempdir().unwrap();
    let pw = secret_file(pw_dir.path(), "pw", "correct horse");
    let s = Setup::new(&["--password-file", pw.to_str().unwrap()]);
    let wrong = |c: &Client| {
        c.run_env(&["--json", "ls", &s.url("")], &[("FTS_PASSWORD", "guess")])
            .code(4);
    };
    // Two failures: every further answer to this address waits 500 ms more.
    wrong(&s.client);
    wrong(&s.client);
    let t0 = Instant::now();
    let done: Vec<Duration> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..6)
            .map(|_| {
                sc.spawn(|| {
                    let c = Client::new();
                    wrong(&c);
                    t0.elapsed()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (first, last) = (done.iter().min().unwrap(), done.iter().max().unwrap());
    // Queued 0.5 s apart: six answers span at least 2.5 s, however many
    // connections the guesser opens.
    assert!(
        *last - *first >= Duration::from_millis(2000) && *last >= Duration::from_millis(2900),
        "guesses answered too close together: {done:?}"
    );
    let failures = s
        .server
        .events()
        .iter()
        .filter(|v| v["event"] == "auth" && v["ok"] == false)
        .count();
    assert_eq!(failures, 8, "every guess is logged");
    // Another address is not slowed down by this one's failures.
    block_on(async {
        let tls = tls_from(&s, ALPN_FTS, tcp_from(&s, Some("127.0.0.9")).await).await;
        let (r, w) = tokio::io::split(tls);
        let (mut r, mut w) = (FrameReader::new(r, WAIT), FrameWriter::new(w, WAIT));
        let t = Instant::now();
        for m in [
            Msg::Hello {
                version: PROTOCOL_VERSION,
                client: "other".into(),
                name: None,
                timeout_ms: None,
            },
            Msg::Auth {
                password: Some("correct horse".into()),
                admin_password: None,
            },
        ] {
            w.msg(&m).await.unwrap();
        }
        w.flush().await.unwrap();
        assert!(matches!(r.read_msg().await.unwrap(), Msg::Welcome { .. }));
        assert!(matches!(r.read_msg().await.unwrap(), Msg::AuthOk { .. }));
        assert!(
            t.elapsed() < Duration::from_millis(2500),
            "{:?}",
            t.elapsed()
        );
    });
}

#[test]
fn symlinks_swapped_while_the_server_works_never_leak_or_delete_outside() {
    let admin_dir = tempfile::tempdir().unwrap();
    let admin = secret_file(admin_dir.path(), "admin", "boss");
    let s = Setup::new(&["--admin-password-file", admin.to_str().unwrap()]);
    let outside = s.tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("f"), b"SECRET").unwrap();
    let real = s.root().join("real");
    std::fs::create_dir_all(&real).unwrap();
    std::fs::write(real.join("f"), b"inside").unwrap();

    // `real` keeps switching between the directory and a symlink out of
    // the share: someone with write access inside the share racing the
    // server's path checks. The window between check and open is a few
    // microseconds, so this is a stress run of the property; the race
    // itself is played step by step in root.rs's unit tests.
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicUsize::new(0));
    let flipper = {
        let (stop, swaps, real, outside) =
            (stop.clone(), swaps.clone(), real.clone(), outside.clone());
        std::thread::spawn(move || {
            let (parked, link) = (real.with_file_name("real.d"), real.with_file_name("real.l"));
            while !stop.load(Ordering::Relaxed) {
                std::fs::rename(&real, &parked).unwrap();
                std::os::unix::fs::symlink(&outside, &link).unwrap();
                std::fs::rename(&link, &real).unwrap();
                std::thread::yield_now();
                std::fs::remove_file(&real).unwrap();
                std::fs::rename(&parked, &real).unwrap();
                std::thread::yield_now();
                swaps.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let until = Instant::now() + Duration::from_secs(3);
    let leaked = AtomicUsize::new(0);
    let web_ok = AtomicUsize::new(0);
    let (mut served, mut refused) = (0, 0);
    std::thread::scope(|sc| {
        for _ in 0..3 {
            sc.spawn(|| {
                while Instant::now() < until {
                    let r = https(&s, "GET", "/files/real/f", &[], b"");
                    if r.body.windows(6).any(|w| w == b"SECRET") {
                        leaked.fetch_add(1, Ordering::Relaxed);
                    }
                    if r.status == 200 {
                        web_ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        let dl = s.local("dl");
        std::fs::create_dir_all(&dl).unwrap();
        while Instant::now() < until {
            let _ = std::fs::remove_file(dl.join("f"));
            let out = s.run(&["--json", "get", &s.url("real/f"), dl.to_str().unwrap()]);
            match out.code {
                0 => {
                    if std::fs::read(dl.join("f")).unwrap() != b"inside" {
                        leaked.fetch_add(1, Ordering::Relaxed);
                    }
                    served += 1;
                }
                // Refused (outside) or not found (mid-swap).
                3 | 5 => refused += 1,
                c => panic!("unexpected exit {c}: {}", out.stderr),
            }
            // Removal through the swapping directory: only ever inside.
            let _ = s
                .client
                .run_env(&["rm", &s.url("real/f")], &[("FTS_ADMIN_PASSWORD", "boss")]);
            assert_eq!(
                std::fs::read(outside.join("f")).unwrap(),
                b"SECRET",
                "removed outside"
            );
            let f = s.root().join("real.d/f");
            let _ = std::fs::write(
                if f.parent().unwrap().is_dir() {
                    f
                } else {
                    real.join("f")
                },
                b"inside",
            );
        }
    });
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
    assert_eq!(
        leaked.load(Ordering::Relaxed),
        0,
        "content from outside the root was served"
    );
    assert!(swaps.load(Ordering::Relaxed) > 1000, "the race was not run");
    assert!(served + refused > 10, "{served} served, {refused} refused");
    assert!(
        web_ok.load(Ordering::Relaxed) > 0,
        "no web download got through"
    );
}

#[test]
fn names_with_newlines_bad_utf8_and_extreme_lengths() {
    let s = Setup::new(&[]);
    let src = s.local("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("new\nline.txt"), b"nl").unwrap();
    std::fs::write(src.join("tab\tand space .txt"), b"tab").unwrap();
    std::fs::write(src.join("-rf"), b"dash").unwrap();
    let long = "L".repeat(255);
    std::fs::write(src.join(&long), b"long").unwrap();
    let bad = std::ffi::OsStr::from_bytes(b"bad\xffname");
    std::fs::write(src.join(bad), b"bad").unwrap();

    // Everything representable arrives intact; the name that is not UTF-8
    // is reported as a failed file (exit 9), not skipped in silence.
    let out = s.run(&["--json", "sync", src.to_str().unwrap(), &s.url("t")]);
    out.code(9);
    let errors = out.json()["errors"].as_array().unwrap().clone();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0]["message"].as_str().unwrap().contains("not UTF-8"));
    for n in ["new\nline.txt", "tab\tand space .txt", "-rf", long.as_str()] {
        assert_eq!(
            std::fs::read(s.root().join("t").join(n)).unwrap(),
            std::fs::read(src.join(n)).unwrap(),
            "{n:?}"
        );
    }
    let listed = s.run(&["--json", "ls", &s.url("t")]).json();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"t/new\nline.txt"), "{names:?}");

    // Back again by name, newline and all.
    let back = s.local("back");
    std::fs::create_dir_all(&back).unwrap();
    s.run(&["get", &s.url("t/new\nline.txt"), back.to_str().unwrap()])
        .ok();
    assert_eq!(std::fs::read(back.join("new\nline.txt")).unwrap(), b"nl");

    // One byte over the file system's name limit: a clear error, no debris.
    let out = s.run(&[
        "--json",
        "put",
        src.join("-rf").to_str().unwrap(),
        &s.url(&"N".repeat(256)),
    ]);
    out.code(1);
    assert!(out.err_json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("File name too long"));
    // A path longer than the protocol allows never reaches the server.
    let out = s.run(&[
        "--json",
        "put",
        src.join("-rf").to_str().unwrap(),
        &s.url(&"d/".repeat(3000)),
    ]);
    out.code(2);
    // A share holding a name that is not UTF-8 lists the rest.
    std::fs::write(s.root().join(std::ffi::OsStr::from_bytes(b"srv\xfe")), b"x").unwrap();
    s.run(&["--json", "ls", &s.url("")]).ok();
    assert_no_temp_files(s.root());
}
