//! A share held in memory, for unit tests of the layers above the store
//! (the session and its dispatch). It proves the boundary is real: nothing
//! above [`super::Store`] may assume a filesystem. Not offered to users.

use super::{Begin, Content, Probe, Store, Upload};
use crate::engine::hash::WholeHash;
use crate::engine::io::{ReadAt, Source};
use crate::error::{Error, Result};
use crate::model::{Entry, EntryKind, Meta, PartialInfo};
use crate::paths::normalize;
use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex, MutexGuard};

/// Bytes several holders append to.
type Buf = Arc<Mutex<Vec<u8>>>;

#[derive(Debug, Clone)]
enum Node {
    Dir(Meta),
    File(Arc<Vec<u8>>, Meta),
    Link(String),
}

#[derive(Debug, Default)]
struct State {
    /// Canonical relative path → node; the root ("") is always a directory.
    nodes: BTreeMap<String, Node>,
    /// Partial data of cut uploads, with the version they belong to.
    parts: BTreeMap<String, (Buf, Meta)>,
    /// Parts an upload is writing right now.
    busy: HashSet<String>,
    /// Bumped on every commit, so a version tells rewrites apart.
    generation: i64,
    /// Tests: the next commit of this path takes this long.
    #[cfg(test)]
    slow_once: Option<(String, std::time::Duration)>,
}

/// An in-memory share.
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    state: Arc<Mutex<State>>,
}

const BLANK: Meta = Meta {
    size: 0,
    mtime: 0,
    mtime_ns: 0,
    mode: 0o755,
};

fn parent(rel: &str) -> &str {
    rel.rsplit_once('/').map_or("", |(p, _)| p)
}

fn not_found(rel: &str) -> Error {
    Error::not_found(format!("'{rel}': no such file or directory"))
}

impl MemStore {
    pub fn new() -> MemStore {
        let s = MemStore::default();
        s.lock().nodes.insert(String::new(), Node::Dir(BLANK));
        s
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts a file in place directly (test setup).
    /// Tests: the next commit of `rel` sleeps `d` first (a pass that is
    /// slow on one file).
    #[cfg(test)]
    pub fn slow_commit_once(&self, rel: &str, d: std::time::Duration) {
        self.lock().slow_once = Some((rel.to_string(), d));
    }

    pub fn put_file(&self, rel: &str, data: &[u8], mtime: i64) {
        let meta = Meta {
            size: data.len() as u64,
            mtime,
            mtime_ns: 0,
            mode: 0o644,
        };
        self.lock()
            .nodes
            .insert(rel.to_string(), Node::File(Arc::new(data.to_vec()), meta));
    }

    /// A file's bytes, if it is there (test checks).
    pub fn file(&self, rel: &str) -> Option<Vec<u8>> {
        match self.lock().nodes.get(rel) {
            Some(Node::File(d, _)) => Some(d.to_vec()),
            _ => None,
        }
    }

    /// How many bytes of partial data `rel` has.
    pub fn partial_len(&self, rel: &str) -> Option<usize> {
        let st = self.lock();
        let part = st.parts.get(rel)?;
        let len = part.0.lock().unwrap_or_else(|p| p.into_inner()).len();
        Some(len)
    }

    fn canon(&self, rel: &str) -> Result<String> {
        let n = normalize(rel)?;
        let st = self.lock();
        match st.nodes.get(parent(&n)) {
            Some(Node::Dir(_)) => Ok(n),
            _ if n.is_empty() => Ok(n),
            _ => Err(Error::not_found(format!(
                "'{}': no such directory on the server",
                parent(&n)
            ))),
        }
    }
}

fn entry(path: &str, node: &Node) -> Entry {
    let (kind, meta, target) = match node {
        Node::Dir(m) => (EntryKind::Dir, *m, None),
        Node::File(_, m) => (EntryKind::File, *m, None),
        Node::Link(t) => (EntryKind::Symlink, BLANK, Some(t.clone())),
    };
    Entry {
        path: path.to_string(),
        kind,
        size: meta.size,
        mtime: meta.mtime,
        mtime_ns: meta.mtime_ns,
        mode: meta.mode,
        target,
        hash: None,
    }
}

/// A stored file's bytes, read like a file.
struct MemContent {
    data: Arc<Vec<u8>>,
    pos: u64,
    version: (i64, i64, u64),
}

impl Read for MemContent {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let start = (self.pos as usize).min(self.data.len());
        let n = buf.len().min(self.data.len() - start);
        buf[..n].copy_from_slice(&self.data[start..start + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for MemContent {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = match to {
            SeekFrom::Start(n) => n,
            SeekFrom::End(d) => (self.data.len() as i64 + d).max(0) as u64,
            SeekFrom::Current(d) => (self.pos as i64 + d).max(0) as u64,
        };
        Ok(self.pos)
    }
}

impl Source for MemContent {
    fn version(&self) -> Option<(i64, i64, u64)> {
        Some(self.version)
    }
}

impl ReadAt for MemContent {
    fn size(&self) -> io::Result<u64> {
        Ok(self.data.len() as u64)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = offset as usize;
        let end = start
            .checked_add(buf.len())
            .filter(|e| *e <= self.data.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(&self.data[start..end]);
        Ok(())
    }
}

/// Appends into a shared buffer.
struct Appender(Arc<Mutex<Vec<u8>>>);

impl Write for Appender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct MemUpload {
    store: MemStore,
    rel: String,
    buf: Arc<Mutex<Vec<u8>>>,
    /// A part of the store (kept when dropped), not a private temp buffer.
    part: bool,
    done: bool,
}

impl Upload for MemUpload {
    fn writer(&self) -> Result<Box<dyn Write + Send>> {
        Ok(Box::new(Appender(self.buf.clone())))
    }

    fn commit(mut self: Box<Self>, meta: &Meta) -> Result<()> {
        let data = std::mem::take(&mut *self.buf.lock().unwrap_or_else(|p| p.into_inner()));
        #[cfg(test)]
        {
            let mut st = self.store.lock();
            if st.slow_once.as_ref().is_some_and(|(r, _)| *r == self.rel) {
                let d = st.slow_once.take().map(|(_, d)| d).unwrap_or_default();
                drop(st);
                std::thread::sleep(d);
            }
        }
        let mut st = self.store.lock();
        if let Some(Node::Dir(_)) = st.nodes.get(&self.rel) {
            return Err(Error::other(format!("'{}' is a directory", self.rel)));
        }
        st.generation += 1;
        let meta = Meta {
            size: data.len() as u64,
            ..*meta
        };
        st.nodes
            .insert(self.rel.clone(), Node::File(Arc::new(data), meta));
        st.parts.remove(&self.rel);
        st.busy.remove(&self.rel);
        self.done = true;
        Ok(())
    }

    fn discard(&mut self) {
        let mut st = self.store.lock();
        if self.part {
            st.parts.remove(&self.rel);
        }
        st.busy.remove(&self.rel);
        self.done = true;
    }
}

impl Drop for MemUpload {
    fn drop(&mut self) {
        if !self.done && self.part {
            self.store.lock().busy.remove(&self.rel);
        }
    }
}

impl Store for MemStore {
    fn location(&self) -> String {
        "memory".into()
    }

    fn is_single_file(&self) -> bool {
        false
    }

    fn display(&self, rel: &str) -> Result<String> {
        normalize(rel)
    }

    fn stat(&self, rel: &str) -> Result<Option<Entry>> {
        let n = normalize(rel)?;
        Ok(self.lock().nodes.get(&n).map(|node| entry(&n, node)))
    }

    fn list(
        &self,
        rel: &str,
        recursive: bool,
        hashes: bool,
        each: &mut dyn FnMut(Entry) -> Result<()>,
    ) -> Result<()> {
        let n = normalize(rel)?;
        let found: Vec<(String, Node)> = {
            let st = self.lock();
            match st.nodes.get(&n) {
                None => return Err(not_found(rel)),
                Some(Node::Dir(_)) => st
                    .nodes
                    .iter()
                    .filter(|(p, _)| {
                        let below = if n.is_empty() {
                            !p.is_empty()
                        } else {
                            p.strip_prefix(&n).is_some_and(|r| r.starts_with('/'))
                        };
                        below && (recursive || parent(p) == n)
                    })
                    .map(|(p, node)| (p.clone(), node.clone()))
                    .collect(),
                Some(node) => vec![(n.clone(), node.clone())],
            }
        };
        for (p, node) in found {
            let mut e = entry(&p, &node);
            if let (true, Node::File(d, _)) = (hashes, &node) {
                e.hash = Some(blake3::hash(d).to_hex().to_string());
            }
            each(e)?;
        }
        Ok(())
    }

    fn open(&self, rel: &str) -> Result<(Box<dyn Content>, Meta)> {
        let n = normalize(rel)?;
        let st = self.lock();
        match st.nodes.get(&n) {
            Some(Node::File(d, m)) => Ok((
                Box::new(MemContent {
                    data: d.clone(),
                    pos: 0,
                    version: (m.mtime, st.generation, m.size),
                }),
                *m,
            )),
            Some(Node::Dir(_)) => Err(Error::other(format!("'{rel}' is a directory"))),
            Some(Node::Link(_)) => Err(Error::other(format!("'{rel}' is not a regular file"))),
            None => Err(not_found(rel)),
        }
    }

    fn probe(&self, rel: &str) -> Result<Probe> {
        let n = self.canon(rel)?;
        let st = self.lock();
        Ok(Probe {
            entry: st.nodes.get(&n).map(|node| entry(&n, node)),
            partial: st.parts.get(&n).map(|(buf, source)| PartialInfo {
                len: buf.lock().unwrap_or_else(|p| p.into_inner()).len() as u64,
                source: *source,
            }),
        })
    }

    fn hash_partial(&self, rel: &str, len: u64) -> Result<(String, WholeHash)> {
        let n = normalize(rel)?;
        let st = self.lock();
        let (buf, _) = st.parts.get(&n).ok_or_else(|| not_found(rel))?;
        let buf = buf.lock().unwrap_or_else(|p| p.into_inner());
        let prefix = buf
            .get(..len as usize)
            .ok_or_else(|| Error::other("partial data shorter than its prefix"))?;
        let mut h = blake3::Hasher::new();
        h.update(prefix);
        Ok((h.clone().finalize().to_hex().to_string(), h.into()))
    }

    fn begin(&self, rel: &str, how: Begin) -> Result<Option<Box<dyn Upload>>> {
        let n = self.canon(rel)?;
        let mut st = self.lock();
        if let Some(Node::Dir(_)) = st.nodes.get(&n) {
            return Err(Error::other(format!(
                "'{rel}' is a directory on the server"
            )));
        }
        let (buf, part) = match how {
            Begin::Temp => (Arc::new(Mutex::new(Vec::new())), false),
            Begin::Fresh(source) => {
                if !st.busy.insert(n.clone()) {
                    (Arc::new(Mutex::new(Vec::new())), false)
                } else {
                    let buf = Arc::new(Mutex::new(Vec::new()));
                    st.parts.insert(n.clone(), (buf.clone(), source));
                    (buf, true)
                }
            }
            Begin::Resume { offset, .. } => {
                let Some((buf, _)) = st.parts.get(&n).cloned() else {
                    return Err(not_found(rel));
                };
                if !st.busy.insert(n.clone()) {
                    return Ok(None);
                }
                buf.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .truncate(offset as usize);
                (buf, true)
            }
        };
        drop(st);
        Ok(Some(Box::new(MemUpload {
            store: self.clone(),
            rel: n,
            buf,
            part,
            done: false,
        })))
    }

    fn mkdir(&self, rel: &str) -> Result<()> {
        let n = self.canon(rel)?;
        let mut st = self.lock();
        match st.nodes.get(&n) {
            Some(Node::Dir(_)) => Ok(()),
            Some(_) => Err(Error::other(format!(
                "'{rel}' exists and is not a directory"
            ))),
            None => {
                st.nodes.insert(n, Node::Dir(BLANK));
                Ok(())
            }
        }
    }

    fn symlink(&self, rel: &str, target: &str) -> Result<()> {
        let n = self.canon(rel)?;
        crate::fsutil::check_link_target(parent(&n), target)?;
        self.lock().nodes.insert(n, Node::Link(target.to_string()));
        Ok(())
    }

    fn make_durable(&self, _rels: &[String]) -> Result<()> {
        // Nothing here outlives the process: there is nothing to flush.
        Ok(())
    }

    fn set_meta(&self, rel: &str, meta: &Meta) -> Result<()> {
        let n = normalize(rel)?;
        let mut st = self.lock();
        match st.nodes.get_mut(&n) {
            Some(Node::Dir(m)) | Some(Node::File(_, m)) => {
                *m = Meta {
                    size: m.size,
                    ..*meta
                };
                Ok(())
            }
            Some(Node::Link(_)) => Ok(()),
            None => Err(not_found(rel)),
        }
    }

    fn remove(&self, rel: &str, recursive: bool) -> Result<(u64, u64)> {
        let n = normalize(rel)?;
        if n.is_empty() {
            return Err(Error::permission("the share root itself cannot be removed"));
        }
        let mut st = self.lock();
        match st.nodes.get(&n) {
            None => Err(not_found(rel)),
            Some(Node::Dir(_)) if !recursive => {
                Err(Error::usage(format!("'{rel}' is a directory (use -r)")))
            }
            Some(Node::Dir(_)) => {
                let below: Vec<String> = st
                    .nodes
                    .keys()
                    .filter(|p| **p == n || p.strip_prefix(&n).is_some_and(|r| r.starts_with('/')))
                    .cloned()
                    .collect();
                let (mut files, mut dirs) = (0, 0);
                for p in below {
                    match st.nodes.remove(&p) {
                        Some(Node::Dir(_)) => dirs += 1,
                        _ => files += 1,
                    }
                }
                Ok((files, dirs))
            }
            Some(_) => {
                st.nodes.remove(&n);
                st.parts.remove(&n);
                Ok((1, 0))
            }
        }
    }
}
