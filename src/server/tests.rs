//! The session and its dispatch, driven over an in-memory pipe against an
//! in-memory store: put, get, delta both ways, resume, ls and rm work with
//! no filesystem below the store boundary.

use super::{session, ServerOptions, Shared};
use crate::auth::Secret;
use crate::engine::{blocks, delta, partial};
use crate::model::{EntryKind, Meta};
use crate::proto::{frames, FrameReader, FrameWriter, GetResume, Msg, Resume, PROTOCOL_VERSION};
use crate::store::memory::MemStore;
use crate::transfer::{self, Dest, Received, SendOptions};
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::watch;

type R = FrameReader<ReadHalf<DuplexStream>>;
type W = FrameWriter<WriteHalf<DuplexStream>>;

const ADMIN: &str = "admin password for the tests";
const SEND: SendOptions = SendOptions { compress: None };

fn data(n: usize, seed: u64) -> Vec<u8> {
    crate::engine::delta::tests::rand_bytes(n, seed)
}

fn meta_of(d: &[u8], mtime: i64) -> Meta {
    Meta {
        size: d.len() as u64,
        mtime,
        mtime_ns: 0,
        mode: 0o640,
    }
}

struct Server {
    store: MemStore,
    shared: Arc<Shared>,
    _stop: watch::Sender<bool>,
    stop: watch::Receiver<bool>,
    _state: tempfile::TempDir,
}

impl Server {
    fn new() -> Server {
        let store = MemStore::new();
        let mut opts = ServerOptions::new(Arc::new(store.clone()));
        opts.admin_password = Some(Secret::new(ADMIN).unwrap());
        opts.io_timeout = Duration::from_secs(5);
        // The certificate is never used over a pipe; Shared wants one.
        let state = tempfile::tempdir().unwrap();
        let id = crate::tls::Identity::load_or_create(state.path()).unwrap();
        let shared = Shared::new(opts, &id, Arc::new(|_: &[super::Logged]| {})).unwrap();
        let (tx, rx) = watch::channel(false);
        Server {
            store,
            shared,
            _stop: tx,
            stop: rx,
            _state: state,
        }
    }

    /// A session over a fresh pipe, past the version handshake.
    async fn connect(&self) -> (R, W) {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let peer = "127.0.0.1:9".parse().unwrap();
        tokio::spawn(session::serve(
            self.shared.clone(),
            theirs,
            peer,
            None,
            self.stop.clone(),
        ));
        let (r, w) = tokio::io::split(ours);
        let (mut r, mut w) = frames(r, w, Duration::from_secs(5));
        r.accept_pings();
        w.msg(&Msg::Hello {
            version: PROTOCOL_VERSION,
            client: "test".into(),
            name: None,
            timeout_ms: None,
        })
        .await
        .unwrap();
        w.flush().await.unwrap();
        assert!(matches!(r.read_msg().await.unwrap(), Msg::Welcome { .. }));
        (r, w)
    }
}

async fn ask(r: &mut R, w: &mut W, m: Msg) -> Msg {
    w.msg(&m).await.unwrap();
    w.flush().await.unwrap();
    r.read_msg().await.unwrap()
}

/// Uploads `content` as `path` (whole, from `resume`, or as a delta
/// against `base`); the server's reply.
async fn put(
    r: &mut R,
    w: &mut W,
    id: u64,
    path: &str,
    content: &[u8],
    resume: Option<Resume>,
    base: Option<(Meta, Vec<u8>)>,
) -> Msg {
    let meta = meta_of(content, 1_700_000_000);
    let offset = resume.as_ref().map_or(0, |r| r.offset);
    w.msg(&Msg::Put {
        id,
        path: path.into(),
        meta,
        resume,
        delta_base: base.as_ref().map(|(m, _)| *m),
    })
    .await
    .unwrap();
    let src = Cursor::new(content.to_vec());
    let sent = match base {
        Some((_, sig)) if blocks::is_blocks(&sig) => {
            let sig = blocks::parse(sig).unwrap();
            let plan = blocks::plan(&mut Cursor::new(content), meta.size, &sig).unwrap();
            let planned = crate::engine::io::Source::version(&src);
            transfer::send_planned(w, src, Arc::new(Planned(plan)), planned, SEND, &|_| {}).await
        }
        Some((_, sig)) => {
            let sig = delta::parse_signature(sig).unwrap();
            transfer::send_delta(w, src, meta.size, sig, SEND, &|_| {}).await
        }
        None => {
            let mut prefix = blake3::Hasher::new();
            prefix.update(&content[..offset as usize]);
            transfer::send_file(w, src, None, offset, meta.size, prefix, SEND, &|_| {}).await
        }
    };
    let (hash, _) = sent.unwrap_or_else(|_| panic!("sending {path} failed"));
    ask(r, w, Msg::PutEnd { id, hash }).await
}

struct Planned(blocks::Plan);

impl AsRef<blocks::Plan> for Planned {
    fn as_ref(&self) -> &blocks::Plan {
        &self.0
    }
}

/// Downloads `path` (with `have` as the old copy for a delta, or its
/// first bytes to resume after); the rebuilt content and whether the
/// server sent a delta.
async fn get(
    r: &mut R,
    w: &mut W,
    id: u64,
    path: &str,
    have: Option<(&[u8], bool)>,
) -> (Vec<u8>, bool) {
    get_with(r, w, id, path, have, false).await
}

/// Sends a `Get` (with the signature's bytes after it).
async fn send_get(w: &mut W, id: u64, path: &str, resume: Option<GetResume>, sig: Option<&[u8]>) {
    w.msg(&Msg::Get {
        id,
        path: path.into(),
        resume,
        signature: sig.map(|s| s.len() as u64),
    })
    .await
    .unwrap();
    if let Some(s) = sig {
        w.blob(s).await.unwrap();
    }
    w.flush().await.unwrap();
}

/// [`get`], with an rsync signature instead of a block one when `rolling`.
async fn get_with(
    r: &mut R,
    w: &mut W,
    id: u64,
    path: &str,
    have: Option<(&[u8], bool)>,
    rolling: bool,
) -> (Vec<u8>, bool) {
    let (resume, sig, prefix) = match have {
        Some((old, true)) => {
            let sig = blocks::sign(&mut Cursor::new(old.to_vec()), old.len() as u64, rolling);
            (None, Some(sig.unwrap()), Vec::new())
        }
        Some((part, false)) => {
            let (hash, _) =
                partial::hash_prefix(&mut Cursor::new(part.to_vec()), part.len() as u64).unwrap();
            let st = ask(r, w, Msg::Stat { path: path.into() }).await;
            let Msg::StatReply { entry: Some(e) } = st else {
                panic!("{st:?}")
            };
            let resume = GetResume {
                offset: part.len() as u64,
                prefix_hash: hash,
                source: e.meta(),
            };
            (Some(resume), None, part.to_vec())
        }
        None => (None, None, Vec::new()),
    };
    send_get(w, id, path, resume, sig.as_deref()).await;
    let Msg::FileHeader {
        meta,
        offset,
        delta: is_delta,
        ..
    } = r.read_msg().await.unwrap()
    else {
        panic!("no file header");
    };
    let out = Arc::new(std::sync::Mutex::new(prefix));
    struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut dest = Dest::new(Shared(out.clone()));
    if let (true, Some((old, _))) = (is_delta, have) {
        dest = dest.with_base(MemBase(old.to_vec()));
    }
    let expect = if is_delta {
        meta.size
    } else {
        meta.size - offset
    };
    let mut saved = 0;
    let got = transfer::receive(r, Some(dest), expect, &|_| {}, &mut saved)
        .await
        .unwrap();
    assert!(matches!(got, Received::Complete(Ok(_))), "{got:?}");
    assert!(matches!(r.read_msg().await.unwrap(), Msg::FileEnd { .. }));
    let bytes = out.lock().unwrap().clone();
    (bytes, is_delta)
}

/// An old copy in memory, for the client side of a delta download.
struct MemBase(Vec<u8>);

impl crate::engine::io::ReadAt for MemBase {
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.0.len() as u64)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let o = offset as usize;
        buf.copy_from_slice(&self.0[o..o + buf.len()]);
        Ok(())
    }
}

#[tokio::test]
async fn put_get_ls_and_rm_through_the_memory_store() {
    let s = Server::new();
    let (mut r, mut w) = s.connect().await;
    assert!(matches!(
        ask(
            &mut r,
            &mut w,
            Msg::Mkdir {
                id: 1,
                path: "d".into()
            }
        )
        .await,
        Msg::Done { id: 1 }
    ));
    let small = data(3000, 1);
    let big = data(3 << 20, 2);
    assert!(matches!(
        put(&mut r, &mut w, 2, "d/small", &small, None, None).await,
        Msg::Done { id: 2 }
    ));
    assert!(matches!(
        put(&mut r, &mut w, 3, "d/big", &big, None, None).await,
        Msg::Done { id: 3 }
    ));
    assert_eq!(s.store.file("d/small").unwrap(), small);
    assert_eq!(s.store.file("d/big").unwrap(), big);

    let (got, is_delta) = get(&mut r, &mut w, 4, "d/big", None).await;
    assert!(!is_delta);
    assert_eq!(got, big);

    w.msg(&Msg::List {
        path: "".into(),
        recursive: true,
        hashes: true,
    })
    .await
    .unwrap();
    w.flush().await.unwrap();
    let mut listed = Vec::new();
    loop {
        match r.read_msg().await.unwrap() {
            Msg::ListBatch { entries } => listed.extend(entries),
            Msg::ListEnd => break,
            m => panic!("{m:?}"),
        }
    }
    let names: Vec<_> = listed.iter().map(|e| (e.path.as_str(), e.kind)).collect();
    assert_eq!(
        names,
        [
            ("d", EntryKind::Dir),
            ("d/big", EntryKind::File),
            ("d/small", EntryKind::File)
        ]
    );
    assert_eq!(
        listed[2].hash.as_deref(),
        Some(blake3::hash(&small).to_hex().as_str())
    );
    assert_eq!(listed[2].mode, 0o640);

    // A sync's directory question: the same digest settles it in one
    // reply; another digest gets the entries; a file is not a directory.
    let mut digest = crate::model::DirDigest::default();
    listed[1..].iter().for_each(|e| digest.add(e));
    let list_dir = |digest: Option<String>| Msg::ListDir {
        path: "d".into(),
        digest,
        hashes: false,
    };
    w.msg(&list_dir(Some(digest.finish()))).await.unwrap();
    w.msg(&list_dir(Some("0".repeat(32)))).await.unwrap();
    w.msg(&Msg::ListDir {
        path: "d/big".into(),
        digest: None,
        hashes: false,
    })
    .await
    .unwrap();
    w.flush().await.unwrap();
    assert!(matches!(r.read_msg().await.unwrap(), Msg::DirSame));
    let Msg::ListBatch { entries } = r.read_msg().await.unwrap() else {
        panic!("expected the entries of d");
    };
    assert_eq!(entries.len(), 2);
    assert!(matches!(r.read_msg().await.unwrap(), Msg::ListEnd));
    assert!(matches!(
        r.read_msg().await.unwrap(),
        Msg::Error {
            kind: crate::error::ErrorKind::NotFound,
            ..
        }
    ));

    // rm needs the admin password.
    let refused = ask(
        &mut r,
        &mut w,
        Msg::Remove {
            id: 5,
            path: "d".into(),
            recursive: true,
        },
    )
    .await;
    assert!(
        matches!(refused, Msg::Error { id: Some(5), .. }),
        "{refused:?}"
    );
    let ok = ask(
        &mut r,
        &mut w,
        Msg::Auth {
            password: None,
            admin_password: Some(ADMIN.into()),
        },
    )
    .await;
    assert!(matches!(ok, Msg::AuthOk { admin: true }), "{ok:?}");
    let removed = ask(
        &mut r,
        &mut w,
        Msg::Remove {
            id: 6,
            path: "d".into(),
            recursive: true,
        },
    )
    .await;
    assert!(
        matches!(
            removed,
            Msg::Removed {
                id: 6,
                files: 2,
                dirs: 1
            }
        ),
        "{removed:?}"
    );
    assert!(s.store.file("d/big").is_none());
}

#[tokio::test]
async fn deltas_both_ways_through_the_memory_store() {
    let s = Server::new();
    let old = data(2 << 20, 3);
    let mut new = old.clone();
    new[70_000..70_010].copy_from_slice(b"0123456789");
    new.extend_from_slice(&data(5000, 4));
    let (mut r, mut w) = s.connect().await;

    // Upload: the probe brings the server's signature, a block one or,
    // when asked, a rolling one.
    for rolling in [false, true] {
        s.store.put_file("f", &old, 1_600_000_000);
        let reply = ask(
            &mut r,
            &mut w,
            Msg::Probe {
                id: 1,
                path: "f".into(),
                source: Some(meta_of(&new, 1_700_000_000)),
                rolling,
            },
        )
        .await;
        let Msg::ProbeReply {
            signature: true, ..
        } = reply
        else {
            panic!("{reply:?}")
        };
        let Msg::SigReply { base, len, .. } = r.read_msg().await.unwrap() else {
            panic!("no signature")
        };
        let sig = r.read_blob(len, delta::MAX_SIGNATURE).await.unwrap();
        assert_eq!(blocks::is_blocks(&sig), !rolling);
        assert!((sig.len() as u64) < old.len() as u64 / 50);
        let done = put(&mut r, &mut w, 2, "f", &new, None, Some((base, sig))).await;
        assert!(matches!(done, Msg::Done { id: 2 }), "{done:?}");
        let got = s.store.file("f").unwrap();
        assert!(
            got == new,
            "rolling {rolling}: {} bytes, want {}",
            got.len(),
            new.len()
        );
    }

    // Download: the client's old copy is the base, with either signature.
    for (id, rolling) in [(3, false), (4, true)] {
        let (got, is_delta) = get_with(&mut r, &mut w, id, "f", Some((&old, true)), rolling).await;
        assert!(is_delta);
        assert!(got == new, "rolling {rolling}: rebuilt file differs");
    }
    // Data that moved: a block signature is answered with Redo (ask with
    // an rsync signature), which then finds the moved blocks.
    let mut moved = b"inserted".to_vec();
    moved.extend_from_slice(&old);
    s.store.put_file("f", &moved, 1_700_000_000);
    let sig = blocks::signature(&mut Cursor::new(old.clone()), old.len() as u64).unwrap();
    send_get(&mut w, 5, "f", None, Some(&sig)).await;
    let reply = r.read_msg().await.unwrap();
    assert!(matches!(reply, Msg::Redo { id: 5, .. }), "{reply:?}");
    let (got, is_delta) = get_with(&mut r, &mut w, 6, "f", Some((&old, true)), true).await;
    assert!(is_delta && got == moved);
}

#[tokio::test]
async fn a_cut_upload_resumes_and_a_download_resumes() {
    let s = Server::new();
    let content = data(4 << 20, 5);
    let meta = meta_of(&content, 1_700_000_000);
    {
        // Cut after the first 1.5 MiB: the connection just goes away.
        let (_r, mut w) = s.connect().await;
        w.msg(&Msg::Put {
            id: 1,
            path: "f".into(),
            meta,
            resume: None,
            delta_base: None,
        })
        .await
        .unwrap();
        w.data(&content[..1 << 20]).await.unwrap();
        w.data(&content[1 << 20..(3 << 19)]).await.unwrap();
        w.flush().await.unwrap();
    }
    // The session sees the cut, and what it received stays as partial data.
    let t = std::time::Instant::now();
    while s.store.partial_len("f") != Some(3 << 19) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{:?}",
            s.store.partial_len("f")
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(s.store.file("f").is_none(), "a cut upload became visible");
    let (mut r, mut w) = s.connect().await;
    let probe = ask(
        &mut r,
        &mut w,
        Msg::Probe {
            id: 2,
            path: "f".into(),
            source: Some(meta),
            rolling: false,
        },
    )
    .await;
    let Msg::ProbeReply {
        partial: Some(p),
        signature: false,
        ..
    } = probe
    else {
        panic!("{probe:?}")
    };
    assert_eq!(p.len, 3 << 19);
    let (hash, _) = partial::hash_prefix(&mut Cursor::new(content.clone()), p.len).unwrap();
    let resume = Resume {
        offset: p.len,
        prefix_hash: hash,
    };
    // The old session may still hold the part until its read fails.
    let done = put(&mut r, &mut w, 3, "f", &content, Some(resume), None).await;
    assert!(matches!(done, Msg::Done { id: 3 }), "{done:?}");
    assert_eq!(s.store.file("f").unwrap(), content);

    let (got, _) = get(&mut r, &mut w, 4, "f", Some((&content[..1 << 20], false))).await;
    assert_eq!(got, content);
}

/// Batches pipelined back to back have their passes run at once, but
/// commit in order: where a later batch writes a target an earlier one
/// writes, the later upload wins, and every reply comes in request order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_passes_keep_the_later_upload_of_a_target() {
    let s = Server::new();
    // The first batch's pass is slow on one of the shared targets: the
    // second batch, whose pass could start meanwhile, must wait for it.
    s.store
        .slow_commit_once("same7", Duration::from_millis(300));
    let (mut r, mut w) = s.connect().await;
    // Two batches' worth: the same 40 targets in both batches of 500,
    // each time with new content; the rest distinct.
    let n = 1000u64;
    let target = |i: u64| {
        if i % 500 < 40 {
            format!("same{}", i % 500)
        } else {
            format!("f{i}")
        }
    };
    let content = |i: u64| format!("upload {i} of {}", target(i)).into_bytes();
    let reader = tokio::spawn(async move {
        let mut ids = Vec::new();
        for _ in 0..n {
            match r.read_msg().await.unwrap() {
                Msg::Done { id } => ids.push(id),
                m => panic!("unexpected reply {m:?}"),
            }
        }
        ids
    });
    for i in 0..n {
        let data = content(i);
        let meta = meta_of(&data, 1_700_000_000);
        w.msg(&Msg::Put {
            id: i + 1,
            path: target(i),
            meta,
            resume: None,
            delta_base: None,
        })
        .await
        .unwrap();
        let hash = blake3::Hasher::new();
        let (hash, _) = transfer::send_file(
            &mut w,
            Cursor::new(data),
            None,
            0,
            meta.size,
            hash,
            SEND,
            &|_| {},
        )
        .await
        .unwrap_or_else(|_| panic!("sending {i} failed"));
        w.msg(&Msg::PutEnd { id: i + 1, hash }).await.unwrap();
    }
    w.flush().await.unwrap();
    let ids = reader.await.unwrap();
    assert_eq!(ids, (1..=n).collect::<Vec<_>>(), "replies out of order");
    for k in 0..40 {
        let last = (0..n).filter(|i| i % 500 == k).max().unwrap();
        assert_eq!(
            s.store.file(&format!("same{k}")).unwrap(),
            content(last),
            "same{k}"
        );
    }
    assert_eq!(s.store.file("f999").unwrap(), content(999));
}
