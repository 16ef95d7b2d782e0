//! Operating a server: `stats`, the live client table, lifetime totals,
//! `admin clients|kick|warn|log`, chat and its unread mailbox, and the
//! bounds on chat input. Transfers that must be caught in flight are slowed
//! down with `--bwlimit`, so timing does not depend on the machine.

mod common;

use common::*;
use fts::proto::{Msg, PROTOCOL_VERSION};
use serde_json::Value;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn admin_setup(extra: &[&str]) -> (Setup, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let adm = secret_file(tmp.path(), "adm", "adm1n pw");
    let mut args = vec!["--admin-password-file", adm.to_str().unwrap()];
    args.extend_from_slice(extra);
    (Setup::new(&args), tmp)
}

const ADMIN: (&str, &str) = ("FTS_ADMIN_PASSWORD", "adm1n pw");

fn stats(s: &Setup) -> Value {
    let out = s.run(&["--json", "stats", &s.url("")]);
    out.ok();
    out.json()
}

/// Polls `stats --json` until `pred` holds; returns that document.
#[track_caller]
fn wait_stats(s: &Setup, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = stats(s);
        if pred(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn client_named<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
}

#[test]
fn stats_shows_live_uploads_and_totals_survive_a_restart() {
    let mut s = Setup::new(&[]);
    let (a, b) = (s.local("a.bin"), s.local("b.bin"));
    random_file(&a, 24 << 20, 1);
    random_file(&b, 32 << 20, 2);
    let mut up1 = slow_put(&s, "uploader-one", "8M", &a);
    let mut up2 = slow_put(&s, "uploader-two", "8M", &b);

    // Both show up at once, uploading their file, part-way, with a rate.
    let v = wait_stats(&s, "both uploads in flight with a rate", |v| {
        ["uploader-one", "uploader-two"].iter().all(|n| {
            client_named(v, n).is_some_and(|c| {
                c["state"] == "uploading"
                    && c["bytes_done"].as_u64().unwrap() > 0
                    && c["bytes_done"].as_u64() < c["bytes_total"].as_u64()
                    && c["rate_bps"].as_u64().unwrap() > 0
            })
        })
    });
    let one = client_named(&v, "uploader-one").unwrap();
    let two = client_named(&v, "uploader-two").unwrap();
    assert_eq!(one["file"], "a.bin");
    assert_eq!(two["file"], "b.bin");
    assert_eq!(one["bytes_total"], 24 << 20);
    assert_eq!(two["bytes_total"], 32 << 20);
    assert_ne!(one["id"], two["id"]);
    assert!(one["addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    // --bwlimit 8M: the rate is in the right region, not the raw speed.
    let rate = one["rate_bps"].as_u64().unwrap();
    assert!(rate < 16 << 20, "rate {rate} ignores --bwlimit");
    assert_eq!(v["server"]["clients_connected"].as_u64().unwrap(), 3);
    assert_eq!(v["server"]["max_clients"], 64);
    assert_eq!(v["server"]["version"], env!("CARGO_PKG_VERSION"));

    assert_eq!(up1.wait(WAIT * 2), 0, "{}", up1.stderr());
    assert_eq!(up2.wait(WAIT * 2), 0, "{}", up2.stderr());
    assert_eq!(hash(&s.root().join("a.bin")), hash(&a));
    let v = wait_stats(&s, "uploaders gone", |v| {
        v["clients"].as_array().unwrap().len() == 1
    });
    let t = &v["totals"];
    assert_eq!(t["bytes_received"], (24 << 20) + (32 << 20));
    assert_eq!(t["files_received"], 2);
    assert_eq!(t["bytes_sent"], 0);
    assert_eq!(t["auth_failures"], 0);
    assert!(t["connections"].as_u64().unwrap() >= 3);
    // The only client left is this stats call itself, idle.
    assert_eq!(v["clients"][0]["state"], "idle");
    assert_eq!(v["clients"][0]["file"], Value::Null);

    // A download counts the other way.
    let back = s.local("back.bin");
    s.run(&["get", &s.url("a.bin"), back.to_str().unwrap()])
        .ok();
    let t = stats(&s)["totals"].clone();
    assert_eq!(t["bytes_sent"], 24 << 20);
    assert_eq!(t["files_sent"], 1);

    // Restart on the same state directory: the totals are still there.
    assert!(s.server.terminate().success());
    let (root, home) = (s.server.root.clone(), s.server.home.clone());
    s.server = Server::start(&root, &home, &[]);
    let after = stats(&s)["totals"].clone();
    for k in [
        "bytes_received",
        "bytes_sent",
        "files_received",
        "files_sent",
    ] {
        assert_eq!(after[k], t[k], "{k} lost over a restart");
    }
    assert!(after["connections"].as_u64() > t["connections"].as_u64());

    // Human output names the same things.
    let out = s.run(&["stats", &s.url("")]);
    out.ok();
    assert!(
        out.stdout.contains("56.00 MiB in 2 files"),
        "{}",
        out.stdout
    );
}

#[test]
fn kick_stops_an_upload_at_once_and_it_resumes_later() {
    let (s, _t) = admin_setup(&[]);
    let big = s.local("big.bin");
    random_file(&big, 256 << 20, 7);
    let url = s.url("");
    let mut up = slow_put(&s, "victim", "32M", &big);
    let v = wait_stats(&s, "the upload under way", |v| {
        client_named(v, "victim")
            .is_some_and(|c| c["state"] == "uploading" && c["bytes_done"].as_u64() > Some(8 << 20))
    });
    let id = client_named(&v, "victim").unwrap()["id"].to_string();

    let t0 = Instant::now();
    s.client
        .run_env(
            &["admin", "kick", &url, &id, "--reason", "maintenance window"],
            &[ADMIN],
        )
        .ok();
    let code = up.wait(Duration::from_secs(2));
    let took = t0.elapsed();
    assert_eq!(code, 10, "kicked client exit code; stderr: {}", up.stderr());
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let err = up.stderr();
    assert!(
        err.contains("disconnected by the server's admin: maintenance window"),
        "{err}"
    );
    // Nothing under the real name; the partial file is kept for a resume.
    assert!(!s.root().join("big.bin").exists());
    assert!(s.root().join(".big.bin.fts-part").exists());
    wait_stats(&s, "the kicked client gone", |v| {
        client_named(v, "victim").is_none()
    });

    let out = s.run(&["--json", "put", big.to_str().unwrap(), &url]);
    out.ok();
    let r = out.json();
    assert!(r["resumed_bytes"].as_u64().unwrap() > 8 << 20, "{r}");
    assert!(r["wire_bytes_sent"].as_u64().unwrap() < 256 << 20);
    assert_eq!(hash(&s.root().join("big.bin")), hash(&big));

    // Kicking a client that is not there is "not found".
    s.client
        .run_env(&["admin", "kick", &url, "9999"], &[ADMIN])
        .code(3);
}

#[test]
fn warn_reaches_a_client_in_the_middle_of_a_put() {
    let (s, _t) = admin_setup(&[]);
    let f = s.local("f.bin");
    random_file(&f, 32 << 20, 3);
    let url = s.url("");
    let mut up = slow_put(&s, "busy", "8M", &f);
    let v = wait_stats(&s, "the upload under way", |v| {
        client_named(v, "busy").is_some_and(|c| c["state"] == "uploading")
    });
    let id = client_named(&v, "busy").unwrap()["id"].to_string();
    let out = s.client.run_env(
        &["--json", "admin", "warn", &url, &id, "disk nearly full"],
        &[ADMIN],
    );
    out.ok();
    assert_eq!(out.json()["warned"], 1);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !up.stderr().contains("disk nearly full") {
        assert!(Instant::now() < deadline, "no warning: {}", up.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        up.child.try_wait().unwrap().is_none(),
        "the warning came only after the transfer"
    );
    assert!(
        up.stderr().contains("WARNING from admin"),
        "{}",
        up.stderr()
    );
    // --all reaches everyone connected (the uploader and the admin itself).
    let out = s.client.run_env(
        &["--json", "admin", "warn", &url, "--all", "to all"],
        &[ADMIN],
    );
    out.ok();
    assert!(out.json()["warned"].as_u64().unwrap() >= 2);
    // The warning does not disturb the transfer.
    assert_eq!(up.wait(WAIT * 2), 0, "{}", up.stderr());
    assert_eq!(hash(&s.root().join("f.bin")), hash(&f));
    // Usage mistakes are caught before connecting.
    s.client
        .run_env(&["admin", "warn", &url, "text only"], &[ADMIN])
        .code(2);
    s.client
        .run_env(&["admin", "warn", &url, "--all", "1", "x"], &[ADMIN])
        .code(2);
}

#[test]
fn chat_between_a_client_and_an_admin_with_unread_messages() {
    let (s, _t) = admin_setup(&[]);
    let url = s.url("");
    let mut admin = Bg::start(
        &s,
        &["--json", "--name", "root", "chat", "--admin", &url],
        &[ADMIN],
        true,
    );
    wait_stats(&s, "the admin in chat", |v| {
        client_named(v, "root").is_some_and(|c| c["state"] == "chatting" && c["admin"] == true)
    });

    // A client's one-shot message reaches the admin's session live.
    let out = s.run(&[
        "--json",
        "--name",
        "bob",
        "chat",
        "-m",
        "hello from bob",
        &url,
    ]);
    out.ok();
    assert_eq!(out.json()["live"], 1);
    let lines = admin.wait_stdout("bob's message", |o| o.contains("hello from bob"));
    let msg: Value = lines
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["text"] == "hello from bob")
        .unwrap();
    assert_eq!(msg["from"], "bob");
    assert_eq!(msg["to"], "admins");
    assert_eq!(msg["kind"], "chat");
    assert!(msg["time"].as_str().unwrap().ends_with('Z'));

    // The admin answers; bob is not in chat, so it waits for him.
    admin.send("/to bob");
    admin.send("hi bob, seen it");
    let deadline = Instant::now() + WAIT;
    loop {
        let log = s
            .client
            .run_env(&["admin", "log", &url, "--category", "chat"], &[ADMIN]);
        if log.stdout.contains("hi bob, seen it") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "answer not logged: {}",
            log.stdout
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Bob's next command, whatever it is, says there is something unread.
    let out = s.run(&["--name", "bob", "ls", &url]);
    out.ok();
    assert!(out.stderr.contains("1 unread message"), "{}", out.stderr);
    // Someone else is not told.
    let out = s.run(&["--name", "carol", "ls", &url]);
    assert!(!out.stderr.contains("unread"), "{}", out.stderr);
    // Bob reads it (input ends at once: read and leave).
    let out = s.run(&["--json", "--name", "bob", "chat", &url]);
    out.ok();
    let got: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let answer = got.iter().find(|v| v["text"] == "hi bob, seen it").unwrap();
    assert_eq!(answer["to"], "bob");
    assert!(answer["from"].as_str().unwrap().contains("admin"));
    // Read once: gone from the mailbox.
    let out = s.run(&["--name", "bob", "ls", &url]);
    assert!(!out.stderr.contains("unread"), "{}", out.stderr);

    // An admin's one-shot answer by id while bob is in chat arrives live.
    let mut bob = Bg::start(&s, &["--json", "--name", "bob", "chat", &url], &[], true);
    let v = wait_stats(&s, "bob in chat", |v| {
        client_named(v, "bob").is_some_and(|c| c["state"] == "chatting")
    });
    let id = client_named(&v, "bob").unwrap()["id"].to_string();
    let out = s.client.run_env(
        &[
            "--json",
            "chat",
            "--admin",
            "--to",
            &id,
            "-m",
            "live answer",
            &url,
        ],
        &[ADMIN],
    );
    out.ok();
    assert_eq!(out.json()["live"], 1);
    bob.wait_stdout("the live answer", |o| o.contains("live answer"));
    // And bob's interactive line reaches the admin session.
    bob.send("typed by bob");
    admin.wait_stdout("bob's typed line", |o| o.contains("typed by bob"));
    bob.send("/quit");
    assert_eq!(bob.wait(WAIT), 0);
    admin.send("/quit");
    assert_eq!(admin.wait(WAIT), 0);

    // An admin must say whom to write to.
    s.client
        .run_env(&["chat", "--admin", "-m", "x", &url], &[ADMIN])
        .code(2);
}

#[test]
fn admin_log_exports_every_category_and_refuses_non_admins() {
    let tmp = tempfile::tempdir().unwrap();
    let pw = secret_file(tmp.path(), "pw", "acc3ss pw");
    let adm = secret_file(tmp.path(), "adm", "adm1n pw");
    let s = Setup::new(&[
        "--password-file",
        pw.to_str().unwrap(),
        "--admin-password-file",
        adm.to_str().unwrap(),
    ]);
    let url = s.url("");
    let env = [("FTS_PASSWORD", "acc3ss pw")];
    let both = [("FTS_PASSWORD", "acc3ss pw"), ADMIN];
    let f = s.local("f.txt");
    std::fs::write(&f, b"contents").unwrap();
    // transfer, delete, chat, admin, auth (ok and failed), connect, error.
    s.client
        .run_env(&["put", f.to_str().unwrap(), &url], &env)
        .ok();
    s.client
        .run_env(
            &["get", &s.url("f.txt"), s.local("g.txt").to_str().unwrap()],
            &env,
        )
        .ok();
    s.client.run_env(&["rm", &s.url("f.txt")], &both).ok();
    s.client
        .run_env(&["chat", "-m", "for the log \x1b[2J", &url], &env)
        .ok();
    s.client
        .run_env(&["admin", "warn", &url, "--all", "logged warning"], &both)
        .ok();
    // Wrong passwords: refused with exit 4, logged as auth failures.
    s.client
        .run_env(&["ls", &url], &[("FTS_PASSWORD", "guess-one")])
        .code(4);
    s.client
        .run_env(
            &["admin", "clients", &url],
            &[
                ("FTS_PASSWORD", "acc3ss pw"),
                ("FTS_ADMIN_PASSWORD", "guess-two"),
            ],
        )
        .code(4);
    // Garbage instead of TLS: an error event.
    {
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", s.server.port)).unwrap();
        tcp.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut sink = Vec::new();
        let _ = tcp.read_to_end(&mut sink);
    }
    s.server
        .wait_event("the rejected connection", |v| v["event"] == "rejected");

    let out = s
        .client
        .run_env(&["admin", "log", &url, "--format", "csv"], &both);
    out.ok();
    let mut rows = csv::Reader::from_reader(out.stdout.as_bytes());
    assert_eq!(
        rows.headers().unwrap().iter().collect::<Vec<_>>(),
        ["time", "category", "event", "client", "addr", "detail"]
    );
    let rows: Vec<csv::StringRecord> = rows.records().map(|r| r.unwrap()).collect();
    for cat in fts::server::journal::CATEGORIES {
        assert!(
            rows.iter().any(|r| &r[1] == *cat),
            "no {cat} event in:\n{}",
            out.stdout
        );
    }
    let failed_admin = rows.iter().find(|r| {
        &r[1] == "auth" && r[5].contains("\"admin\":true") && r[5].contains("\"ok\":false")
    });
    assert!(failed_admin.is_some(), "{}", out.stdout);
    // Terminal escapes are stored escaped; passwords are never logged.
    assert!(out.stdout.contains("for the log ^[[2J"), "{}", out.stdout);
    assert!(!out.stdout.contains('\x1b'));
    let shome = &s.server.home;
    let raw = std::fs::read_to_string(shome.join(".local/state/fts/logs/events.jsonl")).unwrap();
    for secret in ["acc3ss pw", "adm1n pw", "guess-one", "guess-two"] {
        assert!(!raw.contains(secret), "{secret} in the log");
    }
    let totals = s.client.run_env(&["--json", "stats", &url], &env).json();
    assert_eq!(totals["totals"]["auth_failures"], 2);

    // JSON Lines, one category, and --since.
    let out = s.client.run_env(
        &["admin", "log", &url, "--category", "auth", "--since", "1h"],
        &both,
    );
    out.ok();
    let recs: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(recs.len() >= 3);
    assert!(recs.iter().all(|r| r["category"] == "auth"));
    s.client
        .run_env(&["admin", "log", &url, "--since", "soon"], &both)
        .code(2);
    s.client
        .run_env(&["admin", "log", &url, "--category", "nope"], &both)
        .code(2);

    // Without the admin password (and no terminal to ask on): exit 4.
    for args in [
        vec!["admin", "clients", &url],
        vec!["admin", "kick", &url, "1"],
        vec!["admin", "warn", &url, "1", "x"],
        vec!["admin", "log", &url],
        vec!["chat", "--admin", "-m", "x", "--to", "1", &url],
    ] {
        let out = s.client.run_env(&args, &env);
        out.code(4);
    }
    // A server without an admin password refuses admin actions: exit 5.
    let open = Setup::new(&[]);
    let out = open
        .client
        .run_env(&["admin", "clients", &open.url("")], &[ADMIN]);
    out.code(5);
}

#[test]
fn chat_input_is_bounded_and_dead_chatters_leave_no_trace() {
    let s = Setup::new(&[]);
    let url = s.url("");
    // Over the documented size: refused before connecting (usage, exit 2).
    let long = "x".repeat(2001);
    s.run(&["chat", "-m", &long, &url]).code(2);
    s.run(&["chat", "-m", "   ", &url]).code(2);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ((mut r, mut w), _) = raw_session(&s, PROTOCOL_VERSION).await;
        // The server checks the size too.
        w.msg(&Msg::ChatSend {
            id: 1,
            to: None,
            text: "y".repeat(5000),
        })
        .await
        .unwrap();
        w.flush().await.unwrap();
        assert!(matches!(
            r.read_msg().await.unwrap(),
            Msg::Error { id: Some(1), .. }
        ));
        // A flood: a burst goes through, the rest is refused, and the
        // connection stays usable.
        for id in 2..22 {
            w.msg(&Msg::ChatSend {
                id,
                to: None,
                text: format!("flood {id}"),
            })
            .await
            .unwrap();
        }
        w.flush().await.unwrap();
        let (mut ok, mut refused) = (0, 0);
        for _ in 2..22 {
            match r.read_msg().await.unwrap() {
                Msg::ChatAck { .. } => ok += 1,
                Msg::Error { message, .. } => {
                    assert!(message.contains("slow down"), "{message}");
                    refused += 1
                }
                m => panic!("unexpected {m:?}"),
            }
        }
        assert!(ok <= 6 && refused >= 14, "ok {ok}, refused {refused}");
        w.msg(&Msg::StatsReq).await.unwrap();
        w.flush().await.unwrap();
        assert!(matches!(
            r.read_msg().await.unwrap(),
            Msg::StatsReply { .. }
        ));
        // Admin requests and admin chat from a session that is not admin
        // are refused by the server itself, not just by the CLI.
        for m in [
            Msg::Admin {
                action: fts::proto::AdminAction::Kick {
                    client: 1,
                    reason: "x".into(),
                },
            },
            Msg::Admin {
                action: fts::proto::AdminAction::Log {
                    since_s: None,
                    category: None,
                },
            },
            Msg::ChatJoin { admin: true },
        ] {
            w.msg(&m).await.unwrap();
            w.flush().await.unwrap();
            match r.read_msg().await.unwrap() {
                Msg::Error { kind, .. } => assert!(
                    matches!(kind, fts::ErrorKind::Permission | fts::ErrorKind::Auth),
                    "{kind:?}"
                ),
                other => panic!("{m:?} was answered with {other:?}"),
            }
        }
    });

    // A chatter killed mid-chat disappears from the table.
    let mut chatter = Bg::start(&s, &["--name", "ghost", "chat", &url], &[], true);
    wait_stats(&s, "the chatter", |v| {
        client_named(v, "ghost").is_some_and(|c| c["state"] == "chatting")
    });
    chatter.child.kill().unwrap();
    chatter.child.wait().unwrap();
    wait_stats(&s, "the dead chatter gone", |v| {
        client_named(v, "ghost").is_none()
    });
}

#[test]
fn stats_watch_prints_json_lines_until_interrupted() {
    let s = Setup::new(&[]);
    let w = Bg::start(
        &s,
        &["--json", "stats", "--watch", "1", &s.url("")],
        &[],
        false,
    );
    let out = w.wait_stdout("three refreshes", |o| o.lines().count() >= 3);
    for line in out.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(v["totals"]["connections"].as_u64().unwrap() >= 1);
        assert_eq!(v["clients"].as_array().unwrap().len(), 1);
    }
    unsafe_kill(w.child.id(), "INT");
    let mut w = w;
    assert_eq!(w.wait(WAIT), 0, "{}", w.stderr());
    // Zero or a silly interval is a usage error.
    s.run(&["stats", "--watch", "0", &s.url("")]).code(2);
}
