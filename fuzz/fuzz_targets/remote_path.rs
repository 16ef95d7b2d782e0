//! Arbitrary strings into `remote::parse_location` (`HOST:PATH`,
//! `[v6]:PATH`, `fts://HOST[:PORT]/PATH`, local paths).
//!
//! Asserts: a remote has a non-empty host without whitespace, `/` or `@`,
//! and a non-zero port; its `fts://` form (Display) parses back to the
//! same remote; a local location is the argument unchanged.
#![no_main]

use fts::remote::{parse_location, Location};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match parse_location(s) {
        Ok(Location::Remote(r)) => {
            assert!(!r.host.is_empty());
            assert!(!r
                .host
                .chars()
                .any(|c| c.is_whitespace() || c == '/' || c == '@'));
            assert_ne!(r.port, 0);
            let shown = r.to_string();
            match parse_location(&shown) {
                Ok(Location::Remote(back)) => assert_eq!(back, r, "{s:?} -> {shown:?}"),
                other => panic!("{s:?} -> {shown:?} -> {other:?}"),
            }
        }
        Ok(Location::Local(p)) => assert_eq!(p.as_os_str(), s),
        Err(_) => {}
    }
});
