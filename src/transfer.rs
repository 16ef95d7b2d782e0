//! Streaming one file's bytes across a frame connection. Disk I/O and
//! BLAKE3 hashing run on a blocking thread and hand chunks to the async
//! side through a channel of depth [`DEPTH`], so memory per transfer is
//! bounded by `DEPTH × CHUNK` whatever the file size, and hashing overlaps
//! with TLS.

use crate::error::{Error, Result};
use crate::proto::{Frame, FrameReader, FrameWriter, Msg, CHUNK};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

const DEPTH: usize = 4;

enum ReadItem {
    Chunk(Vec<u8>),
    Done(String),
    Failed(Error),
}

/// Why sending stopped early without a network failure.
#[derive(Debug)]
pub enum SendError {
    /// The local file could not be read, or changed while it was read: the
    /// peer should be told to discard what it got.
    Local(Error),
    /// The connection failed.
    Net(Error),
}

/// Sends exactly `size` bytes of `file` as data frames and returns their
/// BLAKE3 hash. A file that shrinks, grows or is modified while it is read
/// is reported as [`SendError::Local`], never sent as a mix.
pub async fn send_file<W: AsyncWrite + Unpin>(
    w: &mut FrameWriter<W>,
    mut file: File,
    size: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<String, SendError> {
    let (tx, mut rx) = mpsc::channel::<ReadItem>(DEPTH);
    let reader = tokio::task::spawn_blocking(move || {
        let start = file.metadata().ok().map(|m| (m.mtime(), m.mtime_nsec()));
        let mut hasher = blake3::Hasher::new();
        let mut left = size;
        while left > 0 {
            let want = left.min(CHUNK as u64) as usize;
            let mut buf = vec![0u8; want];
            let mut got = 0;
            while got < want {
                match file.read(&mut buf[got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.blocking_send(ReadItem::Failed(Error::other(format!(
                            "read error: {e}"
                        ))));
                        return;
                    }
                }
            }
            if got < want {
                let _ = tx.blocking_send(ReadItem::Failed(Error::other(
                    "file shrank while it was being sent",
                )));
                return;
            }
            hasher.update(&buf);
            left -= want as u64;
            if tx.blocking_send(ReadItem::Chunk(buf)).is_err() {
                return;
            }
        }
        let now = file.metadata().ok();
        let changed = match (start, now) {
            (Some(s), Some(m)) => s != (m.mtime(), m.mtime_nsec()) || m.len() != size,
            _ => true,
        };
        let item = if changed {
            ReadItem::Failed(Error::other("file changed while it was being sent"))
        } else {
            ReadItem::Done(hasher.finalize().to_hex().to_string())
        };
        let _ = tx.blocking_send(item);
    });
    let mut out = Err(SendError::Local(Error::other("file reader stopped")));
    while let Some(item) = rx.recv().await {
        match item {
            ReadItem::Chunk(c) => {
                if let Err(e) = w.data(&c).await {
                    out = Err(SendError::Net(e));
                    break;
                }
                progress(c.len() as u64);
            }
            ReadItem::Done(h) => {
                out = Ok(h);
                break;
            }
            ReadItem::Failed(e) => {
                out = Err(SendError::Local(e));
                break;
            }
        }
    }
    drop(rx);
    let _ = reader.await;
    out
}

/// How receiving ended.
#[derive(Debug)]
pub enum Received {
    /// All bytes arrived; the BLAKE3 hash of what was written, or the local
    /// write error that made us discard the rest.
    Complete(Result<String>),
    /// The peer sent a control message before all bytes arrived (e.g. an
    /// abort); whatever was written must be discarded.
    Interrupted(Msg),
}

/// Receives exactly `size` bytes of data frames into `file` (or discards
/// them when `file` is `None`, to keep the stream in step after a local
/// error). A network or protocol error is returned as `Err`.
pub async fn receive_file<R: AsyncRead + Unpin>(
    r: &mut FrameReader<R>,
    file: Option<File>,
    size: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Received> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(DEPTH);
    let writer = file.map(|mut f| {
        tokio::task::spawn_blocking(move || -> Result<String> {
            let mut hasher = blake3::Hasher::new();
            while let Some(chunk) = rx.blocking_recv() {
                hasher.update(&chunk);
                f.write_all(&chunk)
                    .map_err(|e| Error::other(format!("write error: {e}")))?;
            }
            Ok(hasher.finalize().to_hex().to_string())
        })
    });
    let mut tx = writer.as_ref().map(|_| tx);
    let mut left = size;
    while left > 0 {
        match r.read().await? {
            Frame::Data(d) => {
                if d.len() as u64 > left {
                    return Err(Error::protocol("more data than announced"));
                }
                left -= d.len() as u64;
                progress(d.len() as u64);
                if let Some(t) = &tx {
                    if t.send(d).await.is_err() {
                        tx = None; // writer failed: drain the rest
                    }
                }
            }
            Frame::Control(m) => {
                drop(tx);
                if let Some(w) = writer {
                    let _ = w.await;
                }
                return Ok(Received::Interrupted(m));
            }
        }
    }
    drop(tx);
    Ok(Received::Complete(match writer {
        Some(w) => w
            .await
            .unwrap_or_else(|e| Err(Error::other(format!("writer failed: {e}")))),
        None => Err(Error::other("discarded")),
    }))
}

/// BLAKE3 of a whole local file, streamed.
pub fn hash_file(path: &std::path::Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| Error::local_io(path, e))?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::local_io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn send_and_receive_roundtrip() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        let data: Vec<u8> = (0..(CHUNK * 3 + 17))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        std::fs::write(&src, &data).unwrap();
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut w = FrameWriter::new(a, Duration::from_secs(5));
        let mut r = FrameReader::new(b, Duration::from_secs(5));
        let f = File::open(&src).unwrap();
        let size = data.len() as u64;
        let dst = d.path().join("dst");
        let out = File::create(&dst).unwrap();
        let send = async {
            let h = send_file(&mut w, f, size, &|_| {}).await.unwrap();
            w.flush().await.unwrap();
            h
        };
        let recv = receive_file(&mut r, Some(out), size, &|_| {});
        let (h1, got) = tokio::join!(send, recv);
        match got.unwrap() {
            Received::Complete(Ok(h2)) => assert_eq!(h1, h2),
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read(&dst).unwrap(), data);
        assert_eq!(hash_file(&src).unwrap(), h1);
    }

    #[tokio::test]
    async fn shrinking_file_is_a_local_error() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::write(&src, b"short").unwrap();
        let (a, _b) = tokio::io::duplex(1 << 20);
        let mut w = FrameWriter::new(a, Duration::from_secs(5));
        let r = send_file(&mut w, File::open(&src).unwrap(), 100, &|_| {}).await;
        assert!(matches!(r, Err(SendError::Local(_))));
    }
}
