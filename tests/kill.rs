//! kill -9 fault rounds. A `put`, `get` or `sync`, slowed by `--bwlimit`,
//! is cut by SIGKILL of the client or of the server at a random moment,
//! the server is restarted on the same root and state if it was the one
//! killed, and the same command runs again. The target must then be
//! byte-identical to the source with no fts temp or partial file left, and
//! a watcher polling the target paths the whole time must never have seen
//! anything but nothing (when there was no old version), the old version,
//! or the complete new version.
//!
//! `FAULT_SEED` (default fixed, so CI is deterministic) and `FAULT_ROUNDS`
//! (rounds per kind, default 2) choose the rounds. A summary JSON line goes
//! to `target/hardening/kill.json` for `bench/hardening.sh`.

mod common;
use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
/// How long a slowed transfer is meant to last.
const TRANSFER_MS: u64 = 1500;
/// Generous bound for anything that should end: a rerun, a client after
/// its server died.
const LIMIT: Duration = Duration::from_secs(60);

/// fts's own in-flight names below `dir` (temp files, parts, manifests).
fn leftovers(dir: &Path) -> Vec<String> {
    if !dir.exists() {
        return Vec::new();
    }
    tree(dir)
        .into_iter()
        .map(|(rel, _)| rel)
        .filter(|rel| {
            let name = rel.trim_end_matches('/').rsplit('/').next().unwrap_or("");
            fts::fsutil::is_temp_name(name)
        })
        .collect()
}

/// What a watched path may hold: the hash of its old version, if it had
/// one, and of the new one.
#[derive(Clone)]
struct Allowed {
    old: Option<String>,
    new: String,
}

/// Polls target paths every 2 ms from before the transfer until after the
/// rerun, and records every state that is neither the old nor the complete
/// new file. A path that had an old version must never be missing either:
/// a replacement is one rename.
struct Watcher {
    stop: Arc<AtomicBool>,
    observations: Arc<AtomicU64>,
    violations: Arc<Mutex<Vec<String>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    fn start(paths: Vec<(PathBuf, Allowed)>) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let observations = Arc::new(AtomicU64::new(0));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let (stop2, obs2, viol2) = (stop.clone(), observations.clone(), violations.clone());
        let handle = std::thread::spawn(move || {
            // Hashing a few MiB every 2 ms would starve the transfer; a
            // file is rehashed only when its identity or times change.
            let mut last: HashMap<PathBuf, (u64, u64, i64, i64, i64, i64)> = HashMap::new();
            loop {
                let stopping = stop2.load(Ordering::Relaxed);
                for (p, allowed) in &paths {
                    obs2.fetch_add(1, Ordering::Relaxed);
                    if let Some(v) = observe(p, allowed, &mut last) {
                        viol2.lock().unwrap().push(v);
                    }
                }
                if stopping {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Watcher {
            stop,
            observations,
            violations,
            handle: Some(handle),
        }
    }

    /// Stops after one last look; returns (observations, violations).
    fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap();
        let v = std::mem::take(&mut *self.violations.lock().unwrap());
        (self.observations.load(Ordering::Relaxed), v)
    }
}

type Key = (u64, u64, i64, i64, i64, i64);

/// One look at `p`: `Some(description)` if what is there is not allowed.
fn observe(p: &Path, allowed: &Allowed, last: &mut HashMap<PathBuf, Key>) -> Option<String> {
    let mut f = match std::fs::File::open(p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            last.remove(p);
            return allowed
                .old
                .as_ref()
                .map(|_| format!("{}: missing although it had an old version", p.display()));
        }
        Err(e) => return Some(format!("{}: cannot open: {e}", p.display())),
    };
    // Stat the open file, not the path: a rename in between must not pair
    // one file's identity with another's bytes.
    let m = f.metadata().ok()?;
    let key = (
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    );
    if last.get(p) == Some(&key) {
        return None;
    }
    last.insert(p.to_path_buf(), key);
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
            }
            Err(e) => return Some(format!("{}: read failed: {e}", p.display())),
        }
    }
    let got = h.finalize().to_hex().to_string();
    if got == allowed.new || allowed.old.as_deref() == Some(got.as_str()) {
        None
    } else {
        Some(format!(
            "{}: held {} bytes that are neither the old nor the complete new file",
            p.display(),
            m.size()
        ))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Put,
    Get,
    Sync,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Put => "put",
            Kind::Get => "get",
            Kind::Sync => "sync",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Victim {
    Client,
    Server,
}

/// One round's files: where the source and the target live, which
/// relative paths to watch, and the command's arguments (before and after
/// the remote URL is known).
struct Plan {
    /// Directory that ends up a copy of `src_dir` (the watched side).
    dst_dir: PathBuf,
    src_dir: PathBuf,
    files: Vec<String>,
    old: HashMap<String, String>,
    /// Roughly what crosses the wire (a delta sends only what differs),
    /// to size `--bwlimit` so that the transfer lasts [`TRANSFER_MS`].
    wire: u64,
}

/// Result of one round, for the summary and the report on failure.
struct Round {
    kind: Kind,
    victim: Victim,
    with_old: bool,
    kill_after_ms: u64,
    /// The transfer completed anyway: the client had exited before the
    /// kill, or its server died with all the data already in the sockets.
    uncut: bool,
    /// Exit code of the client after the kill (None: it was the victim).
    client_code: Option<i32>,
    resumed_bytes: u64,
    observations: u64,
    violations: Vec<String>,
}

impl Round {
    fn describe(&self) -> String {
        format!(
            "{} / kill {:?} after {} ms / {} old version",
            self.kind.name(),
            self.victim,
            self.kill_after_ms,
            if self.with_old { "with" } else { "no" }
        )
    }
}

/// Random files for one round. `put`/`get`: one file of 2–5 MiB. `sync`:
/// a small tree of mixed sizes (empty, tiny, under and over the 1 MiB
/// resume threshold) in nested directories. With `with_old`, the target
/// already holds older versions: of the one file, or of some of the tree's
/// files (one of them unchanged, so sync skips it). With `big`, the first
/// file is 16–32 MiB instead: more than loopback's socket buffers hold, so
/// that a server killed while sending has not already handed everything
/// to the kernel (a client then completes and verifies, which is right but
/// cuts nothing).
fn make_files(
    rng: &mut Rng,
    kind: Kind,
    src: &Path,
    dst: &Path,
    with_old: bool,
    big: bool,
) -> Plan {
    let mut files = Vec::new();
    let mut old = HashMap::new();
    let mut wire = 0u64;
    let seed = rng.next();
    let mut sizes: Vec<(String, usize)> = match kind {
        Kind::Put | Kind::Get => vec![(
            "data.bin".to_string(),
            rng.range(2 * MIB as u64, 5 * MIB as u64) as usize,
        )],
        Kind::Sync => {
            let n = rng.range(6, 10) as usize;
            let choices = [0, 1, 700, 40_000, 300_000, 900_000, 1_300_000, 2 * MIB];
            let dirs = ["", "a/", "a/b/", "c/"];
            let mut v: Vec<(String, usize)> = (0..n)
                .map(|i| (format!("{}f{i}.dat", rng.pick(&dirs)), rng.pick(&choices)))
                .collect();
            // At least one file over the resume threshold, so parts are
            // exercised in every sync round.
            v[0].1 = 1_500_000 + rng.range(0, MIB as u64) as usize;
            v
        }
    };
    if big {
        sizes[0].1 = rng.range(16 * MIB as u64, 32 * MIB as u64) as usize;
    }
    for (i, (rel, size)) in sizes.iter().enumerate() {
        let p = src.join(rel);
        random_file(&p, *size, seed.wrapping_add(i as u64));
        set_mtime(&p, 1_700_000_000 + i as i64);
        files.push(rel.clone());
        wire += *size as u64;
    }
    if with_old {
        for (i, (rel, size)) in sizes.iter().enumerate() {
            if kind == Kind::Sync && i % 2 == 1 {
                continue; // absent on the target: a plain new file
            }
            let t = dst.join(rel);
            if kind == Kind::Sync && i == 2 {
                // Unchanged: same bytes and mtime, skipped by sync.
                std::fs::create_dir_all(t.parent().unwrap()).unwrap();
                std::fs::copy(src.join(rel), &t).unwrap();
                set_mtime(&t, 1_700_000_000 + i as i64);
                wire -= *size as u64;
            } else if i % 4 == 0 && *size > 0 {
                // Same size, a different tail: the delta path rebuilds it
                // from the old copy.
                std::fs::create_dir_all(t.parent().unwrap()).unwrap();
                std::fs::copy(src.join(rel), &t).unwrap();
                let keep = size / 2;
                let tail = t.with_extension("tail");
                random_file(&tail, size - keep, seed ^ 0xdead_beef ^ i as u64);
                let mut d = std::fs::read(&t).unwrap();
                d.truncate(keep);
                d.extend(std::fs::read(&tail).unwrap());
                std::fs::remove_file(&tail).unwrap();
                std::fs::write(&t, d).unwrap();
                set_mtime(&t, 1_600_000_000 + i as i64);
                wire -= keep as u64;
            } else {
                let len = rng.range(1, 3 * MIB as u64) as usize;
                random_file(&t, len, seed ^ 0x0123_4567 ^ i as u64);
                set_mtime(&t, 1_600_000_000 + i as i64);
            }
            old.insert(rel.clone(), hash(&t));
        }
    }
    Plan {
        dst_dir: dst.to_path_buf(),
        src_dir: src.to_path_buf(),
        files,
        old,
        wire,
    }
}

/// The command line of a round against `server`: `sync` goes up (local
/// to server) or down.
fn argv(kind: Kind, up: bool, server: &Server, local: &Path, bwlimit: Option<u64>) -> Vec<String> {
    let mut a: Vec<String> = vec!["--json".into(), kind.name().into()];
    if let Some(r) = bwlimit {
        a.extend(["--bwlimit".into(), r.to_string()]);
    }
    let l = local.to_str().unwrap().to_string();
    match kind {
        Kind::Put => a.extend([
            local.join("data.bin").to_str().unwrap().into(),
            server.url(""),
        ]),
        Kind::Get => a.extend([server.url("data.bin"), l]),
        Kind::Sync if up => a.extend([l, server.url("tree")]),
        Kind::Sync => a.extend([server.url("tree"), l]),
    }
    a
}

fn round(rng: &mut Rng, kind: Kind, r: u64) -> Round {
    // Both victims and both target states are covered within any 4 rounds
    // of a kind, and within the first 2 both victims are.
    let victim = if r % 2 == 0 {
        Victim::Client
    } else {
        Victim::Server
    };
    let with_old = matches!(r % 4, 1 | 2);
    let up = rng.next() % 2 == 0;

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let shome = tmp.path().join("server-home");
    let local = tmp.path().join("local");
    let scratch = tmp.path().join("scratch");
    for d in [&root, &shome, &local, &scratch] {
        std::fs::create_dir_all(d).unwrap();
    }
    let server_sends = kind == Kind::Get || (kind == Kind::Sync && !up);
    let big = server_sends && victim == Victim::Server;
    let plan = match kind {
        Kind::Put => make_files(rng, kind, &local, &root, with_old, big),
        Kind::Get => make_files(rng, kind, &root, &local, with_old, big),
        Kind::Sync if up => make_files(rng, kind, &local, &root.join("tree"), with_old, big),
        Kind::Sync => make_files(rng, kind, &root.join("tree"), &local, with_old, big),
    };
    let watched: Vec<(PathBuf, Allowed)> = plan
        .files
        .iter()
        .map(|f| {
            (
                plan.dst_dir.join(f),
                Allowed {
                    old: plan.old.get(f).cloned(),
                    new: hash(&plan.src_dir.join(f)),
                },
            )
        })
        .collect();

    let client = Client::new();
    let mut server = Some(Server::start(&root, &shome, &[]));
    let bwlimit = (plan.wire * 1000 / TRANSFER_MS).max(64 * 1024);
    let argv = |s: &Server, bw| argv(kind, up, s, &local, bw);

    let watcher = Watcher::start(watched);
    let mut cmd = client.cmd();
    cmd.args(argv(server.as_ref().unwrap(), Some(bwlimit)))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(scratch.join("cut.err")).unwrap());
    let mut child = cmd.spawn().unwrap();
    // Anywhere from the connection setup to near the end of the transfer.
    let kill_after_ms = rng.range(0, TRANSFER_MS * 9 / 10);
    std::thread::sleep(Duration::from_millis(kill_after_ms));

    let (uncut, client_code) = match victim {
        Victim::Client => {
            let exited = child.try_wait().unwrap().is_some();
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
            (exited, None)
        }
        Victim::Server => {
            let s = server.take().unwrap();
            unsafe_kill(s.pid(), "KILL");
            drop(s); // reaps it
            let code = wait_bounded(&mut child, LIMIT);
            (code == Some(0), Some(code.unwrap_or(-2)))
        }
    };
    let cut_err = std::fs::read_to_string(scratch.join("cut.err")).unwrap_or_default();
    let mut violations = Vec::new();
    if cut_err.contains("panicked") {
        violations.push(format!("the client panicked: {cut_err}"));
    }
    if client_code == Some(-2) {
        violations.push("the client did not end after its server was killed".into());
    }

    let server = server.unwrap_or_else(|| Server::start(&root, &shome, &[]));
    let out = run_bounded(&client, &argv(&server, None), &scratch, LIMIT);
    let mut resumed_bytes = 0;
    if out.code != 0 {
        violations.push(format!(
            "the rerun exited {}: {}",
            out.code,
            out.stderr.trim()
        ));
    } else if let Ok(j) = serde_json::from_str::<Value>(&out.stdout) {
        resumed_bytes = j["resumed_bytes"].as_u64().unwrap_or(0);
    } else {
        violations.push(format!("the rerun printed no JSON: {:?}", out.stdout));
    }
    let (observations, seen) = watcher.finish();
    violations.extend(seen);

    for f in &plan.files {
        let (a, b) = (plan.src_dir.join(f), plan.dst_dir.join(f));
        if !b.exists() || hash(&a) != hash(&b) {
            violations.push(format!(
                "{f}: target differs from the source after the rerun"
            ));
        }
    }
    for dir in [&root, &local] {
        for l in leftovers(dir) {
            violations.push(format!("left behind after the rerun: {l}"));
        }
    }
    drop(server);
    Round {
        kind,
        victim,
        with_old,
        kill_after_ms,
        uncut,
        client_code,
        resumed_bytes,
        observations,
        violations,
    }
}

#[test]
fn kill_nine_during_put_get_and_sync() {
    let seed = env_u64("FAULT_SEED", 0x5EED_F00D);
    let per_kind = env_u64("FAULT_ROUNDS", 2);
    println!("kill rounds: FAULT_SEED={seed} FAULT_ROUNDS={per_kind}");
    let mut rng = Rng(seed);
    let mut rounds = Vec::new();
    for kind in [Kind::Put, Kind::Get, Kind::Sync] {
        for r in 0..per_kind {
            let res = round(&mut rng, kind, r);
            println!(
                "  {}: {} (client exit {:?}, resumed {} B, {} observations){}",
                res.describe(),
                if res.violations.is_empty() {
                    "ok"
                } else {
                    "FAILED"
                },
                res.client_code,
                res.resumed_bytes,
                res.observations,
                if res.uncut {
                    ", completed despite the kill"
                } else {
                    ""
                }
            );
            rounds.push(res);
        }
    }

    let mut kinds = serde_json::Map::new();
    for kind in [Kind::Put, Kind::Get, Kind::Sync] {
        let of: Vec<&Round> = rounds.iter().filter(|r| r.kind == kind).collect();
        kinds.insert(
            kind.name().into(),
            json!({
                "rounds": of.len(),
                "survived": of.iter().filter(|r| r.violations.is_empty()).count(),
                "killed_client": of.iter().filter(|r| r.victim == Victim::Client).count(),
                "killed_server": of.iter().filter(|r| r.victim == Victim::Server).count(),
                "uncut": of.iter().filter(|r| r.uncut).count(),
            }),
        );
    }
    let failed: Vec<&Round> = rounds.iter().filter(|r| !r.violations.is_empty()).collect();
    let summary = json!({
        "seed": seed,
        "rounds_per_kind": per_kind,
        "rounds": rounds.len(),
        "survived": rounds.len() - failed.len(),
        "violations": rounds.iter().map(|r| r.violations.len()).sum::<usize>(),
        "observations": rounds.iter().map(|r| r.observations).sum::<u64>(),
        "resumed_bytes": rounds.iter().map(|r| r.resumed_bytes).sum::<u64>(),
        "kinds": kinds,
    });
    let path = write_hardening_report("kill.json", &summary);
    println!("{summary}\n(written to {})", path.display());

    let report: Vec<String> = failed
        .iter()
        .map(|r| format!("{}:\n    {}", r.describe(), r.violations.join("\n    ")))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} rounds failed (FAULT_SEED={seed}):\n{}",
        failed.len(),
        rounds.len(),
        report.join("\n")
    );
}

/// Waits until `server`'s stats satisfy `pred`.
fn wait_stats(server: &Server, what: &str, pred: impl Fn(&Value) -> bool) {
    let c = Client::new();
    let deadline = Instant::now() + LIMIT;
    loop {
        let out = c.run(&["--json", "stats", &server.url("")]);
        if out.code == 0 && pred(&out.json()) {
            return;
        }
        assert!(Instant::now() < deadline, "never saw {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An upload of `file` is under way (its byte count only moves per 1 MiB
/// chunk, so the state is what tells).
fn uploading(v: &Value, file: &str) -> bool {
    v["clients"].as_array().is_some_and(|cs| {
        cs.iter().any(|cl| {
            cl["file"].as_str().is_some_and(|f| f.ends_with(file)) && cl["state"] == "uploading"
        })
    })
}

/// Regression: a file under the resume threshold is written to a temp
/// file; SIGKILL of the server mid-upload used to leave that
/// `.NAME.XXXXXXXX.fts-tmp` in the share for good (no later run removed it).
#[test]
fn server_killed_during_a_small_upload_leaves_no_temp_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, home) = (tmp.path().join("root"), tmp.path().join("home"));
    std::fs::create_dir_all(&root).unwrap();
    let src = tmp.path().join("small.bin");
    random_file(&src, 600_000, 1);
    let c = Client::new();
    let server = Server::start(&root, &home, &[]);
    let mut cmd = c.cmd();
    cmd.args([
        "put",
        "-q",
        "--bwlimit",
        "100K",
        src.to_str().unwrap(),
        &server.url(""),
    ])
    .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    wait_stats(&server, "the upload", |v| uploading(v, "small.bin"));
    unsafe_kill(server.pid(), "KILL");
    drop(server);
    assert_eq!(
        wait_bounded(&mut child, LIMIT),
        Some(6),
        "a lost server is exit 6"
    );

    let server = Server::start(&root, &home, &[]);
    c.run(&["put", "-q", src.to_str().unwrap(), &server.url("")])
        .ok();
    assert_eq!(hash(&root.join("small.bin")), hash(&src));
    assert_eq!(leftovers(&root), Vec::<String>::new());
}

/// Regression: the same on the client's side, for a download cut by
/// SIGKILL of the client.
#[test]
fn client_killed_during_a_small_download_leaves_no_temp_file() {
    let s = Setup::new(&[]);
    random_file(&s.root().join("small.bin"), 600_000, 2);
    let dir = s.local("dl");
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = s.client.cmd();
    cmd.args([
        "get",
        "-q",
        "--bwlimit",
        "100K",
        &s.url("small.bin"),
        dir.to_str().unwrap(),
    ]);
    let mut child = cmd.spawn().unwrap();
    // A small file fits in the socket buffers: the server is done with it
    // at once, while the slowed client is still reading.
    wait_stats(&s.server, "the file sent", |v| {
        v["totals"]["files_sent"] == 1
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "the download ended too soon"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    s.run(&["get", "-q", &s.url("small.bin"), dir.to_str().unwrap()])
        .ok();
    assert_eq!(
        hash(&dir.join("small.bin")),
        hash(&s.root().join("small.bin"))
    );
    assert_eq!(leftovers(&dir), Vec::<String>::new());
}

/// The watcher is not vacuous: a short or foreign file under the target's
/// name, or a vanished old version, is reported; absent, old and new are
/// not.
#[test]
fn watcher_reports_what_it_must() {
    let d = tempfile::tempdir().unwrap();
    let (p, old, new) = (
        d.path().join("t"),
        d.path().join("old"),
        d.path().join("new"),
    );
    random_file(&old, 5000, 1);
    random_file(&new, 9000, 2);
    let allowed = Allowed {
        old: Some(hash(&old)),
        new: hash(&new),
    };
    let mut last = HashMap::new();
    let mut look = || observe(&p, &allowed, &mut last);
    assert!(look().is_some(), "a vanished old version");
    std::fs::copy(&old, &p).unwrap();
    assert_eq!(look(), None);
    std::fs::write(&p, &std::fs::read(&new).unwrap()[..4096]).unwrap();
    assert!(look().is_some(), "a truncated new version");
    std::fs::copy(&new, &p).unwrap();
    assert_eq!(look(), None);
    let fresh = Allowed {
        old: None,
        new: hash(&new),
    };
    std::fs::remove_file(&p).unwrap();
    assert_eq!(observe(&p, &fresh, &mut HashMap::new()), None);
}
