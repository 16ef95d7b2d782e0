//! The plain HTML index of a directory at `GET /files/DIR/`: a table of
//! links, sizes and modification times that works without JavaScript and
//! with `wget -r` or any crawler, like a simple HTTPS file server. The
//! dashboard's live view of the same directory (`/#files:DIR`) is linked
//! from it.
//!
//! The page is listed through the store like every other view of the
//! share, behind the same access password as downloads (the router's
//! gate), and kept to what the Content-Security-Policy allows: no script,
//! no inline style, only `/app.css`. Names are HTML-escaped; link targets
//! are relative (one percent-encoded segment, so no name can become a
//! scheme, a query or a fragment). Directories come first, then files,
//! each by name. A symlink is listed as what it is, with its target as
//! text; its link is the store's to resolve, which refuses links that lead
//! out of the share (403).

use super::files::blocking;
use super::{error_response, Conn};
use crate::model::{Entry, EntryKind};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::fmt::Write;
use std::time::{Duration, SystemTime};

/// What stays as it is in a link's path segment: RFC 3986 unreserved.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The index page of directory `rel` (`""`: the share root).
pub(super) async fn page(c: &Conn, rel: String) -> Response {
    let store = c.shared.opts.store.clone();
    let dir = rel.clone();
    let listed = blocking(move || crate::server::listing(&*store, &dir, false, false)).await;
    match listed {
        Ok(entries) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            render(&rel, entries),
        )
            .into_response(),
        Err(e) => error_response(&e),
    }
}

/// `s` with the characters HTML gives a meaning to escaped.
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn modified(e: &Entry) -> String {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(e.mtime.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The page for directory `rel` holding `entries` (their paths are
/// share-relative).
pub(super) fn render(rel: &str, mut entries: Vec<Entry>) -> String {
    let name_of = |e: &Entry| e.path.rsplit('/').next().unwrap_or("").to_string();
    entries.sort_by_key(|e| (e.kind != EntryKind::Dir, name_of(e)));
    let shown = if rel.is_empty() {
        "/".to_string()
    } else {
        format!("/{rel}/")
    };
    let title = format!("Index of {}", escape(&shown));
    let live = format!("/#files:{}", utf8_percent_encode(rel, NON_ALPHANUMERIC));
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<link rel=\"stylesheet\" href=\"/app.css\">\n</head>\n\
         <body>\n<header><h1>{title}</h1><nav><a href=\"{live}\">Live view on the dashboard</a></nav></header>\n\
         <main><div class=\"card scroll\">\n<table id=\"files-list\">\n\
         <thead><tr><th>Name</th><th>Size (bytes)</th><th>Modified (UTC)</th></tr></thead>\n<tbody>\n"
    );
    if !rel.is_empty() {
        h.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for e in &entries {
        let name = name_of(e);
        let href = utf8_percent_encode(&name, SEGMENT).to_string();
        let (href, text, size, note) = match e.kind {
            EntryKind::Dir => (format!("{href}/"), format!("{name}/"), "-".into(), None),
            EntryKind::Symlink => (href, name, "-".into(), e.target.as_deref()),
            _ => (href, name, e.size.to_string(), None),
        };
        let note = note
            .map(|t| format!(" → {}", escape(t)))
            .unwrap_or_default();
        let _ = writeln!(
            h,
            "<tr><td class=\"file\"><a href=\"{}\">{}</a>{note}</td><td class=\"size\">{size}</td><td>{}</td></tr>",
            escape(&href),
            escape(&text),
            modified(e),
        );
    }
    if entries.is_empty() {
        h.push_str("<tr><td colspan=\"3\">(empty)</td></tr>\n");
    }
    h.push_str("</tbody>\n</table>\n</div></main>\n</body>\n</html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: EntryKind, size: u64, target: Option<&str>) -> Entry {
        Entry {
            path: path.into(),
            kind,
            size,
            mtime: 1_700_000_000,
            mtime_ns: 0,
            mode: 0o644,
            target: target.map(str::to_string),
            hash: None,
        }
    }

    #[test]
    fn names_are_escaped_links_encoded_dirs_first() {
        let page = render(
            "a b",
            vec![
                entry("a b/z<i>&\"'.txt", EntryKind::File, 42, None),
                entry("a b/javascript:x", EntryKind::File, 1, None),
                entry("a b/sub dir", EntryKind::Dir, 0, None),
                entry("a b/l", EntryKind::Symlink, 0, Some("../<out>")),
            ],
        );
        assert!(page.contains("<title>Index of /a b/</title>"), "{page}");
        assert!(page.contains("<a href=\"../\">../</a>"), "{page}");
        assert!(page.contains("href=\"/#files:a%20b\""), "{page}");
        assert!(
            page.contains(
                "<a href=\"z%3Ci%3E%26%22%27.txt\">z&lt;i&gt;&amp;&quot;&#39;.txt</a></td><td class=\"size\">42</td><td>2023-11-14T22:13:20Z</td>"
            ),
            "{page}"
        );
        assert!(page.contains("<a href=\"javascript%3Ax\">"), "{page}");
        assert!(
            page.contains("<a href=\"l\">l</a> → ../&lt;out&gt;"),
            "{page}"
        );
        let dir = page.find("sub%20dir/").unwrap();
        assert!(dir < page.find("javascript%3Ax").unwrap(), "{page}");
        assert!(
            !page.contains("<script") && !page.contains("style="),
            "{page}"
        );
        let root = render("", vec![]);
        assert!(!root.contains("../"), "{root}");
        assert!(root.contains("(empty)"), "{root}");
    }
}
