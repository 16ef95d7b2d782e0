//! The same client commands against each storage backend: a local
//! directory and an S3 bucket (a real Garage, see `common::garage`). Each
//! test body runs once per backend (`both!`); what is stored is checked
//! straight on the backend (the directory, or the bucket through its own
//! S3 client), never through fts.

mod common;
use common::garage::{self, Garage};
use common::wan::{WanOpts, WanProxy};
use common::*;
use futures_util::StreamExt;
use object_store::{path::Path as Key, ObjectStore, ObjectStoreExt};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const ADMIN: &str = "adm1n-pw";

#[derive(Clone, Copy, Debug)]
enum Kind {
    Local,
    S3,
}

/// Where a share's files are, for checks that bypass fts.
enum Backend {
    Local(PathBuf),
    S3 { g: &'static Garage, prefix: String },
}

/// A server on one backend, and its client.
struct Share {
    s: Setup,
    b: Backend,
}

fn field(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"))
}

/// `fts serve` of `root` (a directory or an s3:// URL) with the backend's
/// environment.
fn serve(tmp: &Path, root: &str, g: Option<&Garage>, extra: &[&str]) -> Server {
    let home = tmp.join("server-home");
    std::fs::create_dir_all(&home).unwrap();
    let mut c = fts_cmd(&home);
    c.args(["--json", "serve", root, "--listen", "127.0.0.1:0"]);
    if let Some(g) = g {
        c.args(["--s3-endpoint", &g.endpoint]);
        for (k, v) in g.env() {
            c.env(k, v);
        }
    }
    c.args(extra);
    Server::spawn(c, Path::new(root), &home)
}

impl Share {
    /// `None` when the backend is not available here (said on stderr).
    fn start(kind: Kind, name: &str, extra: &[&str]) -> Option<Share> {
        let tmp = tempfile::tempdir().unwrap();
        let (root, b, g) = match kind {
            Kind::Local => {
                let root = tmp.path().join("root");
                std::fs::create_dir_all(&root).unwrap();
                (
                    root.to_str().unwrap().to_string(),
                    Backend::Local(root),
                    None,
                )
            }
            Kind::S3 => {
                let g = garage::get()?;
                let prefix = g.fresh_prefix(name);
                (
                    format!("s3://{}/{prefix}", g.bucket),
                    Backend::S3 { g, prefix },
                    Some(g),
                )
            }
        };
        // Every share has an admin password, for `rm`.
        let adm = secret_file(tmp.path(), "adm", ADMIN);
        let mut args = vec!["--admin-password-file", adm.to_str().unwrap()];
        args.extend_from_slice(extra);
        let server = serve(tmp.path(), &root, g, &args);
        Some(Share {
            s: Setup {
                tmp,
                server,
                client: Client::new(),
            },
            b,
        })
    }

    fn url(&self, rel: &str) -> String {
        self.s.url(rel)
    }

    fn run(&self, args: &[&str]) -> Out {
        self.s.run(args)
    }

    /// The stored bytes of `rel`, if there is a file.
    fn stored(&self, rel: &str) -> Option<Vec<u8>> {
        match &self.b {
            Backend::Local(root) => std::fs::read(root.join(rel)).ok(),
            Backend::S3 { g, prefix } => g.read(&format!("{prefix}/{rel}")),
        }
    }

    /// Every stored file, relative, with its BLAKE3.
    fn files(&self) -> Vec<(String, String)> {
        match &self.b {
            Backend::Local(root) => local_files(root),
            Backend::S3 { g, prefix } => block_on(async {
                let c = g.client();
                let base = Key::from(prefix.as_str());
                let mut l = c.list(Some(&base));
                let mut out = Vec::new();
                while let Some(m) = l.next().await {
                    let m = m.unwrap();
                    let rel = m.location.as_ref()[prefix.len() + 1..].to_string();
                    let bytes = c.get(&m.location).await.unwrap().bytes().await.unwrap();
                    out.push((rel, blake3::hash(&bytes).to_hex().to_string()));
                }
                out.sort();
                out
            }),
        }
    }

    /// Bytes an interrupted upload of `rel` left for a resume.
    fn partial_len(&self, rel: &str) -> u64 {
        match &self.b {
            Backend::Local(root) => {
                let part = fts::engine::partial::part_path(&root.join(rel));
                std::fs::metadata(part).map(|m| m.len()).unwrap_or(0)
            }
            Backend::S3 { g, prefix } => g.uploaded_parts(prefix, rel) as u64 * 8 * MIB as u64,
        }
    }
}

/// Files of `dir` (relative, with BLAKE3), as `Share::files` gives them.
fn local_files(dir: &Path) -> Vec<(String, String)> {
    tree(dir)
        .into_iter()
        .filter(|(p, _)| !p.ends_with('/') && !dir.join(p).is_symlink())
        .collect()
}

/// A test body run once per backend.
macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn local() {
                let body: fn(Share) = $body;
                body(Share::start(Kind::Local, stringify!($name), &[]).unwrap());
            }
            #[test]
            fn s3() {
                let body: fn(Share) = $body;
                if let Some(s) = Share::start(Kind::S3, stringify!($name), &[]) {
                    body(s);
                }
            }
        }
    };
}

both!(put_and_get_keep_bytes_times_and_modes, |sh| {
    // Empty, small, one part exactly, several parts with a short last one.
    for (name, size) in [
        ("empty", 0),
        ("small.txt", 1000),
        ("eight.bin", 8 * MIB),
        ("big.bin", 20 * MIB + 123),
    ] {
        let src = sh.s.local(&format!("up/{name}"));
        random_file(&src, size, size as u64 + 1);
        set_mtime(&src, 1_600_000_000);
        std::fs::set_permissions(&src, std::os::unix::fs::PermissionsExt::from_mode(0o640))
            .unwrap();
        let j = sh
            .run(&["--json", "put", src.to_str().unwrap(), &sh.url("")])
            .json();
        assert_eq!(field(&j, "files_transferred"), 1, "{name}: {j}");
        assert_eq!(
            sh.stored(name).as_deref(),
            Some(std::fs::read(&src).unwrap().as_slice()),
            "{name}: stored bytes differ"
        );
        let back = sh.s.local(&format!("down/{name}"));
        let j = sh
            .run(&["--json", "get", &sh.url(name), back.to_str().unwrap()])
            .json();
        assert_eq!(field(&j, "files_transferred"), 1, "{name}: {j}");
        assert_eq!(hash(&back), hash(&src), "{name}: downloaded bytes differ");
        assert_eq!(mtime(&back), mtime(&src), "{name}: mtime not kept");
        assert_eq!(mode(&back), 0o640, "{name}: mode not kept");
    }
    // A missing file and a missing directory are clear errors.
    let o = sh.run(&[
        "get",
        &sh.url("nope.bin"),
        sh.s.local("x").to_str().unwrap(),
    ]);
    o.code(3);
    let src = sh.s.local("up/small.txt");
    sh.run(&["put", src.to_str().unwrap(), &sh.url("no/such/dir/")])
        .code(3);
});

both!(sync_mirrors_a_tree_and_skips_what_is_unchanged, |sh| {
    let src = sh.s.local("tree");
    for i in 0..60u64 {
        let p = src.join(format!("d{}/e{}/f{i}.dat", i % 4, i % 3));
        random_file(&p, 100 + (i as usize * 37) % 3000, i);
        set_mtime(&p, 1_600_000_000 + i as i64);
    }
    random_file(&src.join("big.bin"), 9 * MIB, 99);
    std::fs::create_dir_all(src.join("empty/inner")).unwrap();
    std::os::unix::fs::symlink("d1/e1/f1.dat", src.join("link")).unwrap();
    let j = sh
        .run(&["--json", "sync", src.to_str().unwrap(), &sh.url("m")])
        .json();
    assert_eq!(field(&j, "files_transferred"), 61, "{j}");
    let want: Vec<(String, String)> = local_files(&src)
        .into_iter()
        .map(|(p, h)| (format!("m/{p}"), h))
        .collect();
    let mut got = sh.files();
    got.retain(|(p, _)| p.starts_with("m/"));
    assert_eq!(got, want);

    // Unchanged: nothing moves.
    let j = sh
        .run(&["--json", "sync", src.to_str().unwrap(), &sh.url("m")])
        .json();
    assert_eq!(field(&j, "files_transferred"), 0, "{j}");

    // One change, one new file.
    let p = src.join("d1/e1/f1.dat");
    random_file(&p, 500, 1234);
    set_mtime(&p, 1_700_000_000);
    random_file(&src.join("new/added.bin"), 10, 5);
    let j = sh
        .run(&["--json", "sync", src.to_str().unwrap(), &sh.url("m")])
        .json();
    assert_eq!(field(&j, "files_transferred"), 2, "{j}");

    // Pulled back: the same tree, with the empty directory and the link.
    let back = sh.s.local("back");
    sh.run(&["sync", &sh.url("m"), back.to_str().unwrap()]).ok();
    assert_eq!(tree(&back), tree(&src));
    assert!(back.join("empty/inner").is_dir());
    assert_eq!(
        std::fs::read_link(back.join("link")).unwrap(),
        Path::new("d1/e1/f1.dat")
    );
    assert_eq!(
        mtime(&back.join("d3/e0/f3.dat")),
        mtime(&src.join("d3/e0/f3.dat"))
    );
});

both!(small_edits_cross_as_deltas_both_ways, |sh| {
    let size = 24 * MIB;
    let local = sh.s.local("big.bin");
    random_file(&local, size, 42);
    sh.run(&["put", "-q", local.to_str().unwrap(), &sh.url("")])
        .ok();
    for at in [1_000u64, 12_000_000, 20_000_000] {
        poke(&local, at, b"0123456789");
    }
    let j = sh
        .run(&["--json", "put", local.to_str().unwrap(), &sh.url("")])
        .json();
    assert!(field(&j, "wire_bytes_sent") < size as u64 / 20, "{j}");
    assert!(field(&j, "matched_bytes") > size as u64 / 2, "{j}");
    assert_eq!(
        sh.stored("big.bin").unwrap(),
        std::fs::read(&local).unwrap()
    );
    // Download: the server's copy is the newer one, the local one the base.
    let other = sh.s.local("other.bin");
    std::fs::copy(&local, &other).unwrap();
    poke(&other, 5_000_000, b"abcdefghij");
    sh.run(&["put", "-q", other.to_str().unwrap(), &sh.url("big.bin")])
        .ok();
    let j = sh
        .run(&["--json", "get", &sh.url("big.bin"), local.to_str().unwrap()])
        .json();
    assert!(field(&j, "wire_bytes_received") < size as u64 / 20, "{j}");
    assert_eq!(hash(&local), hash(&other));
});

both!(a_killed_upload_resumes, |sh| {
    let size = 40 * MIB;
    let src = sh.s.local("huge.bin");
    random_file(&src, size, 7);
    let mut c = sh.s.client.cmd();
    c.args([
        "put",
        "-q",
        "--bwlimit",
        "8M",
        src.to_str().unwrap(),
        &sh.url(""),
    ])
    .stdout(Stdio::null());
    let mut child = c.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sh.partial_len("huge.bin") < 16 * MIB as u64 {
        assert!(Instant::now() < deadline, "the upload never got far");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        sh.stored("huge.bin").is_none(),
        "a cut upload became visible"
    );
    let j = sh
        .run(&["--json", "put", src.to_str().unwrap(), &sh.url("")])
        .json();
    assert!(field(&j, "resumed_bytes") >= 16 * MIB as u64, "{j}");
    assert!(field(&j, "wire_bytes_sent") < size as u64, "{j}");
    assert_eq!(sh.stored("huge.bin").unwrap(), std::fs::read(&src).unwrap());
});

both!(ls_and_rm_see_what_was_put, |sh| {
    let src = sh.s.local("t");
    random_file(&src.join("a/one.txt"), 10, 1);
    random_file(&src.join("a/b/two.txt"), 20, 2);
    random_file(&src.join("top.txt"), 30, 3);
    sh.run(&["sync", src.to_str().unwrap(), &sh.url("t")]).ok();
    let names = |args: &[&str]| -> Vec<(String, String, u64)> {
        let mut a = vec!["--json", "ls"];
        a.extend_from_slice(args);
        let ls = sh.run(&a).json();
        let mut v: Vec<_> = ls
            .as_array()
            .unwrap_or_else(|| panic!("{ls}"))
            .iter()
            .map(|e| {
                (
                    e["path"].as_str().unwrap().to_string(),
                    e["kind"].as_str().unwrap().to_string(),
                    field(e, "size"),
                )
            })
            .collect();
        // The order of a recursive listing is the backend's.
        v.sort();
        v
    };
    let entry = |p: &str, k: &str, n: u64| (p.to_string(), k.to_string(), n);
    assert_eq!(
        names(&[&sh.url("t")]),
        [entry("t/a", "dir", 0), entry("t/top.txt", "file", 30)]
    );
    assert_eq!(
        names(&["-r", &sh.url("t")]),
        [
            entry("t/a", "dir", 0),
            entry("t/a/b", "dir", 0),
            entry("t/a/b/two.txt", "file", 20),
            entry("t/a/one.txt", "file", 10),
            entry("t/top.txt", "file", 30),
        ]
    );
    sh.run(&["ls", &sh.url("t/nope")]).code(3);

    let admin = [("FTS_ADMIN_PASSWORD", ADMIN)];
    // Without the admin password, nothing goes.
    sh.run(&["rm", &sh.url("t/top.txt")]).code(4);
    assert!(sh.stored("t/top.txt").is_some());
    sh.s.client
        .run_env(&["rm", &sh.url("t/top.txt")], &admin)
        .ok();
    assert!(sh.stored("t/top.txt").is_none());
    // A directory needs -r; then all of it goes.
    sh.s.client.run_env(&["rm", &sh.url("t/a")], &admin).code(2);
    let j =
        sh.s.client
            .run_env(&["--json", "rm", "-r", &sh.url("t/a")], &admin)
            .json();
    assert_eq!(
        (j["files_deleted"].as_u64(), j["dirs_deleted"].as_u64()),
        (Some(2), Some(2)),
        "{j}"
    );
    assert!(sh.files().is_empty(), "{:?}", sh.files());
    assert_eq!(names(&[&sh.url("t")]), []);
    sh.run(&["ls", &sh.url("t/a")]).code(3);
});

both!(web_downloads_ranges_and_uploads, |sh| {
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let src = sh.s.local("w.bin");
    std::fs::write(&src, &data).unwrap();
    sh.run(&["put", src.to_str().unwrap(), &sh.url("")]).ok();
    let r = https(&sh.s, "GET", "/files/w.bin", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    let r = https(
        &sh.s,
        "GET",
        "/files/w.bin",
        &[("Range", "bytes=100-199")],
        b"",
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[100..200]);
    let r = https(&sh.s, "GET", "/files/w.bin", &[("Range", "bytes=-10")], b"");
    assert_eq!(r.body, &data[data.len() - 10..]);
    let r = https(
        &sh.s,
        "PUT",
        "/files/up%20load.bin",
        &[],
        &data[..1_000_000],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(sh.stored("up load.bin").unwrap(), &data[..1_000_000]);
    assert_eq!(https(&sh.s, "GET", "/files/nope", &[], b"").status, 404);
});

/// Read-only refuses every write, on any backend.
fn read_only(kind: Kind) {
    let Some(sh) = Share::start(kind, "ro", &["--read-only"]) else {
        return;
    };
    let src = sh.s.local("x.txt");
    std::fs::write(&src, b"x").unwrap();
    sh.run(&["put", src.to_str().unwrap(), &sh.url("")]).code(5);
    assert!(sh.stored("x.txt").is_none());
    assert_eq!(https(&sh.s, "PUT", "/files/x.txt", &[], b"x").status, 403);
}

#[test]
fn read_only_local() {
    read_only(Kind::Local);
}

#[test]
fn read_only_s3() {
    read_only(Kind::S3);
}

#[test]
fn s3_transfers_through_a_slow_link() {
    let Some(sh) = Share::start(Kind::S3, "wan", &[]) else {
        return;
    };
    let proxy = WanProxy::start(sh.s.server.addr.parse().unwrap(), WanOpts::wan(25, 4 << 20));
    let url = |p: &str| format!("fts://{}/{p}", proxy.host_port());
    let src = sh.s.local("w.bin");
    random_file(&src, 10 * MIB, 5);
    sh.run(&["put", src.to_str().unwrap(), &url("w.bin")]).ok();
    assert_eq!(sh.stored("w.bin").unwrap(), std::fs::read(&src).unwrap());
    let back = sh.s.local("w.back");
    sh.run(&["get", &url("w.bin"), back.to_str().unwrap()]).ok();
    assert_eq!(hash(&back), hash(&src));
}

#[test]
fn s3_gigabyte_put_and_get_in_bounded_server_memory() {
    let Some(sh) = Share::start(Kind::S3, "gib", &[]) else {
        return;
    };
    let size = 1 << 30;
    let src = sh.s.local("gib.bin");
    random_file(&src, size, 77);
    let want = hash(&src);
    let j = sh
        .run(&["--json", "put", src.to_str().unwrap(), &sh.url("")])
        .json();
    assert_eq!(field(&j, "bytes_transferred"), size as u64, "{j}");
    let back = sh.s.local("back/gib.bin");
    sh.run(&["get", &sh.url("gib.bin"), back.to_str().unwrap()])
        .ok();
    assert_eq!(hash(&back), want);
    std::fs::remove_file(&back).unwrap();
    let peak = sh.s.server.peak_rss_kib();
    assert!(
        peak < 64 * 1024,
        "server peak RSS {peak} KiB is not under 64 MiB"
    );
    eprintln!("server peak RSS for a 1 GiB put and get through S3: {peak} KiB");
}
