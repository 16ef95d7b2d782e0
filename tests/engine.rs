//! Delta transfer, resume after kills, sync of whole trees, hostile delta
//! input and a full disk, all through the real binary and a real server.

mod common;
use common::*;
use fts::proto::{Msg, PROTOCOL_VERSION};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

fn insert(path: &Path, at: usize, bytes: &[u8]) {
    let mut d = std::fs::read(path).unwrap();
    d.splice(at..at, bytes.iter().copied());
    std::fs::write(path, d).unwrap();
}

fn field(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"))
}

type Edit = (&'static str, Box<dyn Fn(&Path)>);

/// Each kind of edit to a 64 MiB file costs well under 1% of it on the wire.
#[test]
fn small_edits_cross_as_small_deltas_both_ways() {
    let s = Setup::new(&[]);
    let size = 64 * MIB;
    let local = s.local("big.bin");
    random_file(&local, size, 42);
    let remote = s.root().join("big.bin");
    s.run(&["put", "-q", local.to_str().unwrap(), &s.url("")])
        .ok();
    let limit = (size / 100) as u64;

    let edits: Vec<Edit> = vec![
        (
            "3 x 10 bytes",
            Box::new(|p: &Path| {
                for at in [1_000u64, 20_000_000, 45_000_000] {
                    poke(p, at, b"0123456789");
                }
            }),
        ),
        (
            "insertion",
            Box::new(|p: &Path| insert(p, 20_000_000, b"a few inserted bytes")),
        ),
        (
            // Every block moves, so no block matches at its old offset:
            // the rolling search must still find them all.
            "insertion near the start",
            Box::new(|p: &Path| insert(p, 100, b"shifts all")),
        ),
        (
            "truncation",
            Box::new(|p: &Path| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(p)
                    .unwrap()
                    .set_len(50_000_000)
                    .unwrap()
            }),
        ),
        (
            "append",
            Box::new(|p: &Path| {
                let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
                f.write_all(&[7u8; 30_000]).unwrap();
            }),
        ),
    ];
    for (what, edit) in &edits {
        edit(&local);
        let out = s.run(&["--json", "put", local.to_str().unwrap(), &s.url("")]);
        out.ok();
        let j = out.json();
        assert!(
            field(&j, "wire_bytes_sent") < limit,
            "put {what}: sent {} bytes",
            j["wire_bytes_sent"]
        );
        assert!(
            field(&j, "matched_bytes") > 40 * MIB as u64,
            "put {what}: {j}"
        );
        assert_eq!(hash(&remote), hash(&local), "put {what}: result differs");
        assert_eq!(mtime(&remote), mtime(&local));
    }
    // And downloads: the server's copy changes, the local one is the base.
    for (what, edit) in &edits {
        edit(&remote);
        let out = s.run(&["--json", "get", &s.url("big.bin"), local.to_str().unwrap()]);
        out.ok();
        let j = out.json();
        assert!(
            field(&j, "wire_bytes_received") < limit,
            "get {what}: received {}",
            j["wire_bytes_received"]
        );
        assert!(
            field(&j, "matched_bytes") > 40 * MIB as u64,
            "get {what}: {j}"
        );
        assert_eq!(hash(&local), hash(&remote), "get {what}: result differs");
    }
    // --no-delta sends it all.
    poke(&local, 5, b"x");
    let j = s
        .run(&[
            "--json",
            "put",
            "--no-delta",
            local.to_str().unwrap(),
            &s.url(""),
        ])
        .json();
    assert_eq!(field(&j, "matched_bytes"), 0);
    assert!(field(&j, "wire_bytes_sent") > 40 * MIB as u64);
    assert!(
        s.server.peak_rss_kib() < 128 * 1024,
        "server RSS {} KiB",
        s.server.peak_rss_kib()
    );
    assert_no_temp_files(s.root());
}

/// The receiver's base changes under it while its signature is computed
/// and the delta applied, both ways: the result under the real name is
/// never a mix; the transfer either ends with exactly the sender's bytes
/// (the rebuilt file failed its BLAKE3 check and was sent in full) or
/// fails with an error.
#[test]
fn a_base_that_changes_while_hashed_never_corrupts_the_result() {
    let s = Setup::new(&[]);
    let size = 64 * MIB;
    let local = s.local("big.bin");
    random_file(&local, size, 7);
    let remote = s.root().join("big.bin");
    s.run(&["put", "-q", local.to_str().unwrap(), &s.url("")])
        .ok();
    // Keeps rewriting bytes of the file at `path` until stopped or until
    // the path names another file (the result was committed over it): the
    // descriptor written is checked, so the new file is never touched.
    let scribble = |path: PathBuf| {
        use std::os::unix::fs::{FileExt, MetadataExt};
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let ino = std::fs::metadata(&path).unwrap().ino();
        let h = std::thread::spawn(move || {
            let mut at = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                if f.metadata().unwrap().ino() != ino {
                    break;
                }
                f.write_all_at(b"scribbled bytes!", at % (size as u64 - 16))
                    .unwrap();
                at += 1_234_567;
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        (stop, h)
    };
    for (what, base, sent) in [("put", &remote, &local), ("get", &local, &remote)] {
        poke(sent, 30_000_000, b"a real edit");
        let (stop, h) = scribble(base.clone());
        let out = if what == "put" {
            s.run(&["--json", "put", local.to_str().unwrap(), &s.url("")])
        } else {
            s.run(&["--json", "get", &s.url("big.bin"), local.to_str().unwrap()])
        };
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
        if out.code == 0 {
            assert_eq!(hash(base), hash(sent), "{what}: result differs");
        } else {
            assert!(!out.stderr.is_empty(), "{what}: failed without a word");
        }
    }
    assert_no_temp_files(s.root());
}

/// Records every state the target path is seen in while a transfer runs.
struct Watch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Option<String>>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    /// Samples `target` continuously: missing, or its hash.
    fn new(target: PathBuf) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s2, seen2) = (stop.clone(), seen.clone());
        let handle = std::thread::spawn(move || {
            let mut last_len = None;
            while !s2.load(Ordering::Relaxed) {
                let len = std::fs::metadata(&target).ok().map(|m| m.len());
                if len != last_len {
                    let h = len.map(|_| hash(&target));
                    seen2.lock().unwrap().push(h);
                    last_len = len;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Watch {
            stop,
            seen,
            handle: Some(handle),
        }
    }

    /// Stops and checks the target only ever was missing or complete.
    fn check(mut self, want: &str) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap();
        for h in self.seen.lock().unwrap().iter().flatten() {
            assert_eq!(h, want, "the target name held a truncated or mixed file");
        }
    }
}

fn wait_for_part(dir: &Path, name: &str, at_least: u64) {
    let part = fts::engine::partial::part_path(&dir.join(name));
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0) < at_least {
        assert!(
            Instant::now() < deadline,
            "transfer never got to {at_least} bytes"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn upload_resumes_after_the_client_is_killed() {
    let s = Setup::new(&[]);
    let size = 256 * MIB;
    let src = s.local("huge.bin");
    random_file(&src, size, 7);
    let want = hash(&src);
    let watch = Watch::new(s.root().join("huge.bin"));
    let mut c = s.client.cmd();
    c.args(["put", "-q", src.to_str().unwrap(), &s.url("")])
        .stdout(Stdio::null());
    let mut child = c.spawn().unwrap();
    wait_for_part(s.root(), "huge.bin", size as u64 / 3);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !s.root().join("huge.bin").exists(),
        "a cut upload appeared under the real name"
    );
    let out = s.run(&["--json", "put", src.to_str().unwrap(), &s.url("")]);
    out.ok();
    let j = out.json();
    assert!(field(&j, "resumed_bytes") >= size as u64 / 3, "{j}");
    assert!(field(&j, "wire_bytes_sent") < size as u64 * 3 / 4, "{j}");
    assert_eq!(hash(&s.root().join("huge.bin")), want);
    watch.check(&want);
    assert_no_temp_files(s.root());
}

#[test]
fn upload_resumes_after_the_server_is_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let home = tmp.path().join("home");
    let size = 256 * MIB;
    let src = tmp.path().join("huge.bin");
    random_file(&src, size, 8);
    let want = hash(&src);
    let c = Client::new();
    let watch = Watch::new(root.join("huge.bin"));
    let server = Server::start(&root, &home, &[]);
    let mut cmd = c.cmd();
    cmd.args(["put", "-q", src.to_str().unwrap(), &server.url("")])
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    wait_for_part(&root, "huge.bin", size as u64 / 3);
    unsafe_kill(server.pid(), "KILL");
    assert_eq!(
        child.wait().unwrap().code(),
        Some(6),
        "a lost server is exit 6"
    );
    drop(server);
    assert!(!root.join("huge.bin").exists());
    let server = Server::start(&root, &home, &[]);
    let out = c.run(&["--json", "put", src.to_str().unwrap(), &server.url("")]);
    out.ok();
    let j = out.json();
    assert!(field(&j, "resumed_bytes") > 0, "{j}");
    assert!(field(&j, "wire_bytes_sent") < size as u64, "{j}");
    assert_eq!(hash(&root.join("huge.bin")), want);
    watch.check(&want);
    assert_no_temp_files(&root);
}

#[test]
fn download_resumes_after_the_client_is_killed() {
    let s = Setup::new(&[]);
    let size = 128 * MIB;
    random_file(&s.root().join("dl.bin"), size, 9);
    let want = hash(&s.root().join("dl.bin"));
    let dir = s.local("d");
    std::fs::create_dir_all(&dir).unwrap();
    let watch = Watch::new(dir.join("dl.bin"));
    let mut c = s.client.cmd();
    c.args(["get", "-q", &s.url("dl.bin"), dir.to_str().unwrap()]);
    let mut child = c.spawn().unwrap();
    wait_for_part(&dir, "dl.bin", size as u64 / 3);
    child.kill().unwrap();
    child.wait().unwrap();
    let j = s
        .run(&["--json", "get", &s.url("dl.bin"), dir.to_str().unwrap()])
        .json();
    assert!(field(&j, "resumed_bytes") >= size as u64 / 3, "{j}");
    assert!(
        field(&j, "wire_bytes_received") < size as u64 * 3 / 4,
        "{j}"
    );
    assert_eq!(hash(&dir.join("dl.bin")), want);
    watch.check(&want);
    assert_no_temp_files(&dir);
}

/// A tree of 2,000 files in nested directories.
fn make_tree(top: &Path) {
    for i in 0..2000u64 {
        let p = top.join(format!("d{}/e{}/f{i}.dat", i % 10, i % 7));
        random_file(&p, 100 + (i as usize * 37) % 3000, i);
        set_mtime(&p, 1_600_000_000 + i as i64);
    }
    std::fs::create_dir_all(top.join("empty/inner")).unwrap();
    std::os::unix::fs::symlink("d1/e1/f1.dat", top.join("link")).unwrap();
}

#[test]
fn sync_mirrors_a_tree_with_dry_run_and_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let adm = secret_file(tmp.path(), "adm", "adm1n");
    let s = Setup::new(&["--admin-password-file", adm.to_str().unwrap()]);
    let src = s.local("tree");
    make_tree(&src);
    let dst = s.root().join("mirror");
    let url = s.url("mirror");
    let admin = [("FTS_ADMIN_PASSWORD", "adm1n")];

    let j = s
        .run(&["--json", "sync", src.to_str().unwrap(), &url])
        .json();
    assert_eq!(field(&j, "files_transferred"), 2000, "{j}");
    assert_eq!(tree(&dst), tree(&src));
    assert_eq!(
        std::fs::read_link(dst.join("link")).unwrap(),
        Path::new("d1/e1/f1.dat")
    );
    assert!(dst.join("empty/inner").is_dir());
    assert_eq!(
        mtime(&dst.join("d3/e3/f3.dat")),
        mtime(&src.join("d3/e3/f3.dat"))
    );

    // Nothing changed: nothing moves.
    let j = s
        .run(&["--json", "sync", src.to_str().unwrap(), &url])
        .json();
    assert_eq!(field(&j, "files_transferred"), 0, "{j}");
    assert_eq!(field(&j, "files_skipped"), 2000);

    // Change some, add some, remove some.
    for i in [5u64, 500, 1500] {
        let p = src.join(format!("d{}/e{}/f{i}.dat", i % 10, i % 7));
        poke(&p, 10, b"changed!");
        set_mtime(&p, 1_700_000_000);
    }
    random_file(&src.join("new/dir/added.bin"), 5000, 1);
    random_file(&src.join("d0/added2"), 10, 2);
    std::fs::remove_file(src.join("d2/e2/f2.dat")).unwrap();
    std::fs::remove_dir_all(src.join("d9")).unwrap();
    let gone = 200; // d9 held every tenth file
    let before = tree(&dst);
    let dry = s.run(&[
        "--json",
        "-v",
        "sync",
        "--dry-run",
        "--delete",
        src.to_str().unwrap(),
        &url,
    ]);
    dry.ok();
    let dry = dry.json();
    assert_eq!(tree(&dst), before, "--dry-run changed the mirror");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(field(&dry, "files_transferred"), 5, "{dry}");
    assert_eq!(field(&dry, "files_deleted"), gone + 1, "{dry}");

    // Without the admin password the deletions are refused up front.
    s.run(&["sync", "--delete", src.to_str().unwrap(), &url])
        .code(4);
    assert_eq!(tree(&dst), before);

    let real = s.client.run_env(
        &[
            "--json",
            "-v",
            "sync",
            "--delete",
            src.to_str().unwrap(),
            &url,
        ],
        &admin,
    );
    real.ok();
    let real = real.json();
    for k in [
        "files_transferred",
        "files_deleted",
        "files_skipped",
        "files_total",
        "bytes_transferred",
    ] {
        assert_eq!(real[k], dry[k], "dry run and real run disagree on {k}");
    }
    assert_eq!(tree(&dst), tree(&src));
    let j = s
        .run(&["--json", "sync", "--delete", src.to_str().unwrap(), &url])
        .json();
    assert_eq!(field(&j, "files_transferred"), 0);
    assert_eq!(field(&j, "files_deleted"), 0);

    // The other way round, with an exclude; and a local --delete.
    let back = s.local("back");
    random_file(&back.join("stray"), 10, 3);
    let j = s
        .run(&[
            "--json",
            "sync",
            "--delete",
            "--exclude",
            "d1",
            &url,
            back.to_str().unwrap(),
        ])
        .json();
    assert!(field(&j, "files_transferred") > 1000, "{j}");
    assert!(!back.join("stray").exists() && !back.join("d1").exists());
    assert!(back.join("new/dir/added.bin").exists());
    assert_eq!(
        std::fs::read_link(back.join("link")).unwrap(),
        Path::new("d1/e1/f1.dat")
    );
    assert_no_temp_files(s.root());
}

#[test]
fn hostile_signatures_and_deltas_are_refused() {
    let s = Setup::new(&[]);
    random_file(&s.root().join("target"), 100_000, 1);
    let before = hash(&s.root().join("target"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ((mut r, mut w), _) = raw_session(&s, PROTOCOL_VERSION).await;

        // Signatures with block size 0 and hash size 99.
        for (block, hash_size) in [(0u32, 8u32), (4096, 99)] {
            let mut sig = 0x7273_0136u32.to_be_bytes().to_vec();
            sig.extend_from_slice(&block.to_be_bytes());
            sig.extend_from_slice(&hash_size.to_be_bytes());
            sig.extend_from_slice(&[0u8; 24]);
            w.msg(&Msg::Get {
                id: 1,
                path: "target".into(),
                resume: None,
                signature: Some(sig.len() as u64),
            })
            .await
            .unwrap();
            w.blob(&sig).await.unwrap();
            w.flush().await.unwrap();
            match r.read_msg().await.unwrap() {
                Msg::Error {
                    id: Some(1),
                    message,
                    ..
                } => assert!(message.contains("signature"), "{message}"),
                m => panic!("{m:?}"),
            }
        }

        // A delta whose copy reaches past the end of the server's file.
        let md = std::fs::metadata(s.root().join("target")).unwrap();
        let base = fts::fsutil::meta_of(&md);
        let mut delta = 0x7273_0236u32.to_be_bytes().to_vec();
        delta.push(0x45 + 2 * 4 + 1); // COPY, 4-byte offset, 2-byte length
        delta.extend_from_slice(&99_000u32.to_be_bytes());
        delta.extend_from_slice(&5000u16.to_be_bytes());
        delta.push(0);
        let meta = fts::model::Meta { size: 5000, ..base };
        w.msg(&Msg::Put {
            id: 2,
            path: "target".into(),
            meta,
            resume: None,
            delta_base: Some(base),
        })
        .await
        .unwrap();
        w.chunk(&fts::proto::Chunk {
            out_len: 5000,
            body: fts::proto::Body::Piece(delta),
        })
        .await
        .unwrap();
        w.msg(&Msg::PutEnd {
            id: 2,
            hash: "00".repeat(32),
        })
        .await
        .unwrap();
        w.flush().await.unwrap();
        match r.read_msg().await.unwrap() {
            Msg::Error {
                id: Some(2),
                message,
                ..
            } => assert!(message.contains("delta"), "{message}"),
            m => panic!("{m:?}"),
        }
        // The same session still works.
        w.msg(&Msg::Stat {
            path: "target".into(),
        })
        .await
        .unwrap();
        w.flush().await.unwrap();
        assert!(matches!(
            r.read_msg().await.unwrap(),
            Msg::StatReply { entry: Some(_) }
        ));
    });
    assert_eq!(
        hash(&s.root().join("target")),
        before,
        "the target was touched"
    );
    assert_no_temp_files(s.root());
    s.run(&["ls", &s.url("")]).ok();
}

/// A small tmpfs as the share; needs root and mount(2), skipped otherwise.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn new(dir: &Path, mib: u32) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| SmallDisk(dir.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn full_disk_fails_cleanly_and_keeps_the_old_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("small");
    let Some(_disk) = SmallDisk::new(&root, 8) else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    random_file(&root.join("old.bin"), 3 * MIB, 1);
    let old = hash(&root.join("old.bin"));
    let server = Server::start(&root, &tmp.path().join("home"), &[]);
    let c = Client::new();
    let src = tmp.path().join("old.bin");
    random_file(&src, 12 * MIB, 2);
    let out = c.run(&[
        "--json",
        "put",
        "--no-delta",
        src.to_str().unwrap(),
        &server.url(""),
    ]);
    assert_ne!(out.code, 0);
    let msg = out.err_json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("No space left") || msg.contains("write error"),
        "{msg}"
    );
    assert_eq!(
        hash(&root.join("old.bin")),
        old,
        "the old target was damaged"
    );
    assert_no_temp_files(&root);
    // Space is free again and the server still serves.
    c.run(&["ls", &server.url("")]).ok();
    let small = tmp.path().join("small.bin");
    random_file(&small, 1000, 3);
    c.run(&["put", small.to_str().unwrap(), &server.url("")])
        .ok();
}

#[test]
fn retries_resume_after_the_server_comes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let home = tmp.path().join("home");
    let size = 192 * MIB;
    let src = tmp.path().join("big.bin");
    random_file(&src, size, 11);
    let c = Client::new();
    let server = Server::start(&root, &home, &[]);
    let port = server.port;
    let mut cmd = c.cmd();
    cmd.args([
        "--json",
        "put",
        "--retries",
        "5",
        src.to_str().unwrap(),
        &server.url(""),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    wait_for_part(&root, "big.bin", size as u64 / 4);
    unsafe_kill(server.pid(), "KILL");
    drop(server);
    // Back on the same address (same certificate) before the first retry.
    let _server = Server::start_on(&root, &home, &format!("127.0.0.1:{port}"), &[]);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("retrying"), "{stderr}");
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(field(&j, "attempts") >= 2, "{j}");
    assert!(field(&j, "resumed_bytes") > 0, "{j}");
    assert_eq!(hash(&root.join("big.bin")), hash(&src));
}
