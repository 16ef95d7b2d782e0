//! Parsing of command-line locations: `HOST:PATH` (scp style, default
//! port), `fts://HOST[:PORT]/PATH`, IPv6 as `[::1]:PATH` or
//! `fts://[::1]:PORT/PATH`. Anything else is local; a local path that
//! contains `:` is written `./a:b` (a colon after the first `/` is never a
//! host separator, as in scp).
//!
//! `HOST:7390:` and `HOST:7390` look like a port after the host and are
//! refused (scp would copy to a file named `7390:` on the default port);
//! the port goes in a URL, `fts://HOST:7390/`, and a remote file whose
//! name is all digits is written `HOST:./7390`. The path of an `fts://`
//! URL is percent-decoded (`new%20name.txt`).

use crate::error::{Error, Result};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

/// What the path of an `fts://` URL shows encoded (so that it parses back).
const URL_PATH: &AsciiSet = &CONTROLS.add(b' ').add(b'%').add(b'#').add(b'?');

/// The port `fts serve` listens on and clients dial when none is given.
pub const DEFAULT_PORT: u16 = 7387;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub host: String,
    pub port: u16,
    /// Relative to the share root as typed (may end in `/`); `""` is the root.
    pub path: String,
}

impl Remote {
    /// `host:port` as used for dialing and for known_hosts (IPv6 in brackets).
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The same server with another path.
    pub fn with_path(&self, path: impl Into<String>) -> Remote {
        Remote {
            path: path.into(),
            ..self.clone()
        }
    }
}

impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = utf8_percent_encode(&self.path, URL_PATH);
        write!(f, "fts://{}/{path}", self.host_port())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(std::path::PathBuf),
    Remote(Remote),
}

/// Classifies a command-line argument as local or remote.
pub fn parse_location(s: &str) -> Result<Location> {
    if let Some(rest) = s.strip_prefix("fts://") {
        return parse_url(rest, s).map(Location::Remote);
    }
    if s.starts_with('[') {
        let end = s
            .find(']')
            .ok_or_else(|| Error::usage(format!("'{s}': unterminated '[' in IPv6 address")))?;
        let host = &s[1..end];
        let rest = &s[end + 1..];
        let path = rest
            .strip_prefix(':')
            .ok_or_else(|| Error::usage(format!("'{s}': expected ':' after ']'")))?;
        check_host(host, s)?;
        check_not_port(s, &format!("[{host}]"), path)?;
        return Ok(Location::Remote(Remote {
            host: host.to_string(),
            port: DEFAULT_PORT,
            path: path.to_string(),
        }));
    }
    match (s.find(':'), s.find('/')) {
        (Some(c), slash) if slash.is_none_or(|sl| c < sl) && c > 0 => {
            let host = &s[..c];
            check_host(host, s)?;
            check_not_port(s, host, &s[c + 1..])?;
            Ok(Location::Remote(Remote {
                host: host.to_string(),
                port: DEFAULT_PORT,
                path: s[c + 1..].to_string(),
            }))
        }
        _ => Ok(Location::Local(s.into())),
    }
}

/// Like [`parse_location`] but the argument must be remote.
pub fn parse_remote(s: &str) -> Result<Remote> {
    match parse_location(s)? {
        Location::Remote(r) => Ok(r),
        Location::Local(_) => Err(Error::usage(format!(
            "'{s}' is not a remote location (expected HOST:PATH or fts://HOST[:PORT]/PATH)"
        ))),
    }
}

/// Refuses a scp-style path that starts with a port number (`7390` or
/// `7390:…`): almost always `HOST:PORT` typed where a URL was meant.
fn check_not_port(whole: &str, host: &str, path: &str) -> Result<()> {
    let (head, rest) = match path.split_once(':') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    if head.is_empty() || !head.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(());
    }
    let rest = rest.unwrap_or("");
    Err(Error::usage(format!(
        "'{whole}' looks like HOST:PORT; a port goes in a URL: fts://{host}:{head}/{rest} \
         (for a remote file named '{head}', write {host}:./{head})"
    )))
}

fn check_host(host: &str, whole: &str) -> Result<()> {
    // Brackets only delimit an IPv6 address and are never part of a host:
    // `fts://]::5` used to yield the host `]:`, whose `fts://` form
    // (`[]:]:5`) no longer parses and which keys known_hosts by garbage
    // (found by fuzz/fuzz_targets/remote_path.rs).
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '/' | '@' | '[' | ']'))
    {
        return Err(Error::usage(format!("'{whole}': invalid host '{host}'")));
    }
    Ok(())
}

fn parse_url(rest: &str, whole: &str) -> Result<Remote> {
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let (host, port) = if let Some(a) = authority.strip_prefix('[') {
        let end = a
            .find(']')
            .ok_or_else(|| Error::usage(format!("'{whole}': unterminated '['")))?;
        let port = &a[end + 1..];
        let port = match port.strip_prefix(':') {
            Some(p) => Some(p),
            None if port.is_empty() => None,
            None => return Err(Error::usage(format!("'{whole}': junk after ']'"))),
        };
        (&a[..end], port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    check_host(host, whole)?;
    let path = percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| Error::usage(format!("'{whole}': the path is not UTF-8 once decoded")))?;
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| Error::usage(format!("'{whole}': invalid port '{p}'")))?,
    };
    Ok(Remote {
        host: host.to_string(),
        port,
        path: path.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(host: &str, port: u16, path: &str) -> Location {
        Location::Remote(Remote {
            host: host.into(),
            port,
            path: path.into(),
        })
    }

    #[test]
    fn forms() {
        let p = DEFAULT_PORT;
        assert_eq!(parse_location("host:").unwrap(), r("host", p, ""));
        assert_eq!(parse_location("host:a/b").unwrap(), r("host", p, "a/b"));
        assert_eq!(parse_location("[::1]:x").unwrap(), r("::1", p, "x"));
        assert_eq!(
            parse_location("fts://h:99/a/b/").unwrap(),
            r("h", 99, "a/b/")
        );
        assert_eq!(parse_location("fts://h").unwrap(), r("h", p, ""));
        assert_eq!(parse_location("fts://[::1]:5/x").unwrap(), r("::1", 5, "x"));
        assert_eq!(parse_location("fts://[::1]/x").unwrap(), r("::1", p, "x"));
        assert_eq!(
            parse_location("./a:b").unwrap(),
            Location::Local("./a:b".into())
        );
        assert_eq!(
            parse_location("dir/a:b").unwrap(),
            Location::Local("dir/a:b".into())
        );
        assert_eq!(
            parse_location("plain").unwrap(),
            Location::Local("plain".into())
        );
        assert_eq!(
            parse_location("/abs").unwrap(),
            Location::Local("/abs".into())
        );
    }

    #[test]
    fn bad_forms() {
        for s in [
            "fts://h:0/",
            "fts://h:x/",
            "fts://:5/",
            "[::1",
            "[::1]x",
            "fts://[::1",
        ] {
            assert!(parse_location(s).is_err(), "{s}");
        }
        assert!(parse_remote("local").is_err());
    }

    /// Inputs the remote_path fuzz target found: a host holding a bracket
    /// was accepted, and its `fts://` form did not parse back.
    #[test]
    fn fuzz_regressions_brackets_in_hosts() {
        for s in [
            "fts://]::5",
            "fts://\u{1b}::1]:5/x",
            "[[]:x",
            "fts://[[]:5/",
            "a]:x",
        ] {
            assert!(parse_location(s).is_err(), "{s:?} accepted");
        }
        // Every accepted remote shows as an fts:// URL that parses back.
        for s in ["h:x", "[::1]:x", "fts://a:b:5/p", "fts://[fe80::1%eth0]:9/"] {
            let Location::Remote(r) = parse_location(s).unwrap() else {
                panic!("{s} is local")
            };
            assert_eq!(parse_remote(&r.to_string()).unwrap(), r, "{s}");
        }
    }

    #[test]
    fn port_looking_paths_are_refused() {
        for s in [
            "localhost:7390:",
            "localhost:7399",
            "h:22:dir/x",
            "[::1]:7387:",
        ] {
            let e = parse_location(s).unwrap_err();
            assert_eq!(e.kind, crate::error::ErrorKind::Usage, "{s}");
            assert!(e.message.contains("fts://"), "{s}: {}", e.message);
        }
        assert_eq!(
            parse_location("h:./7390").unwrap(),
            r("h", DEFAULT_PORT, "./7390")
        );
        assert_eq!(
            parse_location("h:7390x").unwrap(),
            r("h", DEFAULT_PORT, "7390x")
        );
        assert!(parse_location("localhost:7390:")
            .unwrap_err()
            .message
            .contains("fts://localhost:7390/"));
    }

    #[test]
    fn url_paths_are_percent_decoded_and_shown_encoded() {
        let x = parse_remote("fts://h:9/new%20name.txt").unwrap();
        assert_eq!(x.path, "new name.txt");
        assert_eq!(x.to_string(), "fts://h:9/new%20name.txt");
        assert_eq!(parse_remote("fts://h/%C3%BC").unwrap().path, "ü");
        assert_eq!(parse_remote("fts://h/100%25").unwrap().path, "100%");
        assert!(parse_remote("fts://h/%FF").is_err());
        let odd = Remote {
            host: "h".into(),
            port: 5,
            path: "a b%c#d?e".into(),
        };
        assert_eq!(parse_remote(&odd.to_string()).unwrap(), odd);
    }

    #[test]
    fn host_port_brackets_ipv6() {
        let Location::Remote(x) = parse_location("[::1]:").unwrap() else {
            panic!()
        };
        assert_eq!(x.host_port(), format!("[::1]:{DEFAULT_PORT}"));
    }
}
