//! Soak: many concurrent clients against one server for a bounded time.
//! Each client is a thread running the real binary in a loop over a random
//! mix of `put` (a unique file, checked byte for byte on the server's
//! disk), `get` (of a seeded file, checked byte for byte), `ls --json` and
//! `stats --json` (parsed and checked). Every command must succeed; the
//! server's open file descriptors must come back to their baseline once
//! the clients are gone, and its memory must stay bounded.
//!
//! `SOAK_CLIENTS` (default 24), `SOAK_SECS` (default 8) and `SOAK_SEED`
//! size the run; a summary JSON line goes to `target/hardening/soak.json`
//! for `bench/hardening.sh`.

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest any one command may take on a saturated machine before it
/// counts as a failure (fts's own network timeout is 30 s).
const OP_LIMIT: Duration = Duration::from_secs(120);
/// The server's descriptors may settle a little above the baseline (e.g.
/// a lazily opened log file), but not grow with the number of operations.
const FD_MARGIN: u64 = 8;
const PEAK_RSS_LIMIT_KIB: u64 = 1 << 20;

/// Files every `get` draws from: (name, size).
const SEEDED: &[(&str, usize)] = &[
    ("empty", 0),
    ("one", 1),
    ("small.bin", 4096),
    ("medium.bin", 100_000),
    ("mib.bin", 1 << 20),
    ("big.bin", 3 << 20),
];

/// Raises this process's soft open-file limit (the server raises its own;
/// this is for the hundreds of client processes and their output files).
fn raise_nofile() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

/// A process's memory (VmRSS, VmHWM in KiB), threads and open descriptors.
#[derive(Clone, Copy, Default, Debug)]
struct Sample {
    rss_kib: u64,
    hwm_kib: u64,
    threads: u64,
    fds: u64,
}

fn sample(pid: u32) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Sample {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        threads: field("Threads:"),
        fds,
    })
}

/// The server's descriptor count once it stops changing (two equal
/// readings 250 ms apart), at most `limit` later; else the last reading.
fn settled_fds(pid: u32, limit: Duration, at_most: Option<u64>) -> u64 {
    let deadline = Instant::now() + limit;
    let mut last = sample(pid).expect("server alive").fds;
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let now = sample(pid).expect("server alive").fds;
        let low_enough = at_most.is_none_or(|m| now <= m);
        if (now == last && low_enough) || Instant::now() >= deadline {
            return now;
        }
        last = now;
    }
}

#[derive(Clone, Copy)]
enum Op {
    Put,
    Get,
    Ls,
    Stats,
}

const OPS: [Op; 4] = [Op::Put, Op::Get, Op::Ls, Op::Stats];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
            Op::Ls => "ls",
            Op::Stats => "stats",
        }
    }
}

#[derive(Default)]
struct Counters {
    ops: [AtomicU64; 4],
    bytes: AtomicU64,
    failures: Mutex<Vec<String>>,
}

struct Ctx {
    root: PathBuf,
    port: u16,
    max_clients: u64,
    seeded: Vec<(String, u64, String)>,
    deadline: Instant,
    counters: Counters,
}

impl Ctx {
    fn url(&self, path: &str) -> String {
        format!("fts://127.0.0.1:{}/{}", self.port, path)
    }
}

/// Size of an uploaded file: mostly small, sometimes a few MiB (over the
/// 1 MiB resume threshold, so partial files are exercised).
fn put_size(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..=49 => rng.below(16 << 10) as usize,
        50..=84 => rng.below(256 << 10) as usize,
        _ => rng.below(3 << 20) as usize,
    }
}

/// One operation; `Err` describes what went wrong.
fn one_op(
    ctx: &Ctx,
    c: &Client,
    rng: &mut Rng,
    op: Op,
    id: usize,
    n: u64,
    scratch: &Path,
) -> Result<u64, String> {
    let fail = |out: &Out| {
        Err(format!(
            "exit {}: {}",
            out.code,
            out.stderr.trim_end().lines().last().unwrap_or("")
        ))
    };
    match op {
        Op::Put => {
            let name = format!("c{id}-{n}.bin");
            let src = scratch.join(&name);
            let size = put_size(rng);
            random_file(&src, size, rng.next());
            let out = run_bounded(
                c,
                &["put", "-q", src.to_str().unwrap(), &ctx.url("up")],
                scratch,
                OP_LIMIT,
            );
            if out.code != 0 {
                return fail(&out);
            }
            let there = ctx.root.join("up").join(&name);
            let ok = there.exists() && hash(&there) == hash(&src);
            // Keep the disk bounded over long runs; the bytes were checked.
            let _ = std::fs::remove_file(&there);
            let _ = std::fs::remove_file(&src);
            if !ok {
                return Err(format!("{name}: the server's copy differs"));
            }
            Ok(size as u64)
        }
        Op::Get => {
            let (name, size, want) = &ctx.seeded[rng.below(ctx.seeded.len() as u64) as usize];
            let dst = scratch.join(format!("dl-{n}"));
            let out = run_bounded(
                c,
                &[
                    "get",
                    "-q",
                    &ctx.url(&format!("seed/{name}")),
                    dst.to_str().unwrap(),
                ],
                scratch,
                OP_LIMIT,
            );
            if out.code != 0 {
                return fail(&out);
            }
            let ok = dst.exists() && &hash(&dst) == want;
            let _ = std::fs::remove_file(&dst);
            if !ok {
                return Err(format!("{name}: the downloaded copy differs"));
            }
            Ok(*size)
        }
        Op::Ls => {
            let out = run_bounded(c, &["--json", "ls", &ctx.url("seed")], scratch, OP_LIMIT);
            if out.code != 0 {
                return fail(&out);
            }
            let v: Value = serde_json::from_str(&out.stdout)
                .map_err(|e| format!("ls: not JSON ({e}): {:?}", out.stdout))?;
            let mut got: Vec<(String, u64)> = v
                .as_array()
                .ok_or("ls: not an array")?
                .iter()
                .map(|e| {
                    (
                        e["path"].as_str().unwrap_or("").to_string(),
                        e["size"].as_u64().unwrap_or(u64::MAX),
                    )
                })
                .collect();
            got.sort();
            let mut want: Vec<(String, u64)> = ctx
                .seeded
                .iter()
                .map(|(n, s, _)| (format!("seed/{n}"), *s))
                .collect();
            want.sort();
            if got != want {
                return Err(format!("ls: listed {got:?}"));
            }
            Ok(0)
        }
        Op::Stats => {
            let out = run_bounded(c, &["--json", "stats", &ctx.url("")], scratch, OP_LIMIT);
            if out.code != 0 {
                return fail(&out);
            }
            let v: Value = serde_json::from_str(&out.stdout)
                .map_err(|e| format!("stats: not JSON ({e}): {:?}", out.stdout))?;
            let connected = v["server"]["clients_connected"].as_u64();
            if v["server"]["max_clients"].as_u64() != Some(ctx.max_clients)
                || connected.is_none_or(|c| c > ctx.max_clients)
                || v["totals"]["connections"].as_u64().is_none_or(|c| c == 0)
            {
                return Err(format!("stats: unexpected {v}"));
            }
            Ok(0)
        }
    }
}

fn client_loop(ctx: &Ctx, id: usize, seed: u64) {
    let c = Client::new();
    let scratch = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed ^ (id as u64).wrapping_mul(0x1000_0000_01b3));
    let mut n = 0;
    while Instant::now() < ctx.deadline {
        // put and get carry the data; ls and stats are the cheap reads a
        // monitoring script does.
        let op = match rng.below(100) {
            0..=34 => Op::Put,
            35..=69 => Op::Get,
            70..=84 => Op::Ls,
            _ => Op::Stats,
        };
        n += 1;
        match one_op(ctx, &c, &mut rng, op, id, n, scratch.path()) {
            Ok(bytes) => {
                ctx.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            Err(e) => ctx
                .counters
                .failures
                .lock()
                .unwrap()
                .push(format!("client {id} op {n} {}: {e}", op.name())),
        }
        ctx.counters.ops[op as usize].fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn many_clients_for_a_while() {
    let clients = env_u64("SOAK_CLIENTS", 24) as usize;
    let secs = env_u64("SOAK_SECS", 8);
    let seed = env_u64("SOAK_SEED", 0x50A4);
    let max_clients = (clients as u64 + 16).max(256);
    let nofile = raise_nofile();
    println!("soak: {clients} clients for {secs} s, SOAK_SEED={seed}, open-file limit {nofile}");

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let shome = tmp.path().join("server-home");
    std::fs::create_dir_all(root.join("up")).unwrap();
    std::fs::create_dir_all(&shome).unwrap();
    let mut seeded = Vec::new();
    for (i, (name, size)) in SEEDED.iter().enumerate() {
        let p = root.join("seed").join(name);
        random_file(&p, *size, 1000 + i as u64);
        seeded.push((name.to_string(), *size as u64, hash(&p)));
    }
    let server = Server::start(&root, &shome, &["--max-clients", &max_clients.to_string()]);
    let pid = server.pid();

    // The first connections open what the server keeps open for good
    // (event log, ...): measure the baseline after them.
    let warm = Client::new();
    warm.run(&["ls", &server.url("")]).ok();
    warm.run(&["--json", "stats", &server.url("")]).ok();
    let fds_before = settled_fds(pid, Duration::from_secs(10), None);

    let ctx = Arc::new(Ctx {
        root: root.clone(),
        port: server.port,
        max_clients,
        seeded,
        deadline: Instant::now() + Duration::from_secs(secs),
        counters: Counters::default(),
    });

    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(Mutex::new(Sample::default()));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(s) = sample(pid) {
                    let mut p = peak.lock().unwrap();
                    p.rss_kib = p.rss_kib.max(s.rss_kib);
                    p.hwm_kib = p.hwm_kib.max(s.hwm_kib);
                    p.threads = p.threads.max(s.threads);
                    p.fds = p.fds.max(s.fds);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|id| {
            let ctx = ctx.clone();
            std::thread::Builder::new()
                .name(format!("soak-{id}"))
                .stack_size(256 << 10)
                .spawn(move || client_loop(&ctx, id, seed))
                .unwrap()
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();

    let fds_after = settled_fds(pid, Duration::from_secs(20), Some(fds_before + FD_MARGIN));
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let end = sample(pid).expect("the server is still running");
    let peak = *peak.lock().unwrap();
    let peak_rss = peak.hwm_kib.max(end.hwm_kib);

    let c = &ctx.counters;
    let ops: serde_json::Map<String, Value> = OPS
        .iter()
        .map(|op| {
            (
                op.name().to_string(),
                json!(c.ops[*op as usize].load(Ordering::Relaxed)),
            )
        })
        .collect();
    let total: u64 = c.ops.iter().map(|o| o.load(Ordering::Relaxed)).sum();
    let failures = c.failures.lock().unwrap().clone();
    let summary = json!({
        "clients": clients,
        "secs": secs,
        "elapsed_s": (elapsed * 10.0).round() / 10.0,
        "seed": seed,
        "ops": total,
        "ops_by_kind": ops,
        "failures": failures.len(),
        "bytes": c.bytes.load(Ordering::Relaxed),
        "peak_rss_kib": peak_rss,
        "end_rss_kib": end.rss_kib,
        "peak_threads": peak.threads,
        "fds_before": fds_before,
        "fds_peak": peak.fds,
        "fds_after": fds_after,
        "nofile_limit": nofile,
    });
    let path = write_hardening_report("soak.json", &summary);
    println!("{summary}\n(written to {})", path.display());

    for f in &failures {
        println!("FAILURE {f}");
    }
    assert!(
        failures.is_empty(),
        "{} of {total} operations failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    for op in OPS {
        assert!(
            c.ops[op as usize].load(Ordering::Relaxed) > 0,
            "no {} ran in {secs} s",
            op.name()
        );
    }
    assert!(
        fds_after <= fds_before + FD_MARGIN,
        "the server holds {fds_after} descriptors after the clients left, {fds_before} before"
    );
    assert!(
        peak_rss < PEAK_RSS_LIMIT_KIB,
        "server peak RSS {peak_rss} KiB"
    );
    // It still serves.
    warm.run(&["ls", &server.url("")]).ok();
}
