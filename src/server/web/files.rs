//! Browser access to the share: listing a directory (`/api/ls`),
//! downloading a file (`GET /files/PATH`, with HTTP Range so browsers and
//! `curl -C -` resume) and uploading one (`PUT /files/PATH`, streamed to a
//! temporary file beside the target and renamed into place only when
//! complete, like `fts put`).
//!
//! URL paths are taken apart here, before the root sees them: each
//! segment is percent-decoded on its own, and a segment that decodes to a
//! `/` or `\` (an encoded separator) is refused, as is anything the root
//! refuses (`..`, NUL, absolute paths, symlinks that leave the share).

use super::{error_response, Conn};
use crate::engine::io::read_full;
use crate::error::{Error, Result};
use crate::model::{EntryKind, Meta};
use crate::server::LogEvent;
use crate::store::{Begin, Content};
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use std::io::{Seek, Write};
use std::time::{Duration, SystemTime};

/// Bytes read from disk per body chunk of a download.
const CHUNK: usize = 64 * 1024;

/// The share-relative path named by a request path under `prefix`.
/// (`pub` only so that `fts::fuzzing` can hand it to the fuzz targets.)
pub fn rel_from_uri(path: &str, prefix: &str) -> Result<String> {
    let rest = path
        .strip_prefix(prefix)
        .ok_or_else(|| Error::not_found("not found"))?;
    let mut parts = Vec::new();
    for seg in rest.split('/').filter(|s| !s.is_empty()) {
        let decoded = percent_encoding::percent_decode_str(seg)
            .decode_utf8()
            .map_err(|_| Error::usage("path is not valid UTF-8"))?;
        if decoded.contains('/') || decoded.contains('\\') {
            return Err(Error::permission("encoded path separators are refused"));
        }
        parts.push(decoded.into_owned());
    }
    crate::paths::normalize(&parts.join("/"))
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::other(format!("server task failed: {e}")))?
}

#[derive(Deserialize)]
pub(super) struct Ls {
    #[serde(default)]
    path: String,
}

/// `GET /api/ls?path=DIR`: `{"path", "read_only", "entries": [Entry]}`.
pub(super) async fn ls(State(c): State<Conn>, Query(q): Query<Ls>) -> Response {
    let store = c.shared.opts.store.clone();
    let rel = q.path.clone();
    match blocking(move || crate::server::listing(&*store, &rel, false, false)).await {
        Ok(mut entries) => {
            entries.sort_by(|a, b| a.path.cmp(&b.path));
            axum::Json(serde_json::json!({
                "path": crate::paths::normalize(&q.path).unwrap_or_default(),
                "read_only": c.shared.opts.read_only || c.shared.opts.store.is_single_file(),
                "entries": entries,
            }))
            .into_response()
        }
        Err(e) => error_response(&e),
    }
}

/// Which bytes of a file a request wants.
#[derive(Debug, PartialEq, Eq)]
pub enum Want {
    All,
    /// `start..=end`.
    Part(u64, u64),
    Unsatisfiable,
}

/// Reads a `Range` header for a file of `len` bytes. One byte range is
/// served as asked; several ranges, other units or bad syntax get the
/// whole file (RFC 9110 lets a server ignore a Range it will not serve).
pub fn want(range: Option<&str>, len: u64) -> Want {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Want::All;
    };
    if spec.contains(',') {
        return Want::All;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Want::All;
    };
    let num = |s: &str| s.trim().parse::<u64>().ok();
    match (a.trim().is_empty(), b.trim().is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match num(b) {
            Some(0) => Want::Unsatisfiable,
            Some(n) if len > 0 => Want::Part(len.saturating_sub(n), len - 1),
            Some(_) => Want::Unsatisfiable,
            None => Want::All,
        },
        (false, _) => {
            let Some(start) = num(a) else {
                return Want::All;
            };
            let end = if b.trim().is_empty() {
                Some(u64::MAX)
            } else {
                num(b)
            };
            match end {
                None => Want::All,
                Some(end) if end < start => Want::All,
                Some(_) if start >= len => Want::Unsatisfiable,
                Some(end) => Want::Part(start, end.min(len - 1)),
            }
        }
        (true, true) => Want::All,
    }
}

/// Counts a download's bytes and logs it when the body is done or dropped.
struct Sending {
    conn: Conn,
    path: String,
    bytes: u64,
    whole: bool,
    complete: bool,
}

impl Drop for Sending {
    fn drop(&mut self) {
        let complete = self.complete;
        if complete && self.whole {
            self.conn.shared.hub.file_done(true);
        }
        self.conn.shared.log(LogEvent::WebDownload {
            addr: self.conn.peer.to_string(),
            path: self.path.clone(),
            bytes: self.bytes,
            complete,
        });
    }
}

/// `GET /files/PATH` (and HEAD): the file, or the part of it a Range asks
/// for. A directory is served as a plain HTML index at `/files/DIR/` (see
/// [`super::index`]); without the trailing slash it redirects there, as
/// web servers do, so that the index's relative links resolve.
pub(super) async fn download(
    State(c): State<Conn>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let rel = match rel_from_uri(uri.path(), "/files") {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let store = c.shared.opts.store.clone();
    let rel2 = rel.clone();
    let opened = blocking(move || {
        if store.stat(&rel2)?.is_some_and(|e| e.kind == EntryKind::Dir) {
            return Ok(None);
        }
        let (content, meta) = store.open(&rel2)?;
        Ok(Some((content, meta, store.display(&rel2)?)))
    })
    .await;
    let (file, meta, shown): (Box<dyn Content>, Meta, String) = match opened {
        Ok(Some(x)) => x,
        Ok(None) if uri.path().ends_with('/') => return super::index::page(&c, rel).await,
        Ok(None) => {
            // The path as the client sent it (still percent-encoded; hyper
            // let no CR/LF into it), plus the slash.
            let to = format!("{}/", uri.path());
            return match HeaderValue::from_str(&to) {
                Ok(v) => (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, v)]).into_response(),
                Err(_) => error_response(&Error::usage("bad path")),
            };
        }
        Err(e) => return error_response(&e),
    };
    let len = meta.size;
    let mtime = SystemTime::UNIX_EPOCH
        + Duration::new(meta.mtime.max(0) as u64, meta.mtime_ns.min(999_999_999));
    let etag = format!("\"{:x}-{:x}-{:x}\"", len, meta.mtime, meta.mtime_ns);
    let last_modified = httpdate::fmt_http_date(mtime);
    // A resumed download of a file that changed meanwhile gets it whole.
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v == etag || v == last_modified);
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let wanted = if if_range_ok {
        want(range, len)
    } else {
        Want::All
    };
    let name = shown.rsplit('/').next().unwrap_or("download").to_string();
    let mut res = Response::builder()
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, &etag)
        .header(header::LAST_MODIFIED, &last_modified)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_DISPOSITION, disposition(&name));
    let (start, count) = match wanted {
        Want::All => (0, len),
        Want::Part(s, e) => {
            res = res
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_RANGE, format!("bytes {s}-{e}/{len}"));
            (s, e - s + 1)
        }
        Want::Unsatisfiable => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{len}"))],
            )
                .into_response()
        }
    };
    res = res.header(header::CONTENT_LENGTH, count);
    if method == Method::HEAD {
        return res.body(Body::empty()).unwrap_or_default();
    }
    let state = (
        Some(file),
        Sending {
            conn: c.clone(),
            path: shown,
            bytes: 0,
            whole: start == 0 && count == len,
            complete: count == 0,
        },
        start,
        count,
    );
    // The store's reads are blocking: each chunk is read on a blocking
    // thread, one at a time, so memory stays one chunk per download.
    let body = futures_util::stream::unfold(state, |(f, mut s, at, left)| async move {
        let mut f = f?;
        if left == 0 {
            return None;
        }
        let want = left.min(CHUNK as u64) as usize;
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; want];
            let r = f
                .seek(std::io::SeekFrom::Start(at))
                .and_then(|_| read_full(&mut f, &mut buf));
            (f, buf, r)
        })
        .await;
        match read {
            // The end (or a file that shrank: the body stays short and the
            // download counts as cut off).
            Ok((_, _, Ok(0))) => None,
            Ok((f, mut buf, Ok(n))) => {
                buf.truncate(n);
                s.bytes += n as u64;
                s.conn.shared.hub.web_bytes(true, n as u64);
                let left = left - n as u64;
                if left == 0 {
                    s.complete = true;
                }
                let chunk = axum::body::Bytes::from(buf);
                Some((
                    Ok::<_, std::io::Error>(chunk),
                    (Some(f), s, at + n as u64, left),
                ))
            }
            Ok((_, _, Err(e))) => Some((Err(e), (None, s, at, left))),
            Err(e) => Some((Err(std::io::Error::other(e)), (None, s, at, left))),
        }
    });
    res.body(Body::from_stream(body)).unwrap_or_default()
}

/// `Content-Disposition` for a download: an ASCII fallback name and the
/// exact UTF-8 one (RFC 6266).
fn disposition(name: &str) -> HeaderValue {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // RFC 8187 attr-char: these may stay as they are.
    const ATTR: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'!')
        .remove(b'#')
        .remove(b'$')
        .remove(b'&')
        .remove(b'+')
        .remove(b'-')
        .remove(b'.')
        .remove(b'^')
        .remove(b'_')
        .remove(b'`')
        .remove(b'|')
        .remove(b'~');
    let exact = percent_encoding::utf8_percent_encode(name, ATTR);
    HeaderValue::from_str(&format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{exact}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// `PUT /files/PATH`: stores the request body as PATH. The body goes to a
/// temporary file beside the target as it arrives (never into memory) and
/// replaces the target by an atomic rename only when all of it came and
/// reached the disk; a stalled, cut or failed upload leaves nothing.
pub(super) async fn upload(State(c): State<Conn>, req: Request) -> Response {
    match store(&c, req).await {
        Ok((path, size)) => (
            StatusCode::CREATED,
            axum::Json(serde_json::json!({ "path": path, "size": size })),
        )
            .into_response(),
        Err(e) => error_response(&e),
    }
}

async fn store(c: &Conn, req: Request) -> Result<(String, u64)> {
    let opts = &c.shared.opts;
    if opts.read_only {
        return Err(Error::permission("this share is read-only"));
    }
    if opts.store.is_single_file() {
        return Err(Error::permission(
            "this server shares a single file; uploads are refused",
        ));
    }
    let rel = rel_from_uri(req.uri().path(), "/files")?;
    let name = rel.rsplit('/').next().unwrap_or("");
    if name.is_empty() {
        return Err(Error::usage("say which file to store: PUT /files/NAME"));
    }
    if crate::fsutil::is_temp_name(name) {
        return Err(Error::permission(format!(
            "'{name}' is a name fts keeps for its temporary files"
        )));
    }
    let store = opts.store.clone();
    let rel2 = rel.clone();
    // The same way in as an fts upload: a temporary file the store renames
    // over the target only when everything arrived.
    let (up, mut out) = blocking(move || {
        if store.stat(&rel2)?.is_some_and(|e| e.kind == EntryKind::Dir) {
            return Err(Error::permission(format!("'{rel2}' is a directory")));
        }
        let up = store
            .begin(&rel2, Begin::Temp)?
            .ok_or_else(|| Error::other("busy"))?;
        let out = up.writer()?;
        Ok((up, out))
    })
    .await?;
    let mut body = req.into_body().into_data_stream();
    let mut size = 0u64;
    let limit = opts.io_timeout;
    let mut pending: Vec<u8> = Vec::new();
    let write_err = |e: std::io::Error| Error::other(format!("write error: {e}"));
    loop {
        let chunk = match tokio::time::timeout(limit, body.next()).await {
            Err(_) => {
                return Err(Error::connect(format!(
                    "upload of '{rel}' stalled for {}s",
                    limit.as_secs()
                )))
            }
            Ok(None) => None,
            Ok(Some(Err(e))) => {
                return Err(Error::connect(format!("upload of '{rel}' cut off: {e}")))
            }
            Ok(Some(Ok(b))) => Some(b),
        };
        if let Some(b) = &chunk {
            pending.extend_from_slice(b);
            size += b.len() as u64;
            c.shared.hub.web_bytes(false, b.len() as u64);
        }
        // Written a megabyte at a time on a blocking thread.
        if pending.len() >= 1 << 20 || (chunk.is_none() && !pending.is_empty()) {
            let data = std::mem::take(&mut pending);
            out = blocking(move || {
                out.write_all(&data).map_err(write_err)?;
                Ok(out)
            })
            .await?;
        }
        if chunk.is_none() {
            break;
        }
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let meta = Meta {
        size,
        mtime: now.as_secs() as i64,
        mtime_ns: now.subsec_nanos(),
        mode: 0o644,
    };
    // The browser hears "stored" only once the file is durable, as an fts
    // client does (one file per request: a pass of its own): the data
    // before the rename, so the name never shows data the disk lacks,
    // then the name.
    let (fsync, store, rel2) = (opts.fsync, opts.store.clone(), rel.clone());
    blocking(move || {
        out.flush().map_err(write_err)?;
        drop(out);
        let rels = [rel2];
        if fsync {
            store.make_durable(&rels)?;
        }
        up.commit(&meta)?;
        if fsync {
            store.make_durable(&rels)?;
        }
        Ok(())
    })
    .await?;
    c.shared.hub.file_done(false);
    if fsync {
        c.shared.hub.fsynced(2, 1);
    }
    let shown = opts.store.display(&rel)?;
    c.shared.log(LogEvent::WebUpload {
        addr: c.peer.to_string(),
        path: shown.clone(),
        bytes: size,
    });
    Ok((shown, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(want(None, 10), Want::All);
        assert_eq!(want(Some("bytes=0-4"), 10), Want::Part(0, 4));
        assert_eq!(want(Some("bytes=5-"), 10), Want::Part(5, 9));
        assert_eq!(want(Some("bytes=5-100"), 10), Want::Part(5, 9));
        assert_eq!(want(Some("bytes=-3"), 10), Want::Part(7, 9));
        assert_eq!(want(Some("bytes=-30"), 10), Want::Part(0, 9));
        assert_eq!(want(Some("bytes=10-"), 10), Want::Unsatisfiable);
        assert_eq!(want(Some("bytes=-0"), 10), Want::Unsatisfiable);
        assert_eq!(want(Some("bytes=0-"), 0), Want::Unsatisfiable);
        assert_eq!(want(Some("bytes=4-2"), 10), Want::All);
        assert_eq!(want(Some("bytes=0-1,3-4"), 10), Want::All);
        assert_eq!(want(Some("items=0-1"), 10), Want::All);
        assert_eq!(want(Some("bytes=x-1"), 10), Want::All);
    }

    #[test]
    fn url_paths_cannot_leave_the_root() {
        assert_eq!(
            rel_from_uri("/files/a/b%20c.txt", "/files").unwrap(),
            "a/b c.txt"
        );
        assert_eq!(rel_from_uri("/files", "/files").unwrap(), "");
        assert_eq!(rel_from_uri("/files/", "/files").unwrap(), "");
        for bad in [
            "/files/../etc/passwd",
            "/files/a/../../x",
            "/files/%2e%2e/x",
            "/files/%2E%2E%2Fx",
            "/files/a%2f..%2f..%2fx",
            "/files/a%5c..%5cx",
            "/files/a%00b",
            "/files/%ff",
        ] {
            assert!(rel_from_uri(bad, "/files").is_err(), "{bad} accepted");
        }
        assert_eq!(
            rel_from_uri("/files/a%20b/%C3%BC%3F%23", "/files").unwrap(),
            "a b/ü?#"
        );
    }
}
