//! The web side's URL path and Range parsing (`rel_from_uri`, `want`,
//! reached through `fts::fuzzing`).
//!
//! Input: one mode byte, then the rest.
//! Asserts: a path taken from `/files/...` is normalized (no leading `/`,
//! no `.`/`..`/empty segment, no NUL or backslash) and only accepted
//! under the prefix; a served byte range lies inside the file with
//! start <= end, and a well-formed single range gets exactly the bytes
//! RFC 9110 says.
#![no_main]

use fts::fuzzing::{rel_from_uri, want, Want};
use libfuzzer_sys::fuzz_target;

fn check_part(w: &Want, len: u64) {
    if let Want::Part(a, b) = *w {
        assert!(len > 0 && a <= b && b < len, "part {a}-{b} of {len}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let Ok(path) = std::str::from_utf8(rest) else {
                return;
            };
            let Ok(rel) = rel_from_uri(path, "/files") else {
                return;
            };
            assert!(path.starts_with("/files"));
            assert!(!rel.starts_with('/'));
            assert!(!rel.contains('\0') && !rel.contains('\\'));
            if !rel.is_empty() {
                assert!(
                    rel.split('/')
                        .all(|c| !c.is_empty() && c != "." && c != ".."),
                    "{path:?} -> {rel:?}"
                );
            }
            assert_eq!(fts::paths::normalize(&rel).unwrap(), rel);
        }
        1 => {
            // Any header value against a file length.
            let Some((len, hdr)) = rest.split_first_chunk::<8>() else {
                return;
            };
            let len = u64::from_le_bytes(*len) >> (len[0] % 64);
            let Ok(hdr) = std::str::from_utf8(hdr) else {
                return;
            };
            check_part(&want(Some(hdr), len), len);
        }
        _ => {
            // A well-formed range: the answer is known.
            let Some((nums, _)) = rest.split_first_chunk::<25>() else {
                return;
            };
            let num = |i: usize| {
                let v = u64::from_le_bytes(nums[i..i + 8].try_into().unwrap());
                v >> (nums[i] % 64)
            };
            let (a, b, len) = (num(0), num(8), num(16));
            let (hdr, expect) = match nums[24] % 3 {
                0 => (
                    format!("bytes={a}-{b}"),
                    if b < a {
                        Want::All
                    } else if a >= len {
                        Want::Unsatisfiable
                    } else {
                        Want::Part(a, b.min(len - 1))
                    },
                ),
                1 => (
                    format!("bytes={a}-"),
                    if a >= len {
                        Want::Unsatisfiable
                    } else {
                        Want::Part(a, len - 1)
                    },
                ),
                _ => (
                    format!("bytes=-{b}"),
                    if b == 0 || len == 0 {
                        Want::Unsatisfiable
                    } else {
                        Want::Part(len - b.min(len), len - 1)
                    },
                ),
            };
            let got = want(Some(&hdr), len);
            check_part(&got, len);
            assert_eq!(got, expect, "{hdr} of {len}");
        }
    }
});
