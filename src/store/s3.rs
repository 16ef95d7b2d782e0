//! A share kept in an S3-compatible object store: `fts serve
//! s3://BUCKET/PREFIX`. Several servers may serve one bucket at once; all
//! they share is what is in it.
//!
//! Layout (keys are the client's `/`-separated paths, each component
//! percent-encoded where object_store requires it):
//! - `PREFIX/REL`: a file's bytes, one plain object per file, so other S3
//!   tools see ordinary objects (and fts lists theirs);
//! - `.fts-store/meta/PREFIX/REL`: a small JSON sidecar with what S3 does
//!   not keep (mode, mtime, BLAKE3) and the ETag of the object it
//!   describes; a directory or a symlink is only a sidecar;
//! - `.fts-store/uploads/PREFIX/REL`: a resumable upload's multipart id,
//!   source version, and per part its ETag and BLAKE3 chaining value, so
//!   any node can continue it.
//!
//! A write is one S3 object write (a PUT, or a multipart upload's
//! completion), so readers see the old or the new version, never a mix.
//! Of two overlapping writers of one path one wins whole, by the store's
//! rule (AWS: the last to finish; Garage: the last to start, which drops
//! the other's multipart upload), and both are reported done. A sidecar is
//! written after its object: when the two disagree (another node or tool
//! wrote in between) the ETag tells, and the object is shown with its S3
//! size and time and no stored hash. Reads are ranged GETs of bounded
//! windows pinned to the ETag they started with, so a file replaced while
//! it is sent fails instead of mixing versions, and no request outlives
//! the client's pace. Memory per transfer is one part ([`PART`]) for an
//! upload, [`AHEAD`] + 1 windows for a download.
//!
//! Limits: [`MAX_PARTS`] parts of [`PART`] make the largest file 78 GiB; the
//! partial state of an upload is guarded against a second writer per
//! node, not across nodes; a cut upload's parts stay in the bucket until
//! it is resumed or the path is removed (an
//! `AbortIncompleteMultipartUpload` lifecycle rule cleans up after clients
//! that never come back, and after cut uploads a newer one replaced); S3
//! console "folder" marker objects (`dir/`) are not understood.

use super::{Begin, Content, Probe, Store, Upload};
use crate::engine::hash::{prefix_hash, WholeHash, PART};
use crate::engine::io::{ReadAt, Source};
use crate::error::{Error, Result};
use crate::model::{Entry, EntryKind, Meta, PartialInfo};
use crate::paths::normalize;
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutOptions, PutPayload, RetryConfig,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::runtime::Handle;

/// S3 allows 10,000 parts to an upload.
pub const MAX_PARTS: usize = 10_000;
/// One ranged read.
const WINDOW: u64 = 4 << 20;
/// Windows a sequential reader has in flight beyond the one it reads: one
/// S3 stream is latency-bound, a few in parallel fill the link.
const AHEAD: usize = 3;
/// Where fts keeps its own objects, beside the share's.
const STATE: &str = ".fts-store";
/// Largest sidecar or upload state accepted (10,000 parts fit).
const MAX_STATE: u64 = 4 << 20;
/// Sidecar reads in flight at once while listing.
const SIDE_FETCHES: usize = 32;
/// Entries a recursive listing merges before it reads their sidecars
/// together.
const WALK_BATCH: usize = 256;
/// Directories known to exist, remembered to spare a request per file;
/// forgotten past this many.
const MAX_KNOWN_DIRS: usize = 100_000;

/// What fts stores beside an object (or instead of one).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Side {
    File {
        mtime: i64,
        mtime_ns: u32,
        mode: u32,
        etag: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        blake3: Option<String>,
    },
    Dir {
        mtime: i64,
        mtime_ns: u32,
        mode: u32,
    },
    Link {
        target: String,
    },
}

/// A resumable upload, as another node needs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UploadState {
    /// The multipart upload's id.
    id: String,
    /// The version of the client's file these parts belong to.
    source: Meta,
    parts: Vec<PartRec>,
    /// BLAKE3 of the first part alone (a lone part's root hash cannot be
    /// derived from its chaining value).
    first: Option<String>,
    /// The ETag of the object at the path when the upload began (`""`:
    /// none), to tell an upload a newer write replaced from a cancelled
    /// one.
    #[serde(default)]
    before: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PartRec {
    etag: String,
    /// BLAKE3 chaining value of the part, hex.
    cv: String,
}

struct Inner {
    s3: AmazonS3,
    rt: Handle,
    url: String,
    /// The share's prefix, as path components.
    prefix: Vec<String>,
    /// Uploads writing a partial state on this node.
    busy: Mutex<HashSet<String>>,
    known_dirs: Mutex<HashSet<String>>,
}

/// A share in an S3 bucket.
#[derive(Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("url", &self.inner.url)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn s3_err(what: &str, rel: &str, e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => {
            Error::not_found(format!("'{rel}': no such file or directory"))
        }
        object_store::Error::Precondition { .. } => Error::other(format!(
            "'{rel}' changed on the server while it was read; try again"
        )),
        e => Error::other(format!("S3 {what} of '{rel}' failed: {e}")),
    }
}

/// Files up to this size are written with their sidecar at once.
const SMALL_PUT: usize = 1 << 20;

fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// ETags compared as S3 means them: some answers quote them, some not.
fn same_tag(a: &str, b: &str) -> bool {
    !a.is_empty() && a.trim_matches('"') == b.trim_matches('"')
}

/// A part's or a completion's answer; `None` when the store no longer has
/// the multipart upload (S3's NoSuchUpload, a 404).
fn gone_upload<T>(r: object_store::Result<T>, rel: &str) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(s3_err("upload", rel, e)),
    }
}

/// Sends part `idx` of multipart upload `id`; `None` when the store no
/// longer has the upload. A store may refuse a part of an upload it
/// dropped before reading the body and close the connection (Garage
/// does, depending on timing): the client then sees a send error, not the
/// 404, so a failed part is asked about again with an empty body, which
/// the store can answer in full.
async fn put_part(
    s3: &AmazonS3,
    key: &Path,
    id: &str,
    idx: usize,
    body: PutPayload,
    rel: &str,
) -> Result<Option<PartId>> {
    let first = match gone_upload(s3.put_part(key, &id.to_string(), idx, body).await, rel) {
        Ok(p) => return Ok(p),
        Err(e) => e,
    };
    // The failed part is re-sent anyway if the upload goes on (a resume).
    match s3
        .put_part(key, &id.to_string(), idx, PutPayload::new())
        .await
    {
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        _ => Err(first),
    }
}

fn not_found(rel: &str) -> Error {
    Error::not_found(format!("'{rel}': no such file or directory"))
}

fn parent(rel: &str) -> &str {
    rel.rsplit_once('/').map_or("", |(p, _)| p)
}

fn decode(part: &str) -> String {
    percent_encoding::percent_decode_str(part)
        .decode_utf8_lossy()
        .into_owned()
}

fn now() -> (i64, u32) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_nanos())
}

fn cv_hex(cv: &[u8; 32]) -> String {
    blake3::Hash::from_bytes(*cv).to_hex().to_string()
}

fn cv_parse(hex: &str) -> Result<[u8; 32]> {
    blake3::Hash::from_hex(hex)
        .map(|h| *h.as_bytes())
        .map_err(|_| Error::other("damaged upload state in the bucket (chaining value)"))
}

/// The entry for an object, with its sidecar when that describes it.
fn file_entry(rel: &str, size: u64, modified: i64, side: Option<&Side>, etag: &str) -> Entry {
    let (mtime, mtime_ns, mode, hash) = match side {
        Some(Side::File {
            mtime,
            mtime_ns,
            mode,
            etag: e,
            blake3,
        }) if same_tag(e, etag) => (*mtime, *mtime_ns, *mode, blake3.clone()),
        _ => (modified, 0, 0o644, None),
    };
    Entry {
        path: rel.to_string(),
        kind: EntryKind::File,
        size,
        mtime,
        mtime_ns,
        mode,
        target: None,
        hash,
    }
}

/// The entry a sidecar alone stands for (a directory or a symlink).
fn side_entry(rel: &str, side: &Side) -> Option<Entry> {
    let (kind, mtime, mtime_ns, mode, target) = match side {
        Side::Dir {
            mtime,
            mtime_ns,
            mode,
        } => (EntryKind::Dir, *mtime, *mtime_ns, *mode, None),
        Side::Link { target } => (EntryKind::Symlink, 0, 0, 0o777, Some(target.clone())),
        // A file's sidecar without its object: the object was removed by
        // something else; nothing is there.
        Side::File { .. } => return None,
    };
    Some(Entry {
        path: rel.to_string(),
        kind,
        size: 0,
        mtime,
        mtime_ns,
        mode,
        target,
        hash: None,
    })
}

fn dir_entry(rel: &str) -> Entry {
    Entry {
        path: rel.to_string(),
        kind: EntryKind::Dir,
        size: 0,
        mtime: 0,
        mtime_ns: 0,
        mode: 0o755,
        target: None,
        hash: None,
    }
}

impl S3Store {
    /// Opens `s3://BUCKET[/PREFIX]`, with credentials and region from the
    /// usual `AWS_*` variables and `endpoint` (path-style; `http://` allowed)
    /// for a store other than AWS. Must be called inside the runtime that
    /// serves the share. Checks that the bucket answers.
    pub fn open(url: &str, endpoint: Option<&str>) -> Result<S3Store> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| Error::usage(format!("'{url}' is not an s3:// URL")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::usage(format!("'{url}': no bucket name")));
        }
        let prefix = normalize(prefix)
            .map_err(|e| Error::usage(format!("'{url}': bad prefix: {}", e.message)))?;
        if prefix == STATE || prefix.starts_with(".fts-store/") {
            return Err(Error::usage(format!(
                "'{url}': {STATE} is where fts keeps its state; choose another prefix"
            )));
        }
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
                ..RetryConfig::default()
            });
        if let Some(e) = endpoint {
            b = b
                .with_endpoint(e)
                .with_allow_http(e.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let s3 = b
            .build()
            .map_err(|e| Error::usage(format!("cannot use {url}: {e}")))?;
        let store = S3Store {
            inner: Arc::new(Inner {
                s3,
                rt: Handle::try_current()
                    .map_err(|_| Error::other("the S3 store needs a tokio runtime"))?,
                url: format!(
                    "s3://{bucket}{}{prefix}",
                    if prefix.is_empty() { "" } else { "/" }
                ),
                prefix: prefix
                    .split('/')
                    .filter(|p| !p.is_empty())
                    .map(String::from)
                    .collect(),
                busy: Mutex::default(),
                known_dirs: Mutex::default(),
            }),
        };
        // One request now, so a wrong endpoint, bucket or key fails at
        // start, not at the first client.
        let probe = store.inner.data_dir("");
        store
            .wait(async {
                let mut l = store.inner.s3.list(Some(&probe));
                l.next().await.transpose()
            })
            .map_err(|e| Error::connect(format!("cannot reach {url}: {e}")))?;
        Ok(store)
    }

    /// Runs `f` to completion from synchronous store code, which runs on
    /// blocking threads or (for a few quick calls) on a runtime worker.
    fn wait<F: Future>(&self, f: F) -> F::Output {
        self.inner.wait(f)
    }
}

impl Inner {
    fn wait<F: Future>(&self, f: F) -> F::Output {
        tokio::task::block_in_place(|| self.rt.block_on(f))
    }

    /// `head`, the share's prefix, `mid`, then `rel`'s components.
    fn path(&self, head: &[&str], mid: &[&str], rel: &str) -> Path {
        Path::from_iter(
            head.iter()
                .copied()
                .chain(self.prefix.iter().map(String::as_str))
                .chain(mid.iter().copied())
                .chain(rel.split('/').filter(|p| !p.is_empty())),
        )
    }

    fn data(&self, rel: &str) -> Path {
        self.path(&[], &[], rel)
    }

    /// The data prefix of directory `rel` (the same path; a name, not an
    /// object).
    fn data_dir(&self, rel: &str) -> Path {
        self.data(rel)
    }

    fn meta(&self, rel: &str) -> Path {
        self.path(&[STATE, "meta"], &[], rel)
    }

    fn upload_key(&self, rel: &str) -> Path {
        self.path(&[STATE, "uploads"], &[], rel)
    }

    /// `rel` of `loc` below `base` (still encoded), if it is below it.
    fn below(base: &Path, loc: &Path) -> Option<String> {
        let parts: Vec<String> = loc
            .prefix_match(base)?
            .map(|p| p.as_ref().to_string())
            .collect();
        (!parts.is_empty()).then(|| parts.join("/"))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &Path,
        rel: &str,
    ) -> Result<Option<(T, Option<String>)>> {
        let got = match self.s3.get(key).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(s3_err("read", rel, e)),
        };
        if got.meta.size > MAX_STATE {
            return Err(Error::other(format!(
                "'{rel}': fts state object in the bucket is too large ({} bytes)",
                got.meta.size
            )));
        }
        let etag = got.meta.e_tag.clone();
        let bytes = got.bytes().await.map_err(|e| s3_err("read", rel, e))?;
        match serde_json::from_slice(&bytes) {
            Ok(v) => Ok(Some((v, etag))),
            // Damaged or foreign: treated as absent rather than failing
            // every command on the path.
            Err(_) => Ok(None),
        }
    }

    async fn put_json<T: Serialize>(&self, key: &Path, rel: &str, v: &T) -> Result<()> {
        let body = serde_json::to_vec(v).map_err(|e| Error::other(e.to_string()))?;
        self.s3
            .put(key, PutPayload::from(body))
            .await
            .map(|_| ())
            .map_err(|e| s3_err("write", rel, e))
    }

    async fn delete_quiet(&self, key: &Path, rel: &str) -> Result<()> {
        match self.s3.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(s3_err("delete", rel, e)),
        }
    }

    /// Ends an upload whose multipart upload the store dropped. Garage
    /// keeps only the last-started of overlapping writes to a key, and
    /// drops an earlier-started upload when a later one completes: that
    /// upload is then as good as written and replaced, and reported done
    /// (the newer version and its sidecar stay). Anything else (the upload
    /// was aborted, and the object is still the one from before it began,
    /// or is gone) is an error.
    async fn superseded(&self, rel: &str, w: &Writing) -> Result<()> {
        let now = self.head(rel).await?.map(|h| h.e_tag.unwrap_or_default());
        let replaced = match (&w.before, &now) {
            (Some(was), Some(is)) => !is.is_empty() && !same_tag(is, was),
            _ => false,
        };
        if w.source.is_some() {
            // Its state names the dropped upload (if no newer one of this
            // path replaced the state already).
            let key = self.upload_key(rel);
            if let Ok(Some((s, _))) = self.get_json::<UploadState>(&key, rel).await {
                if Some(&s.id) == w.multipart.as_ref() {
                    let _ = self.delete_quiet(&key, rel).await;
                }
            }
        }
        if replaced {
            Ok(())
        } else {
            Err(Error::other(format!(
                "'{rel}': the store dropped this upload (aborted on the server?); try again"
            )))
        }
    }

    /// Aborts the multipart upload a cut upload's state at `key` names
    /// (best effort: its parts are garbage either way).
    async fn abort_cut_upload(&self, key: &Path, rel: &str) {
        if let Ok(Some((s, _))) = self.get_json::<UploadState>(key, rel).await {
            // `.fts-store/uploads/KEY` is the state of the upload to KEY.
            let data = Path::from_iter(key.parts().skip(2));
            let _ = self.s3.abort_multipart(&data, &s.id).await;
        }
    }

    async fn side(&self, rel: &str) -> Result<Option<Side>> {
        Ok(self.get_json(&self.meta(rel), rel).await?.map(|(s, _)| s))
    }

    async fn head(&self, rel: &str) -> Result<Option<object_store::ObjectMeta>> {
        match self.s3.head(&self.data(rel)).await {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(s3_err("stat", rel, e)),
        }
    }

    /// True when anything (object or sidecar) is below `rel/`.
    async fn has_children(&self, rel: &str) -> Result<bool> {
        let any = |base: Path| async move {
            let mut l = self.s3.list(Some(&base));
            while let Some(m) = l.next().await {
                let m = m.map_err(|e| s3_err("list", rel, e))?;
                if rel.is_empty() && self.is_state(&base, &m.location) {
                    continue;
                }
                return Ok(true);
            }
            Ok::<bool, Error>(false)
        };
        let (d, m) = futures_util::future::join(any(self.data_dir(rel)), any(self.meta(rel))).await;
        Ok(d? || m?)
    }

    /// With no prefix, fts's own objects sit among the share's: skip them
    /// (only at the top of the bucket; a user's `x/.fts-store` is theirs).
    fn is_state(&self, _base: &Path, loc: &Path) -> bool {
        self.prefix.is_empty() && loc.parts().next().is_some_and(|p| p.as_ref() == STATE)
    }

    async fn stat(&self, rel: &str) -> Result<Option<Entry>> {
        if rel.is_empty() {
            return Ok(Some(dir_entry("")));
        }
        // All at once: a missing file (what every new upload probes) costs
        // one round trip, not two.
        let (head, side, children) =
            futures_util::future::join3(self.head(rel), self.side(rel), self.has_children(rel))
                .await;
        let (head, side) = (head?, side?);
        if let Some(m) = head {
            let etag = m.e_tag.unwrap_or_default();
            return Ok(Some(file_entry(
                rel,
                m.size,
                m.last_modified.timestamp(),
                side.as_ref(),
                &etag,
            )));
        }
        if let Some(e) = side.as_ref().and_then(|s| side_entry(rel, s)) {
            if e.kind == EntryKind::Dir {
                self.learn_dir(rel);
            }
            return Ok(Some(e));
        }
        if children? {
            self.learn_dir(rel);
            return Ok(Some(dir_entry(rel)));
        }
        Ok(None)
    }

    fn knows_dir(&self, rel: &str) -> bool {
        rel.is_empty() || lock(&self.known_dirs).contains(rel)
    }

    fn learn_dir(&self, rel: &str) {
        let mut k = lock(&self.known_dirs);
        if k.len() >= MAX_KNOWN_DIRS {
            k.clear();
        }
        k.insert(rel.to_string());
    }

    fn forget_dirs(&self) {
        lock(&self.known_dirs).clear();
    }
}

impl S3Store {
    /// `rel` normalized, refusing fts's own namespace in a bucket-root share.
    fn norm(&self, rel: &str) -> Result<String> {
        let n = normalize(rel)?;
        if self.inner.prefix.is_empty() && (n == STATE || n.starts_with(".fts-store/")) {
            return Err(Error::permission(format!(
                "'{rel}': the name {STATE} is reserved in this share"
            )));
        }
        Ok(n)
    }

    /// `rel` normalized, with its parent an existing directory.
    fn canon(&self, rel: &str) -> Result<String> {
        let n = self.norm(rel)?;
        let p = parent(&n);
        if n.is_empty() || self.inner.knows_dir(p) {
            return Ok(n);
        }
        match self.wait(self.inner.stat(p))? {
            Some(e) if e.kind == EntryKind::Dir => {
                self.inner.learn_dir(p);
                Ok(n)
            }
            _ => Err(Error::not_found(format!(
                "'{p}': no such directory on the server"
            ))),
        }
    }

    fn state(&self, rel: &str) -> Result<Option<UploadState>> {
        let key = self.inner.upload_key(rel);
        Ok(self
            .wait(self.inner.get_json::<UploadState>(&key, rel))?
            .map(|(s, _)| s)
            .filter(|s| s.parts.len() <= MAX_PARTS))
    }

    /// Whole parts of `s` that lie before the end of its source (a resume
    /// always has something left to send).
    fn usable_parts(s: &UploadState) -> usize {
        let below_end = (s.source.size.saturating_sub(1) / PART) as usize;
        s.parts.len().min(below_end)
    }

    /// Every entry below directory `n`, in key order, each directory
    /// before what is in it. Objects and sidecars are two listings in the
    /// same (key) order, merged as they stream.
    fn walk(&self, n: &str, hashes: bool, each: &mut dyn FnMut(Entry) -> Result<()>) -> Result<()> {
        let inner = &self.inner;
        let (dbase, mbase) = (inner.data_dir(n), inner.meta(n));
        let mut data = Ahead::new(inner.s3.list(Some(&dbase)));
        let mut meta = Ahead::new(inner.s3.list(Some(&mbase)));
        let join = |rel: &str| {
            if n.is_empty() {
                rel.to_string()
            } else {
                format!("{n}/{rel}")
            }
        };
        let mut seen: HashSet<String> = HashSet::new();
        let mut emit = |e: Entry, seen: &mut HashSet<String>| -> Result<()> {
            // Parents first, for objects whose directories have no marker.
            let mut p = parent(&e.path).to_string();
            let mut missing = Vec::new();
            while p.len() > n.len() && !seen.contains(&p) {
                missing.push(p.clone());
                p = parent(&p).to_string();
            }
            for d in missing.into_iter().rev() {
                seen.insert(d.clone());
                each(dir_entry(&d))?;
            }
            if e.kind == EntryKind::Dir && !seen.insert(e.path.clone()) {
                return Ok(());
            }
            each(e)
        };
        // Merged entries waiting for their sidecars: the object (if any),
        // the sidecar's location (if any), and the key below `n`.
        type Pending = (Option<object_store::ObjectMeta>, Option<Path>, String);
        let mut pending: Vec<Pending> = Vec::with_capacity(WALK_BATCH);
        let mut flush = |pending: &mut Vec<Pending>, seen: &mut HashSet<String>| -> Result<()> {
            let locs = pending
                .iter()
                .enumerate()
                .filter_map(|(i, (_, m, _))| m.clone().map(|m| (i.to_string(), m)))
                .collect();
            let mut sides: BTreeMap<usize, Side> = BTreeMap::new();
            for (i, s) in self.fetch_sides(locs, n)? {
                if let (Ok(i), Some(s)) = (i.parse::<usize>(), s) {
                    sides.insert(i, s);
                }
            }
            for (i, (o, _, k)) in pending.drain(..).enumerate() {
                let rel = join(&decode_rel(&k));
                let side = sides.get(&i);
                match o {
                    Some(o) => {
                        let mut e = file_entry(
                            &rel,
                            o.size,
                            o.last_modified.timestamp(),
                            side,
                            o.e_tag.as_deref().unwrap_or_default(),
                        );
                        if hashes && e.hash.is_none() {
                            e.hash = Some(self.hash_object(&rel)?);
                        }
                        emit(e, seen)?;
                    }
                    None => {
                        if let Some(e) = side.and_then(|s| side_entry(&rel, s)) {
                            emit(e, seen)?;
                        }
                    }
                }
            }
            Ok(())
        };
        loop {
            let dk = loop {
                let Some(o) = data.peek(self, n)? else {
                    break None;
                };
                match Inner::below(&dbase, &o.location) {
                    Some(k) if !inner.is_state(&dbase, &o.location) => break Some(k),
                    _ => data.take(),
                };
            };
            let mk = loop {
                let Some(o) = meta.peek(self, n)? else {
                    break None;
                };
                match Inner::below(&mbase, &o.location) {
                    Some(k) => break Some(k),
                    None => meta.take(),
                };
            };
            let (object, with_side) = match (&dk, &mk) {
                (None, None) => {
                    flush(&mut pending, &mut seen)?;
                    return Ok(());
                }
                (Some(_), None) => (true, false),
                (None, Some(_)) => (false, true),
                (Some(a), Some(b)) if a < b => (true, false),
                (Some(a), Some(b)) => (a == b, true),
            };
            let side = with_side.then(|| meta.take()).flatten().map(|m| m.location);
            let (o, k) = if object {
                (data.take(), dk.unwrap_or_default())
            } else {
                (None, mk.unwrap_or_default())
            };
            pending.push((o, side, k));
            if pending.len() >= WALK_BATCH {
                flush(&mut pending, &mut seen)?;
            }
        }
    }

    /// The entries directly in directory `n`.
    fn children(
        &self,
        n: &str,
        hashes: bool,
        each: &mut dyn FnMut(Entry) -> Result<()>,
    ) -> Result<()> {
        let inner = &self.inner;
        let (dbase, mbase) = (inner.data_dir(n), inner.meta(n));
        let (data, meta) = self.wait(futures_util::future::join(
            inner.s3.list_with_delimiter(Some(&dbase)),
            inner.s3.list_with_delimiter(Some(&mbase)),
        ));
        let data = data.map_err(|e| s3_err("list", n, e))?;
        let meta = meta.map_err(|e| s3_err("list", n, e))?;
        let join = |name: &str| {
            if n.is_empty() {
                name.to_string()
            } else {
                format!("{n}/{name}")
            }
        };
        let mut found: BTreeMap<String, Entry> = BTreeMap::new();
        let prefixes = data
            .common_prefixes
            .iter()
            .filter(|p| !inner.is_state(&dbase, p))
            .filter_map(|p| Inner::below(&dbase, p))
            .chain(
                meta.common_prefixes
                    .iter()
                    .filter_map(|p| Inner::below(&mbase, p)),
            );
        for k in prefixes {
            let rel = join(&decode(&k));
            found.entry(rel.clone()).or_insert_with(|| dir_entry(&rel));
        }
        let locs: Vec<(String, Path)> = meta
            .objects
            .iter()
            .filter_map(|o| Inner::below(&mbase, &o.location).map(|k| (k, o.location.clone())))
            .collect();
        let sides: BTreeMap<String, Option<Side>> =
            self.fetch_sides(locs, n)?.into_iter().collect();
        for o in &data.objects {
            let Some(k) = Inner::below(&dbase, &o.location) else {
                continue;
            };
            let rel = join(&decode(&k));
            let side = sides.get(&k).cloned().flatten();
            let etag = o.e_tag.as_deref().unwrap_or_default();
            let mut e = file_entry(
                &rel,
                o.size,
                o.last_modified.timestamp(),
                side.as_ref(),
                etag,
            );
            if hashes && e.hash.is_none() {
                e.hash = Some(self.hash_object(&rel)?);
            }
            found.insert(rel, e);
        }
        for (k, side) in &sides {
            let rel = join(&decode(k));
            if found.get(&rel).is_some_and(|e| e.kind == EntryKind::File) {
                continue;
            }
            if let Some(e) = side.as_ref().and_then(|s| side_entry(&rel, s)) {
                found.insert(rel, e);
            }
        }
        for (_, e) in found {
            each(e)?;
        }
        Ok(())
    }

    /// The sidecars at `locs`, fetched [`SIDE_FETCHES`] at a time (one
    /// after the other, a directory of small files waits a round trip per
    /// file), in the order given.
    fn fetch_sides(
        &self,
        locs: Vec<(String, Path)>,
        rel: &str,
    ) -> Result<Vec<(String, Option<Side>)>> {
        let inner = &self.inner;
        let got: Vec<Result<(String, Option<Side>)>> = self.wait(
            futures_util::stream::iter(locs)
                .map(|(k, loc)| async move {
                    let s = inner.get_json::<Side>(&loc, rel).await?;
                    Ok((k, s.map(|(s, _)| s)))
                })
                .buffered(SIDE_FETCHES)
                .collect(),
        );
        got.into_iter().collect()
    }

    /// BLAKE3 of an object with no sidecar to say it (read in full).
    fn hash_object(&self, rel: &str) -> Result<String> {
        let (mut c, _) = self.open(rel)?;
        let mut h = blake3::Hasher::new();
        let mut buf = vec![0; 1 << 20];
        loop {
            let n = c.read(&mut buf).map_err(|e| Error::other(e.to_string()))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(h.finalize().to_hex().to_string())
    }
}

/// A listing read one object ahead, so two can be merged.
struct Ahead {
    list: futures_util::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>,
    next: Option<object_store::ObjectMeta>,
    end: bool,
}

impl Ahead {
    fn new(
        list: futures_util::stream::BoxStream<
            'static,
            object_store::Result<object_store::ObjectMeta>,
        >,
    ) -> Ahead {
        Ahead {
            list,
            next: None,
            end: false,
        }
    }

    fn peek(&mut self, store: &S3Store, rel: &str) -> Result<Option<&object_store::ObjectMeta>> {
        if self.next.is_none() && !self.end {
            match store.wait(self.list.next()) {
                Some(r) => self.next = Some(r.map_err(|e| s3_err("list", rel, e))?),
                None => self.end = true,
            }
        }
        Ok(self.next.as_ref())
    }

    fn take(&mut self) -> Option<object_store::ObjectMeta> {
        self.next.take()
    }
}

fn decode_rel(k: &str) -> String {
    k.split('/').map(decode).collect::<Vec<_>>().join("/")
}

/// An object's bytes, fetched window by window (the next one while the
/// current one is read), every request pinned to the ETag seen at open.
struct S3Content {
    inner: Arc<Inner>,
    key: Path,
    rel: String,
    etag: Option<String>,
    size: u64,
    version: (i64, i64, u64),
    pos: u64,
    /// The window holding `pos` (its start and bytes).
    cur: Option<(u64, Bytes)>,
    /// Fetches of the next windows, in order.
    ahead: std::collections::VecDeque<(u64, tokio::task::JoinHandle<Result<Bytes>>)>,
    /// The last random-access window, for delta bases.
    at: Mutex<Option<(u64, Bytes)>>,
}

impl S3Content {
    fn fetch(&self, start: u64, len: u64) -> impl Future<Output = Result<Bytes>> + Send + 'static {
        let (inner, key, rel, etag) = (
            self.inner.clone(),
            self.key.clone(),
            self.rel.clone(),
            self.etag.clone(),
        );
        let end = (start + len).min(self.size);
        async move {
            let opts = GetOptions {
                if_match: etag,
                range: Some(GetRange::Bounded(start..end)),
                ..GetOptions::default()
            };
            let got = inner
                .s3
                .get_opts(&key, opts)
                .await
                .map_err(|e| s3_err("read", &rel, e))?;
            let b = got.bytes().await.map_err(|e| s3_err("read", &rel, e))?;
            if b.len() as u64 != end - start {
                return Err(Error::other(format!(
                    "'{rel}': S3 returned {} bytes for a {}-byte range",
                    b.len(),
                    end - start
                )));
            }
            Ok(b)
        }
    }

    fn window(&mut self) -> io::Result<()> {
        let start = self.pos - self.pos % WINDOW;
        // A seek elsewhere makes the fetches ahead useless.
        if self.ahead.front().is_some_and(|(s, _)| *s != start) {
            for (_, h) in self.ahead.drain(..) {
                h.abort();
            }
        }
        let b = match self.ahead.pop_front() {
            Some((_, h)) => self
                .inner
                .wait(h)
                .map_err(|e| Error::other(e.to_string()))
                .and_then(|r| r),
            None => self.inner.wait(self.fetch(start, WINDOW)),
        }
        .map_err(io::Error::other)?;
        let mut next = self.ahead.back().map_or(start, |(s, _)| *s) + WINDOW;
        while self.ahead.len() < AHEAD && next < self.size {
            let h = self.inner.rt.spawn(self.fetch(next, WINDOW));
            self.ahead.push_back((next, h));
            next += WINDOW;
        }
        self.cur = Some((start, b));
        Ok(())
    }
}

impl Drop for S3Content {
    fn drop(&mut self) {
        for (_, h) in self.ahead.drain(..) {
            h.abort();
        }
    }
}

impl Read for S3Content {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let fresh = self
            .cur
            .as_ref()
            .is_some_and(|(s, b)| self.pos >= *s && self.pos < s + b.len() as u64);
        if !fresh {
            self.window()?;
        }
        let (s, b) = self.cur.as_ref().expect("window just fetched");
        let off = (self.pos - s) as usize;
        let n = buf.len().min(b.len() - off);
        buf[..n].copy_from_slice(&b[off..off + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for S3Content {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let p = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = p.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
}

impl Source for S3Content {
    fn version(&self) -> Option<(i64, i64, u64)> {
        // Every read is pinned to the ETag seen at open: the content cannot
        // change under it, so the version does not either.
        Some(self.version)
    }
}

impl ReadAt for S3Content {
    fn size(&self) -> io::Result<u64> {
        Ok(self.size)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|e| *e <= self.size)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let mut at = lock(&self.at);
        let hit = at
            .as_ref()
            .is_some_and(|(s, b)| offset >= *s && end <= s + b.len() as u64);
        if !hit {
            let len = (buf.len() as u64).max(WINDOW);
            let b = self
                .inner
                .wait(self.fetch(offset, len))
                .map_err(io::Error::other)?;
            *at = Some((offset, b));
        }
        let (s, b) = at.as_ref().expect("window just fetched");
        let off = (offset - s) as usize;
        buf.copy_from_slice(&b[off..off + buf.len()]);
        Ok(())
    }
}

/// Parts an upload sends while it fills the next: the store's latency is
/// hidden, and an upload holds `1 + IN_FLIGHT` parts of memory.
const IN_FLIGHT: usize = 1;

/// An upload's progress, shared by its writer and its handle.
#[derive(Default)]
struct Writing {
    /// Bytes of the part being filled (at most [`PART`]).
    buf: Vec<u8>,
    /// Parts on their way, in order; they follow `parts`.
    inflight: std::collections::VecDeque<tokio::task::JoinHandle<Result<Option<PartId>>>>,
    hash: WholeHash,
    multipart: Option<String>,
    parts: Vec<PartRec>,
    first: Option<String>,
    /// Set for a resumable upload: the version its state belongs to.
    source: Option<Meta>,
    /// See [`UploadState::before`]; `None` when not known.
    before: Option<String>,
    /// The store dropped the multipart upload: the rest is only hashed
    /// (see [`Inner::superseded`]).
    superseded: bool,
}

struct S3Upload {
    inner: Arc<Inner>,
    rel: String,
    key: Path,
    w: Arc<Mutex<Writing>>,
    /// Set when the upload is dropped unfinished, for a writer still busy
    /// on another thread (its requests hold the lock for seconds).
    gone: Arc<std::sync::atomic::AtomicBool>,
    /// This upload holds the node's busy mark for `rel`.
    busy: bool,
    done: bool,
}

struct S3Writer {
    inner: Arc<Inner>,
    rel: String,
    key: Path,
    w: Arc<Mutex<Writing>>,
    gone: Arc<std::sync::atomic::AtomicBool>,
}

impl Writing {
    /// Sends the full part in `buf`, records it (and the state, for a
    /// resumable upload) once its chaining value is known.
    async fn flush_part(&mut self, inner: &Arc<Inner>, rel: &str, key: &Path) -> Result<()> {
        let idx = self.parts.len() + self.inflight.len();
        if idx + 1 >= MAX_PARTS {
            return Err(Error::other(format!(
                "'{rel}': too large for the S3 store (at most {MAX_PARTS} parts of {} MiB)",
                PART >> 20
            )));
        }
        if self.superseded {
            self.buf.clear();
            return Ok(());
        }
        let id = match &self.multipart {
            Some(id) => id.clone(),
            None => {
                // An earlier attempt's multipart upload is not aborted
                // here: it may be another node's, still running (its
                // completion would then fail). `rm` and a lifecycle rule
                // clean up after cut ones.
                let (id, head) =
                    futures_util::future::join(inner.s3.create_multipart(key), inner.head(rel))
                        .await;
                let id = id.map_err(|e| s3_err("upload", rel, e))?;
                self.before = head
                    .ok()
                    .map(|h| h.and_then(|h| h.e_tag).unwrap_or_default());
                self.multipart = Some(id.clone());
                id
            }
        };
        if self.parts.is_empty() && self.hash.saved().is_empty() {
            // All of part 1 and nothing after: its root hash, kept for a
            // resume that checks just this prefix.
            self.first = Some(self.hash.finalize().to_hex().to_string());
        }
        // The next part's buffer is allocated when its first byte comes.
        let body = PutPayload::from(std::mem::take(&mut self.buf));
        let (i2, k2, r2) = (inner.clone(), key.clone(), rel.to_string());
        self.inflight.push_back(
            inner
                .rt
                .spawn(async move { put_part(&i2.s3, &k2, &id, idx, body, &r2).await }),
        );
        while self.inflight.len() > IN_FLIGHT {
            self.settle_one(rel).await?;
        }
        Ok(())
    }

    /// Waits for the oldest part on its way and records it.
    async fn settle_one(&mut self, rel: &str) -> Result<()> {
        let Some(h) = self.inflight.pop_front() else {
            return Ok(());
        };
        let p = h
            .await
            .map_err(|e| Error::other(format!("'{rel}': part upload failed: {e}")))??;
        match p {
            Some(p) => self.parts.push(PartRec {
                etag: p.content_id,
                cv: String::new(),
            }),
            None => {
                self.superseded = true;
                self.cancel_inflight();
            }
        }
        Ok(())
    }

    /// Stops the parts on their way (the upload is given up).
    fn cancel_inflight(&mut self) {
        for h in self.inflight.drain(..) {
            h.abort();
        }
    }

    /// The upload ends unfinished: a resumable one keeps its recorded
    /// parts for the next attempt; any other is aborted. Never blocks.
    fn abandon(&mut self, inner: &Arc<Inner>, key: &Path) {
        self.cancel_inflight();
        if let (None, Some(id)) = (self.source, self.multipart.take()) {
            let (inner2, key) = (inner.clone(), key.clone());
            inner.rt.spawn(async move {
                let _ = inner2.s3.abort_multipart(&key, &id).await;
            });
        }
    }

    /// Fills in chaining values the hash has closed, and saves the state.
    async fn record(&mut self, inner: &Inner, rel: &str) -> Result<()> {
        let saved = self.hash.saved();
        let mut changed = false;
        for (p, cv) in self.parts.iter_mut().zip(saved) {
            if p.cv.is_empty() {
                p.cv = cv_hex(cv);
                changed = true;
            }
        }
        // Saved after each of the first parts, then every 8th: a resume
        // may send up to 7 parts again, and the state (which grows with
        // the parts) is not rewritten 10,000 times.
        let n = self.parts.len();
        let due = !self.superseded && (n <= 8 || n % 8 == 0);
        if let (true, true, Some(source), Some(id)) = (changed, due, self.source, &self.multipart) {
            let done = self.parts.iter().take_while(|p| !p.cv.is_empty()).cloned();
            let state = UploadState {
                id: id.clone(),
                source,
                parts: done.collect(),
                first: self.first.clone(),
                before: self.before.clone(),
            };
            inner.put_json(&inner.upload_key(rel), rel, &state).await?;
        }
        Ok(())
    }
}

impl Write for S3Writer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut w = lock(&self.w);
        let inner = self.inner.clone();
        if self.gone.load(std::sync::atomic::Ordering::Acquire) {
            w.abandon(&inner, &self.key);
            return Err(io::Error::other("the upload was abandoned"));
        }
        let mut rest = data;
        while !rest.is_empty() {
            if w.buf.len() as u64 == PART {
                inner
                    .wait(w.flush_part(&inner, &self.rel, &self.key))
                    .map_err(io::Error::other)?;
            }
            if w.buf.capacity() == 0 {
                w.buf.reserve_exact(PART as usize);
            }
            let take = ((PART as usize) - w.buf.len()).min(rest.len());
            w.buf.extend_from_slice(&rest[..take]);
            w.hash.update(&rest[..take]);
            rest = &rest[take..];
            if w.parts.last().is_some_and(|p| p.cv.is_empty()) {
                inner
                    .wait(w.record(&inner, &self.rel))
                    .map_err(io::Error::other)?;
            }
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl S3Upload {
    fn release(&mut self) {
        if self.busy {
            lock(&self.inner.busy).remove(&self.rel);
            self.busy = false;
        }
    }
}

impl Upload for S3Upload {
    fn writer(&self) -> Result<Box<dyn Write + Send>> {
        Ok(Box::new(S3Writer {
            inner: self.inner.clone(),
            rel: self.rel.clone(),
            key: self.key.clone(),
            w: self.w.clone(),
            gone: self.gone.clone(),
        }))
    }

    fn commit(mut self: Box<Self>, meta: &Meta) -> Result<()> {
        let inner = self.inner.clone();
        let (rel, key) = (self.rel.clone(), self.key.clone());
        let w = self.w.clone();
        // The writer is done with it: taken out, not held across requests.
        let mut w = std::mem::take(&mut *lock(&w));
        let res = inner.wait(async {
            while !w.inflight.is_empty() {
                w.settle_one(&rel).await?;
            }
            let blake3 = Some(w.hash.finalize().to_hex().to_string());
            let side = |etag: Option<String>| Side::File {
                mtime: meta.mtime,
                mtime_ns: meta.mtime_ns,
                mode: meta.mode & 0o777,
                etag: etag.unwrap_or_default(),
                blake3: blake3.clone(),
            };
            if w.multipart.is_none() && w.buf.len() <= SMALL_PUT {
                // A small file: object and sidecar written at once (one
                // round trip per file, not two), the sidecar naming the
                // ETag S3 gives a plain PUT (the MD5 of the bytes); it is
                // written again if the store says otherwise.
                let guess = md5_hex(&w.buf);
                let body = PutPayload::from(std::mem::take(&mut w.buf));
                let (put, sidecar) = futures_util::future::join(
                    inner.s3.put_opts(&key, body, PutOptions::default()),
                    inner.put_json(&inner.meta(&rel), &rel, &side(Some(guess.clone()))),
                )
                .await;
                let etag = put.map_err(|e| s3_err("write", &rel, e))?.e_tag;
                if sidecar.is_err() || !etag.as_deref().is_some_and(|t| same_tag(t, &guess)) {
                    inner.put_json(&inner.meta(&rel), &rel, &side(etag)).await?;
                }
                return Ok(());
            }
            let body = PutPayload::from(std::mem::take(&mut w.buf));
            let etag = match w.multipart.clone() {
                None => {
                    inner
                        .s3
                        .put_opts(&key, body, PutOptions::default())
                        .await
                        .map_err(|e| s3_err("write", &rel, e))?
                        .e_tag
                }
                Some(_) if w.superseded => return inner.superseded(&rel, &w).await,
                Some(id) => {
                    let last = put_part(&inner.s3, &key, &id, w.parts.len(), body, &rel).await;
                    let Some(last) = last? else {
                        return inner.superseded(&rel, &w).await;
                    };
                    let mut parts: Vec<PartId> = w
                        .parts
                        .iter()
                        .map(|p| PartId {
                            content_id: p.etag.clone(),
                        })
                        .collect();
                    parts.push(last);
                    let done = inner.s3.complete_multipart(&key, &id, parts).await;
                    match gone_upload(done, &rel)? {
                        Some(done) => done.e_tag,
                        None => return inner.superseded(&rel, &w).await,
                    }
                }
            };
            inner.put_json(&inner.meta(&rel), &rel, &side(etag)).await?;
            if w.source.is_some() && w.multipart.is_some() {
                inner.delete_quiet(&inner.upload_key(&rel), &rel).await?;
            }
            Ok(())
        });
        self.done = true;
        self.release();
        res
    }

    fn discard(&mut self) {
        let mut w = lock(&self.w);
        w.cancel_inflight();
        if let Some(id) = w.multipart.clone() {
            let (inner, key, rel, resumable) = (
                self.inner.clone(),
                self.key.clone(),
                self.rel.clone(),
                w.source.is_some(),
            );
            self.inner.wait(async move {
                let _ = inner.s3.abort_multipart(&key, &id).await;
                if resumable {
                    let _ = inner.delete_quiet(&inner.upload_key(&rel), &rel).await;
                }
            });
        }
        drop(w);
        self.done = true;
        self.release();
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        if !self.done {
            // Runs on a runtime worker when a session is cut: it must not
            // wait for a writer in the middle of a request.
            self.gone.store(true, std::sync::atomic::Ordering::Release);
            match self.w.try_lock() {
                Ok(mut w) => w.abandon(&self.inner, &self.key),
                Err(std::sync::TryLockError::Poisoned(p)) => {
                    p.into_inner().abandon(&self.inner, &self.key)
                }
                // The writer sees `gone` on its next write and cleans up.
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
        }
        self.release();
    }
}

impl Store for S3Store {
    fn location(&self) -> String {
        self.inner.url.clone()
    }

    fn is_single_file(&self) -> bool {
        false
    }

    fn display(&self, rel: &str) -> Result<String> {
        self.norm(rel)
    }

    fn stat(&self, rel: &str) -> Result<Option<Entry>> {
        let n = self.norm(rel)?;
        self.wait(self.inner.stat(&n))
    }

    fn list(
        &self,
        rel: &str,
        recursive: bool,
        hashes: bool,
        each: &mut dyn FnMut(Entry) -> Result<()>,
    ) -> Result<()> {
        let n = self.norm(rel)?;
        match self.wait(self.inner.stat(&n))? {
            None => Err(not_found(rel)),
            Some(e) if e.kind != EntryKind::Dir => {
                let mut e = e;
                if hashes && e.kind == EntryKind::File && e.hash.is_none() {
                    e.hash = Some(self.hash_object(&n)?);
                }
                each(e)
            }
            Some(_) => {
                self.inner.learn_dir(&n);
                if recursive {
                    self.walk(&n, hashes, each)
                } else {
                    self.children(&n, hashes, each)
                }
            }
        }
    }

    fn open(&self, rel: &str) -> Result<(Box<dyn Content>, Meta)> {
        let n = self.norm(rel)?;
        if n.is_empty() {
            return Err(Error::other(format!("'{rel}' is a directory")));
        }
        let inner = &self.inner;
        let (head, side) = self.wait(futures_util::future::join(inner.head(&n), inner.side(&n)));
        let Some(head) = head? else {
            return Err(match self.wait(inner.stat(&n))? {
                Some(e) if e.kind == EntryKind::Dir => {
                    Error::other(format!("'{rel}' is a directory"))
                }
                Some(_) => Error::other(format!("'{rel}' is not a regular file")),
                None => not_found(rel),
            });
        };
        let etag = head.e_tag.clone();
        let e = file_entry(
            &n,
            head.size,
            head.last_modified.timestamp(),
            side?.as_ref(),
            etag.as_deref().unwrap_or_default(),
        );
        let key = inner.data(&n);
        let tag = blake3::hash(etag.as_deref().unwrap_or_default().as_bytes());
        let tag = i64::from_le_bytes(tag.as_bytes()[..8].try_into().unwrap_or_default());
        let meta = Meta {
            size: head.size,
            mtime: e.mtime,
            mtime_ns: e.mtime_ns,
            mode: e.mode,
        };
        Ok((
            Box::new(S3Content {
                inner: self.inner.clone(),
                key,
                rel: n,
                etag,
                size: head.size,
                version: (e.mtime, tag, head.size),
                pos: 0,
                cur: None,
                ahead: Default::default(),
                at: Mutex::new(None),
            }),
            meta,
        ))
    }

    fn probe(&self, rel: &str) -> Result<Probe> {
        let n = self.canon(rel)?;
        let (entry, state) = self.wait(futures_util::future::join(
            self.inner.stat(&n),
            self.inner
                .get_json::<UploadState>(&self.inner.upload_key(&n), &n),
        ));
        let partial = state?.map(|(s, _)| s).and_then(|s| {
            let k = S3Store::usable_parts(&s);
            (k > 0).then(|| PartialInfo {
                len: k as u64 * PART,
                source: s.source,
            })
        });
        Ok(Probe {
            entry: entry?,
            partial,
        })
    }

    fn hash_partial(&self, rel: &str, len: u64) -> Result<(String, WholeHash)> {
        let n = self.norm(rel)?;
        let s = self.state(&n)?.ok_or_else(|| not_found(rel))?;
        let k = (len / PART) as usize;
        if len % PART != 0 || k == 0 || k > S3Store::usable_parts(&s) {
            return Err(Error::other(format!(
                "'{rel}': the partial upload cannot resume at byte {len}"
            )));
        }
        let cvs = s.parts[..k]
            .iter()
            .map(|p| cv_parse(&p.cv))
            .collect::<Result<Vec<_>>>()?;
        let hex = if k == 1 {
            s.first
                .clone()
                .ok_or_else(|| Error::other("damaged upload state in the bucket (first part)"))?
        } else {
            prefix_hash(&cvs).to_hex().to_string()
        };
        Ok((hex, WholeHash::parts(cvs)))
    }

    fn begin(&self, rel: &str, how: Begin) -> Result<Option<Box<dyn Upload>>> {
        let n = self.canon(rel)?;
        // Only what this node knows: the server probed the target first,
        // and a full check costs two listings per file. The root always is.
        if self.inner.knows_dir(&n) {
            return Err(Error::other(format!(
                "'{rel}' is a directory on the server"
            )));
        }
        let fresh = |source: Option<Meta>| Writing {
            hash: WholeHash::parts(Vec::new()),
            source,
            ..Writing::default()
        };
        let (w, busy) = match how {
            Begin::Temp => (fresh(None), false),
            Begin::Fresh(source) => {
                if source.size > MAX_PARTS as u64 * PART {
                    return Err(Error::other(format!(
                        "'{rel}': too large for the S3 store (at most {MAX_PARTS} parts of {} MiB, {} GiB)",
                        PART >> 20,
                        (MAX_PARTS as u64 * PART) >> 30
                    )));
                }
                if lock(&self.inner.busy).insert(n.clone()) {
                    (fresh(Some(source)), true)
                } else {
                    // Another transfer on this node writes the resumable
                    // state: this one is a plain upload.
                    (fresh(None), false)
                }
            }
            Begin::Resume { offset, source } => {
                let s = self.state(&n)?.ok_or_else(|| not_found(rel))?;
                let k = (offset / PART) as usize;
                // The state may have been replaced (another upload of
                // another version) since its prefix was checked.
                let same = (s.source.size, s.source.mtime, s.source.mtime_ns)
                    == (source.size, source.mtime, source.mtime_ns);
                if !same || offset % PART != 0 || k == 0 || k > S3Store::usable_parts(&s) {
                    return Err(Error::other(format!(
                        "'{rel}': the partial upload cannot resume at byte {offset}"
                    )));
                }
                if !lock(&self.inner.busy).insert(n.clone()) {
                    return Ok(None);
                }
                let parts = s.parts[..k].to_vec();
                let cvs = parts
                    .iter()
                    .map(|p| cv_parse(&p.cv))
                    .collect::<Result<Vec<_>>>();
                let cvs = match cvs {
                    Ok(c) => c,
                    Err(e) => {
                        lock(&self.inner.busy).remove(&n);
                        return Err(e);
                    }
                };
                (
                    Writing {
                        hash: WholeHash::parts(cvs),
                        multipart: Some(s.id),
                        parts,
                        first: s.first,
                        source: Some(s.source),
                        before: s.before,
                        ..Writing::default()
                    },
                    true,
                )
            }
        };
        Ok(Some(Box::new(S3Upload {
            inner: self.inner.clone(),
            key: self.inner.data(&n),
            rel: n,
            w: Arc::new(Mutex::new(w)),
            gone: Arc::default(),
            busy,
            done: false,
        })))
    }

    fn mkdir(&self, rel: &str) -> Result<()> {
        let n = self.canon(rel)?;
        if n.is_empty() {
            return Ok(());
        }
        match self.wait(self.inner.stat(&n))? {
            Some(e) if e.kind == EntryKind::Dir => {}
            Some(_) => {
                return Err(Error::other(format!(
                    "'{rel}' exists and is not a directory"
                )))
            }
            None => {
                let (mtime, mtime_ns) = now();
                let side = Side::Dir {
                    mtime,
                    mtime_ns,
                    mode: 0o755,
                };
                self.wait(self.inner.put_json(&self.inner.meta(&n), &n, &side))?;
            }
        }
        self.inner.learn_dir(&n);
        Ok(())
    }

    fn symlink(&self, rel: &str, target: &str) -> Result<()> {
        let n = self.canon(rel)?;
        crate::fsutil::check_link_target(parent(&n), target)?;
        if let Some(e) = self.wait(self.inner.stat(&n))? {
            if e.kind == EntryKind::Dir {
                return Err(Error::other(format!(
                    "'{rel}' is a directory on the server"
                )));
            }
        }
        let side = Side::Link {
            target: target.to_string(),
        };
        self.wait(async {
            self.inner.put_json(&self.inner.meta(&n), &n, &side).await?;
            self.inner.delete_quiet(&self.inner.data(&n), &n).await
        })
    }

    fn make_durable(&self, _rels: &[String]) -> Result<()> {
        // An S3 write is durable once it has been acknowledged.
        Ok(())
    }

    fn commit_parallelism(&self) -> usize {
        // Each commit is one or two requests that wait on the store.
        16
    }

    fn set_meta(&self, rel: &str, meta: &Meta) -> Result<()> {
        let n = self.norm(rel)?;
        if n.is_empty() {
            // The share root has no sidecar (it is the prefix itself).
            return Ok(());
        }
        let inner = &self.inner;
        self.wait(async {
            let (head, side) = futures_util::future::join(inner.head(&n), inner.side(&n)).await;
            let side = match (head?, side?) {
                (Some(h), s) => {
                    let etag = h.e_tag.unwrap_or_default();
                    let blake3 = match s {
                        Some(Side::File {
                            etag: e, blake3, ..
                        }) if same_tag(&e, &etag) => blake3,
                        _ => None,
                    };
                    Side::File {
                        mtime: meta.mtime,
                        mtime_ns: meta.mtime_ns,
                        mode: meta.mode & 0o777,
                        etag,
                        blake3,
                    }
                }
                (None, Some(Side::Link { .. })) => return Ok(()),
                (None, Some(Side::Dir { .. })) => Side::Dir {
                    mtime: meta.mtime,
                    mtime_ns: meta.mtime_ns,
                    mode: meta.mode & 0o777,
                },
                (None, _) => {
                    if n.is_empty() || !inner.has_children(&n).await? {
                        return if n.is_empty() {
                            Ok(())
                        } else {
                            Err(not_found(rel))
                        };
                    }
                    Side::Dir {
                        mtime: meta.mtime,
                        mtime_ns: meta.mtime_ns,
                        mode: meta.mode & 0o777,
                    }
                }
            };
            inner.put_json(&inner.meta(&n), &n, &side).await
        })
    }

    fn remove(&self, rel: &str, recursive: bool) -> Result<(u64, u64)> {
        let n = self.norm(rel)?;
        if n.is_empty() {
            return Err(Error::permission("the share root itself cannot be removed"));
        }
        let inner = &self.inner;
        let e = self.wait(inner.stat(&n))?.ok_or_else(|| not_found(rel))?;
        if e.kind != EntryKind::Dir {
            self.wait(async {
                inner.abort_cut_upload(&inner.upload_key(&n), &n).await;
                inner.delete_quiet(&inner.data(&n), &n).await?;
                inner.delete_quiet(&inner.meta(&n), &n).await?;
                inner.delete_quiet(&inner.upload_key(&n), &n).await
            })?;
            return Ok((1, 0));
        }
        if !recursive {
            return Err(Error::usage(format!("'{rel}' is a directory (use -r)")));
        }
        let (mut files, mut dirs) = (0u64, 1u64);
        self.walk(&n, false, &mut |e| {
            if e.kind == EntryKind::Dir {
                dirs += 1;
            } else {
                files += 1;
            }
            Ok(())
        })?;
        inner.forget_dirs();
        self.wait(async {
            // Cut uploads below go too, with the parts S3 keeps for them.
            let mut cut = inner.s3.list(Some(&inner.upload_key(&n)));
            while let Some(Ok(m)) = cut.next().await {
                inner.abort_cut_upload(&m.location, &n).await;
            }
            for base in [inner.data_dir(&n), inner.meta(&n), inner.upload_key(&n)] {
                let locs = inner
                    .s3
                    .list(Some(&base))
                    .map(|m| m.map(|m| m.location))
                    .boxed();
                let mut gone = inner.s3.delete_stream(locs);
                while let Some(r) = gone.next().await {
                    match r {
                        Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(s3_err("delete", &n, e)),
                    }
                }
            }
            inner.delete_quiet(&inner.meta(&n), &n).await
        })?;
        Ok((files, dirs))
    }
}
