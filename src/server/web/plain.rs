//! Plain `http://` on the TLS port. A TLS connection starts with a
//! handshake record (first byte 0x16); an HTTP/1.x request starts with its
//! method, an ASCII letter. The accept loop peeks at the first byte before
//! the TLS handshake, and a connection that begins with a letter gets a
//! short HTTP/1.1 answer here instead of TLS alert bytes (which browsers
//! and curl show as `HTTP/0.9` garbage): a `GET` or `HEAD` is redirected
//! (301) to the same path over `https://` on this port, anything else gets
//! a 400; both bodies say to use https. Then the connection is closed.
//!
//! Bounds: the request head is read for at most 8 KiB and until the
//! handshake deadline; after the answer, what the client still sends is
//! read and dropped for at most 64 KiB or 2 s (closing with unread data
//! would reset the connection and could lose the answer).

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const MAX_HEAD: usize = 8 * 1024;

/// True when a connection's first byte is that of an HTTP request rather
/// than a TLS record.
pub(in crate::server) fn looks_like_http(first: u8) -> bool {
    first.is_ascii_alphabetic()
}

/// Answers the plain HTTP request on `tcp` and closes it; returns what
/// happened, for the log.
pub(in crate::server) async fn answer(mut tcp: TcpStream, deadline: Instant) -> String {
    let port = tcp.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while head.len() < MAX_HEAD && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let (response, what) = response(&head, port);
    let _ = tokio::time::timeout_at(deadline, async {
        tcp.write_all(response.as_bytes()).await?;
        tcp.shutdown().await
    })
    .await;
    let drain_until = Instant::now() + Duration::from_secs(2);
    let mut drained = 0;
    while drained < 64 * 1024 {
        match tokio::time::timeout_at(drain_until, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
    format!("plain HTTP on the TLS port ({what}); use https://")
}

/// The answer to a plain request whose head (possibly cut) is `head`,
/// on local port `port`; and a word for the log.
fn response(head: &[u8], port: u16) -> (String, &'static str) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let mut request = lines.next().unwrap_or("").split(' ');
    let method = request.next().unwrap_or("");
    let target = request.next().unwrap_or("");
    let host = lines
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case("host").then(|| v.trim())
        })
        .and_then(host_name);
    let base = match host {
        Some(h) => format!("https://{h}:{port}"),
        None => format!("https://HOST:{port}"),
    };
    let redirect = matches!(method, "GET" | "HEAD") && host.is_some() && safe_target(target);
    let (status, location, body, what) = if redirect {
        let to = format!("{base}{target}");
        let body = format!("This port speaks HTTPS only: use {to}\n");
        ("301 Moved Permanently", Some(to), body, "redirected")
    } else {
        let body =
            format!("This port speaks HTTPS only: use {base}/ (plain http:// is not served)\n");
        ("400 Bad Request", None, body, "answered 400")
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
        if method == "HEAD" { 0 } else { body.len() }
    );
    if let Some(to) = location {
        out.push_str(&format!("Location: {to}\r\n"));
    }
    out.push_str("\r\n");
    if method != "HEAD" {
        out.push_str(&body);
    }
    (out, what)
}

/// The host part of a `Host` header (without its port), if it is a plain
/// name or address: nothing that could break out of a header or a URL.
fn host_name(h: &str) -> Option<&str> {
    let name = if h.starts_with('[') {
        &h[..=h.find(']')?]
    } else {
        h.split(':').next()?
    };
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    ok.then_some(name)
}

/// An origin-form request target made of visible ASCII only.
fn safe_target(t: &str) -> bool {
    t.starts_with('/')
        && !t.starts_with("//")
        && t.len() <= 4096
        && t.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_gets_and_refuses_the_rest() {
        let (r, _) = response(
            b"GET /files/a%20b?x=1 HTTP/1.1\r\nHost: example.org:8080\r\n\r\n",
            7387,
        );
        assert!(r.starts_with("HTTP/1.1 301 "), "{r}");
        assert!(
            r.contains("\r\nLocation: https://example.org:7387/files/a%20b?x=1\r\n"),
            "{r}"
        );
        let (r, _) = response(b"GET / HTTP/1.1\r\nhost: [::1]:7387\r\n\r\n", 7387);
        assert!(r.contains("Location: https://[::1]:7387/\r\n"), "{r}");
        let (r, _) = response(b"POST /api/admin/login HTTP/1.1\r\nHost: h\r\n\r\n", 1);
        assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
        assert!(r.contains("use https://h:1/"), "{r}");
        // Nothing from the request gets into a header unchecked.
        for bad in [
            &b"GET http://evil/ HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            b"GET //evil/ HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: evil.org/x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"GET",
        ] {
            let (r, _) = response(bad, 1);
            assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
            assert!(!r.contains("Location"), "{r}");
        }
        let (r, _) = response(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", 2);
        assert!(
            r.ends_with("\r\n\r\n") && r.contains("Content-Length: 0"),
            "{r}"
        );
    }
}
