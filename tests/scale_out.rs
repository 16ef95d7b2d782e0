//! Several `fts serve` nodes on one S3 bucket (a real Garage, see
//! `common::garage`): what one node writes the others serve at once;
//! concurrent writers of one path leave one whole version; an upload cut
//! on one node is resumed on another; every node presents the same
//! certificate and labels its own metrics.

mod common;
use common::garage::{self, Garage};
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// Nodes serving one prefix of the bucket, with one certificate.
struct Cluster {
    g: &'static Garage,
    prefix: String,
    tmp: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    client: Client,
}

impl Cluster {
    fn new(name: &str) -> Option<Cluster> {
        let g = garage::get()?;
        let tmp = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
        Some(Cluster {
            g,
            prefix: g.fresh_prefix(name),
            tmp,
            cert,
            key,
            client: Client::new(),
        })
    }

    /// Starts node `name` (its own state directory and port).
    fn node(&self, name: &str) -> Server {
        let home = self.tmp.path().join(name);
        std::fs::create_dir_all(&home).unwrap();
        let root = format!("s3://{}/{}", self.g.bucket, self.prefix);
        let mut c = fts_cmd(&home);
        c.args(["--json", "serve", &root, "--listen", "127.0.0.1:0"])
            .args(["--s3-endpoint", &self.g.endpoint, "--node", name])
            .arg("--cert")
            .arg(&self.cert)
            .arg("--key")
            .arg(&self.key);
        for (k, v) in self.g.env() {
            c.env(k, v);
        }
        Server::spawn(c, Path::new(&root), &home)
    }

    fn local(&self, rel: &str) -> PathBuf {
        let p = self.tmp.path().join("local").join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        p
    }

    fn stored(&self, rel: &str) -> Option<Vec<u8>> {
        self.g.read(&format!("{}/{rel}", self.prefix))
    }

    fn uploaded_parts(&self, rel: &str) -> usize {
        self.g.uploaded_parts(&self.prefix, rel)
    }
}

fn field(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"))
}

#[test]
fn what_one_node_writes_the_other_serves() {
    let Some(cl) = Cluster::new("ab") else {
        return;
    };
    let (a, b) = (cl.node("node-a"), cl.node("node-b"));
    assert_eq!(a.fingerprint, b.fingerprint, "nodes show one certificate");
    let src = cl.local("one.bin");
    random_file(&src, 3 * MIB, 1);
    cl.client
        .run(&["put", src.to_str().unwrap(), &a.url("")])
        .ok();
    let back = cl.local("back/one.bin");
    cl.client
        .run(&["get", &b.url("one.bin"), back.to_str().unwrap()])
        .ok();
    assert_eq!(hash(&back), hash(&src));
    assert_eq!(mtime(&back), mtime(&src), "metadata is shared too");

    // A tree synced through B is a no-op sync through A.
    let tree_src = cl.local("tree");
    for i in 0..30u64 {
        random_file(&tree_src.join(format!("d{}/f{i}", i % 3)), 200, i);
    }
    cl.client
        .run(&["sync", tree_src.to_str().unwrap(), &b.url("tree")])
        .ok();
    let j = cl
        .client
        .run(&["--json", "sync", tree_src.to_str().unwrap(), &a.url("tree")])
        .json();
    assert_eq!(field(&j, "files_transferred"), 0, "{j}");

    // Stats and metrics are each node's own, labelled with its name.
    let j = cl.client.run(&["--json", "stats", &a.url("")]).json();
    assert_eq!(j["server"]["node"], "node-a", "{j}");
    assert_eq!(j["totals"]["files_received"], 1, "{j}");
    let jb = cl.client.run(&["--json", "stats", &b.url("")]).json();
    assert_eq!(jb["server"]["node"], "node-b");
    assert_eq!(jb["totals"]["files_received"], 30, "{jb}");
}

#[test]
fn concurrent_puts_of_one_path_leave_one_whole_version() {
    let Some(cl) = Cluster::new("race") else {
        return;
    };
    let (a, b) = (cl.node("node-a"), cl.node("node-b"));
    // Two parts and a bit: each put is a multipart upload of its own.
    let (x, y) = (cl.local("x.bin"), cl.local("y.bin"));
    random_file(&x, 17 * MIB, 10);
    random_file(&y, 17 * MIB, 11);
    let (xb, yb) = (std::fs::read(&x).unwrap(), std::fs::read(&y).unwrap());
    let mut seen = [0; 2];
    for round in 0..20 {
        let run = |src: &Path, server: &Server| {
            let mut c = cl.client.cmd();
            c.args(["put", "-q", src.to_str().unwrap(), &server.url("same.bin")])
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            c.spawn().unwrap()
        };
        let (pa, pb) = (run(&x, &a), run(&y, &b));
        let (oa, ob) = (
            pa.wait_with_output().unwrap(),
            pb.wait_with_output().unwrap(),
        );
        assert!(
            oa.status.success(),
            "{}",
            String::from_utf8_lossy(&oa.stderr)
        );
        assert!(
            ob.status.success(),
            "{}",
            String::from_utf8_lossy(&ob.stderr)
        );
        let got = cl.stored("same.bin").unwrap();
        match () {
            _ if got == xb => seen[0] += 1,
            _ if got == yb => seen[1] += 1,
            _ => panic!("round {round}: the stored file is neither source"),
        }
        // What the nodes serve is that same version, with its own metadata.
        let back = cl.local(&format!("r{round}.bin"));
        cl.client
            .run(&["get", &b.url("same.bin"), back.to_str().unwrap()])
            .ok();
        assert_eq!(std::fs::read(&back).unwrap(), got, "round {round}");
    }
    eprintln!("versions kept: x {} times, y {} times", seen[0], seen[1]);
}

/// Starts a slow put of a 32 MiB file to `rel` through `node` and waits
/// until its first part is in the bucket.
fn slow_put(cl: &Cluster, node: &Server, rel: &str) -> (PathBuf, std::process::Child) {
    let src = cl.local(rel);
    random_file(&src, 32 * MIB, 21);
    let mut c = cl.client.cmd();
    c.args([
        "put",
        "-q",
        "--bwlimit",
        "8M",
        src.to_str().unwrap(),
        &node.url(rel),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while cl.uploaded_parts(rel) < 1 {
        assert!(Instant::now() < deadline, "the upload never got a part in");
        std::thread::sleep(Duration::from_millis(20));
    }
    (src, child)
}

#[test]
fn an_upload_overtaken_by_a_newer_write_is_done_and_the_newer_stays() {
    let Some(cl) = Cluster::new("overtaken") else {
        return;
    };
    let (a, b) = (cl.node("node-a"), cl.node("node-b"));
    let (_, slow) = slow_put(&cl, &a, "big.bin");
    // A write that starts later and ends first: Garage keeps the
    // last-started version and drops the slow one's multipart upload.
    let small = cl.local("small.bin");
    random_file(&small, 100_000, 22);
    cl.client
        .run(&["put", small.to_str().unwrap(), &b.url("big.bin")])
        .ok();
    let out = slow.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "an upload replaced by a newer one is not a failure: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = std::fs::read(&small).unwrap();
    assert_eq!(cl.stored("big.bin").unwrap(), want, "the newer write stays");
    let back = cl.local("back.bin");
    cl.client
        .run(&["get", &a.url("big.bin"), back.to_str().unwrap()])
        .ok();
    assert_eq!(std::fs::read(&back).unwrap(), want);
    assert_eq!(mtime(&back), mtime(&small), "with the newer one's metadata");
    assert_eq!(
        cl.uploaded_parts("big.bin"),
        0,
        "no state of a dropped upload"
    );
}

#[test]
fn an_upload_aborted_in_the_store_fails_and_leaves_nothing() {
    let Some(cl) = Cluster::new("aborted") else {
        return;
    };
    let a = cl.node("node-a");
    let (_, slow) = slow_put(&cl, &a, "big.bin");
    // What a lifecycle rule or another tool does to a running upload.
    let state =
        cl.g.read(&format!(".fts-store/uploads/{}/big.bin", cl.prefix))
            .unwrap();
    let state: Value = serde_json::from_slice(&state).unwrap();
    let id = state["id"].as_str().unwrap().to_string();
    let key = object_store::path::Path::from(format!("{}/big.bin", cl.prefix));
    block_on(async {
        use object_store::multipart::MultipartStore;
        cl.g.client().abort_multipart(&key, &id).await.unwrap()
    });
    let out = slow.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an aborted upload was reported done");
    assert!(err.contains("dropped this upload"), "{err}");
    assert!(cl.stored("big.bin").is_none(), "something was stored");
}

#[test]
fn an_upload_cut_on_one_node_resumes_on_another() {
    let Some(cl) = Cluster::new("resume") else {
        return;
    };
    let a = cl.node("node-a");
    let size = 48 * MIB;
    let src = cl.local("huge.bin");
    random_file(&src, size, 7);
    let mut c = cl.client.cmd();
    c.args([
        "put",
        "-q",
        "--bwlimit",
        "8M",
        src.to_str().unwrap(),
        &a.url(""),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while cl.uploaded_parts("huge.bin") < 2 {
        assert!(
            Instant::now() < deadline,
            "the upload never got two parts in"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Node A dies mid-upload; the client gives up.
    unsafe_kill(a.pid(), "KILL");
    assert_eq!(
        child.wait().unwrap().code(),
        Some(6),
        "a lost server is exit 6"
    );
    assert!(
        cl.stored("huge.bin").is_none(),
        "a cut upload became visible"
    );

    let b = cl.node("node-b");
    let out = cl
        .client
        .run(&["--json", "put", src.to_str().unwrap(), &b.url("")]);
    out.ok();
    let j = out.json();
    assert!(field(&j, "resumed_bytes") >= 16 * MIB as u64, "{j}");
    assert!(field(&j, "wire_bytes_sent") < size as u64, "{j}");
    assert_eq!(cl.stored("huge.bin").unwrap(), std::fs::read(&src).unwrap());
    assert_eq!(cl.uploaded_parts("huge.bin"), 0, "the upload state is gone");
}

#[test]
fn a_bucket_that_cannot_be_used_stops_the_server_at_start() {
    let Some(g) = garage::get() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let serve = |root: &str, endpoint: &str, secret: &str| {
        let mut c = fts_cmd(tmp.path());
        c.args([
            "serve",
            root,
            "--listen",
            "127.0.0.1:0",
            "--s3-endpoint",
            endpoint,
        ])
        .env("AWS_ACCESS_KEY_ID", &g.key_id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_REGION", &g.region);
        run(c)
    };
    let bucket = format!("s3://{}/p", g.bucket);
    // Nothing listens there.
    let o = serve(&bucket, "http://127.0.0.1:1", &g.secret);
    o.code(6);
    assert!(o.stderr.contains("cannot reach s3://"), "{}", o.stderr);
    // A wrong secret: the store refuses the first request.
    let o = serve(&bucket, &g.endpoint, "not-the-secret");
    o.code(6);
    // No such bucket.
    let o = serve("s3://no-such-bucket-here/p", &g.endpoint, &g.secret);
    o.code(6);
    // Malformed: usage errors before any request.
    serve("s3://", &g.endpoint, &g.secret).code(2);
    serve(
        &format!("s3://{}/.fts-store/x", g.bucket),
        &g.endpoint,
        &g.secret,
    )
    .code(2);
}
