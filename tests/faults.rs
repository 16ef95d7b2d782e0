//! Faults from outside fts: a connection cut in the middle of a stream, a
//! full disk, a read-only destination and a source file that changes while
//! it is sent. Whatever happens, a target is either its old self or the
//! complete new file, never a torn one, and a rerun completes the job.
//! (kill -9 at random moments is in tests/kill.rs.)

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Which way the relay counts bytes before it cuts.
#[derive(Clone, Copy)]
enum Way {
    /// client → server (an upload's data)
    Up,
    /// server → client (a download's data)
    Down,
}

/// A TCP relay in front of the server that cuts each of its first `cuts`
/// connections dead once `after` bytes went `way`, like a network that
/// drops in the middle of a transfer; later connections pass untouched.
struct Cutter {
    port: u16,
    cut: Arc<AtomicUsize>,
}

impl Cutter {
    fn start(server_port: u16, way: Way, after: usize, cuts: usize) -> Cutter {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let cut = Arc::new(AtomicUsize::new(0));
        let c2 = cut.clone();
        std::thread::spawn(move || {
            for (n, down) in l.incoming().enumerate() {
                let Ok(down) = down else { return };
                let up = TcpStream::connect(("127.0.0.1", server_port)).unwrap();
                let limit = (n < cuts).then_some(after);
                let (counted, other) = match way {
                    Way::Up => (
                        (down.try_clone().unwrap(), up.try_clone().unwrap()),
                        (up, down),
                    ),
                    Way::Down => (
                        (up.try_clone().unwrap(), down.try_clone().unwrap()),
                        (down, up),
                    ),
                };
                let ends = [other.0.try_clone().unwrap(), other.1.try_clone().unwrap()];
                let c3 = c2.clone();
                std::thread::spawn(move || {
                    if pump(counted.0, counted.1, limit) {
                        c3.fetch_add(1, Ordering::SeqCst);
                        for e in &ends {
                            let _ = e.shutdown(Shutdown::Both);
                        }
                    }
                });
                std::thread::spawn(move || {
                    pump(other.0, other.1, None);
                });
            }
        });
        Cutter { port, cut }
    }

    fn url(&self, path: &str) -> String {
        format!("fts://127.0.0.1:{}/{}", self.port, path)
    }

    fn cuts(&self) -> usize {
        self.cut.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to`; true when it stopped because `limit` was hit.
fn pump(mut from: TcpStream, mut to: TcpStream, limit: Option<usize>) -> bool {
    let mut buf = [0u8; 16 * 1024];
    let mut sent = 0usize;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let n = match limit {
            Some(l) if sent + n >= l => {
                let _ = to.write_all(&buf[..l - sent]);
                let _ = from.shutdown(Shutdown::Both);
                let _ = to.shutdown(Shutdown::Both);
                return true;
            }
            _ => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n;
    }
    let _ = to.shutdown(Shutdown::Write);
    false
}

#[test]
fn a_cut_connection_leaves_no_torn_file_and_a_rerun_completes() {
    let s = Setup::new(&[]);
    let src = s.local("big.bin");
    random_file(&src, 8 << 20, 1);
    let old = s.root().join("big.bin");
    random_file(&old, 3 << 20, 2);
    let old_hash = hash(&old);

    // Upload cut after 3 MiB: the client says the connection was lost, the
    // server's copy is still the old one.
    let relay = Cutter::start(s.server.port, Way::Up, 3 << 20, 1);
    let out = s.run(&[
        "--json",
        "put",
        "--retries",
        "0",
        src.to_str().unwrap(),
        &relay.url(""),
    ]);
    out.code(6);
    assert_eq!(relay.cuts(), 1);
    assert_eq!(
        hash(&old),
        old_hash,
        "old version must survive a cut upload"
    );
    // The rerun picks up from what arrived (delta off: the point is resume).
    let out = s.run(&[
        "--json",
        "put",
        "--no-delta",
        src.to_str().unwrap(),
        &relay.url(""),
    ]);
    out.ok();
    assert_eq!(hash(&old), hash(&src));
    assert_no_temp_files(s.root());
    assert!(!tree(s.root()).iter().any(|(r, _)| r.contains(".fts-part")));

    // With retries the same cut is survived within one command.
    let src2 = s.local("second.bin");
    random_file(&src2, 6 << 20, 3);
    let relay = Cutter::start(s.server.port, Way::Up, 2 << 20, 2);
    let out = s.run(&[
        "--json",
        "put",
        "--retries",
        "3",
        src2.to_str().unwrap(),
        &relay.url(""),
    ]);
    out.ok();
    assert_eq!(relay.cuts(), 2);
    assert_eq!(hash(&s.root().join("second.bin")), hash(&src2));

    // Download cut after 3 MiB: nothing at the local target, then a rerun.
    let dl = s.local("dl");
    std::fs::create_dir_all(&dl).unwrap();
    let relay = Cutter::start(s.server.port, Way::Down, 3 << 20, 1);
    let out = s.run(&[
        "--json",
        "get",
        "--retries",
        "0",
        &relay.url("big.bin"),
        dl.to_str().unwrap(),
    ]);
    out.code(6);
    assert!(
        !dl.join("big.bin").exists(),
        "a torn download must not appear"
    );
    s.run(&["--json", "get", &relay.url("big.bin"), dl.to_str().unwrap()])
        .ok();
    assert_eq!(hash(&dl.join("big.bin")), hash(&src));
    assert_no_temp_files(&dl);

    // A sync cut mid-way: files already there are complete, the rest absent.
    let tree_src = s.local("tree");
    for i in 0..6 {
        random_file(
            &tree_src.join(format!("d{}/f{i}.bin", i % 2)),
            700 << 10,
            10 + i,
        );
    }
    let relay = Cutter::start(s.server.port, Way::Up, 2 << 20, 1);
    let out = s.run(&[
        "--json",
        "sync",
        "--retries",
        "0",
        tree_src.to_str().unwrap(),
        &relay.url("tree"),
    ]);
    assert_ne!(out.code, 0);
    for (rel, h) in tree(&s.root().join("tree")) {
        if !rel.ends_with('/') {
            assert_eq!(
                h,
                hash(&tree_src.join(&rel)),
                "torn file {rel} after a cut sync"
            );
        }
    }
    s.run(&["sync", tree_src.to_str().unwrap(), &relay.url("tree")])
        .ok();
    assert_eq!(tree(&tree_src), tree(&s.root().join("tree")));
    assert_no_temp_files(s.root());
}

/// A server whose root is a private tmpfs (`mount_opts`), in its own mount
/// namespace; the test reaches the root through /proc/PID/root. `seed` runs
/// in the namespace after the mount, before the server starts.
fn server_on_tmpfs(tmp: &Path, mount_opts: &str, seed: &str, extra: &[&str]) -> (Server, PathBuf) {
    let root = tmp.join("root");
    let home = tmp.join("server-home");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    let script = format!(
        "set -e; mount -t tmpfs -o {mount_opts} fts-test '{}'; cd '{}'; {seed}; exec \"$0\" \"$@\"",
        root.display(),
        root.display()
    );
    let mut c = fts_cmd_via(&home, &namespaced(&script));
    c.args(["--json", "serve"])
        .arg(&root)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra);
    let server = Server::spawn(c, &root, &home);
    let seen = PathBuf::from(format!("/proc/{}/root{}", server.pid(), root.display()));
    (server, seen)
}

/// `sh -c SCRIPT` in a private mount namespace (as root, or with a user
/// namespace mapping us to root when not), so tests can mount filesystems.
fn namespaced(script: &str) -> Vec<&str> {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false);
    let mut v = vec!["unshare", "-m"];
    if !root {
        v.push("-r");
    }
    v.extend(["sh", "-c", script]);
    v
}

#[test]
fn a_full_disk_fails_cleanly_keeps_the_old_file_and_the_server_serves_on() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, root) = server_on_tmpfs(
        tmp.path(),
        "size=8m",
        "head -c 3145728 /dev/urandom > keep.bin; head -c 3145728 /dev/zero > filler.bin",
        &[],
    );
    let c = Client::new();
    let old_hash = hash(&root.join("keep.bin"));
    let src = tmp.path().join("keep.bin");
    random_file(&src, 4 << 20, 7);

    // 3 + 3 MiB used, 4 MiB more will not fit.
    let out = c.run(&[
        "--json",
        "put",
        "--no-delta",
        src.to_str().unwrap(),
        &server.url(""),
    ]);
    out.code(1);
    let msg = out.err_message();
    assert!(msg.contains("No space left on device"), "{msg}");
    assert_eq!(
        hash(&root.join("keep.bin")),
        old_hash,
        "old file damaged by a full disk"
    );
    assert_no_temp_files(&root);
    // The space the failed upload took is given back.
    let used: Vec<String> = tree(&root).into_iter().map(|(r, _)| r).collect();
    assert_eq!(
        used,
        vec!["filler.bin".to_string(), "keep.bin".to_string()],
        "{used:?}"
    );

    // The server is still there, and with room again the upload goes through.
    c.run(&["ls", &server.url("")]).ok();
    std::fs::remove_file(root.join("filler.bin")).unwrap();
    c.run(&["put", src.to_str().unwrap(), &server.url("")]).ok();
    assert_eq!(hash(&root.join("keep.bin")), hash(&src));
    assert_no_temp_files(&root);
    drop(server);
}

#[test]
fn a_read_only_destination_is_a_clear_error_and_nothing_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, root) = server_on_tmpfs(
        tmp.path(),
        "size=8m",
        "head -c 100000 /dev/urandom > f.bin; mount -o remount,ro fts-test .",
        &[],
    );
    let c = Client::new();
    let before = tree(&root);
    let src = tmp.path().join("f.bin");
    random_file(&src, 200_000, 9);
    let out = c.run(&["--json", "put", src.to_str().unwrap(), &server.url("")]);
    out.code(5);
    let msg = out.err_message();
    assert!(msg.contains("Read-only file system"), "{msg}");
    assert_eq!(tree(&root), before);

    // Client side: a get into a read-only directory.
    let ro = tmp.path().join("ro");
    std::fs::create_dir_all(&ro).unwrap();
    let script = format!(
        "set -e; mount --bind '{0}' '{0}'; mount -o remount,ro,bind '{0}'; exec \"$0\" \"$@\"",
        ro.display()
    );
    let mut cmd = fts_cmd_via(c.home.path(), &namespaced(&script));
    cmd.args(["--json", "get", &server.url("f.bin"), ro.to_str().unwrap()]);
    let out = run(cmd);
    out.code(5);
    let msg = out.err_message();
    assert!(msg.contains("Read-only file system"), "{msg}");
    assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 0);
}

#[test]
fn a_file_that_changes_while_it_is_sent_is_never_stored_as_a_mix() {
    let s = Setup::new(&[]);
    let src = s.local("grow.log");
    // Big enough that the reader (a few MiB ahead of the network) has not
    // reached the end when the end changes.
    random_file(&src, 16 << 20, 20);
    let target = s.root().join("grow.log");
    random_file(&target, 1 << 20, 21);
    let old_hash = hash(&target);

    // Upload: the source is rewritten in the middle of the send.
    let changer = {
        let src = src.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            let mut f = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
            use std::io::{Seek, SeekFrom};
            f.seek(SeekFrom::Start((16 << 20) - 4096)).unwrap();
            f.write_all(&[0u8; 4096]).unwrap();
        })
    };
    let out = s.run(&[
        "--json",
        "put",
        "--no-delta",
        "--bwlimit",
        "8M",
        "--retries",
        "0",
        src.to_str().unwrap(),
        &s.url(""),
    ]);
    changer.join().unwrap();
    assert_ne!(out.code, 0, "a changed source must not pass");
    let msg = out.err_message();
    assert!(msg.contains("changed while"), "{msg}");
    assert_eq!(hash(&target), old_hash, "the target was replaced by a mix");
    assert_no_temp_files(s.root());

    // Download: the server's file changes under it.
    let served = s.root().join("moving.bin");
    random_file(&served, 16 << 20, 22);
    let changer = {
        let served = served.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(700));
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&served)
                .unwrap();
            f.write_all(b"more").unwrap();
        })
    };
    let dl = s.local("dl");
    std::fs::create_dir_all(&dl).unwrap();
    let out = s.run(&[
        "--json",
        "get",
        "--bwlimit",
        "8M",
        "--retries",
        "0",
        &s.url("moving.bin"),
        dl.to_str().unwrap(),
    ]);
    changer.join().unwrap();
    assert_ne!(out.code, 0);
    let msg = out.err_message();
    assert!(msg.contains("changed while"), "{msg}");
    assert!(!dl.join("moving.bin").exists());
    assert_no_temp_files(&dl);

    // Once it holds still, the same command succeeds.
    s.run(&["get", &s.url("moving.bin"), dl.to_str().unwrap()])
        .ok();
    assert_eq!(hash(&dl.join("moving.bin")), hash(&served));
}
