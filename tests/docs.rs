//! The committed man pages and shell completions must match what the
//! current clap definition generates. Regenerate with:
//! `cargo run -- generate-docs .`

mod common;
use std::path::Path;

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn man_pages_and_completions_are_current() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = common::fts_cmd(tmp.path());
    c.args(["generate-docs"]).arg(tmp.path());
    common::run(c).ok();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for sub in ["man", "completions"] {
        let fresh = tmp.path().join(sub);
        let committed = repo.join(sub);
        assert_eq!(
            files(&fresh),
            files(&committed),
            "{sub}/: file list differs; run `cargo run -- generate-docs .`"
        );
        for f in files(&fresh) {
            let a = std::fs::read(fresh.join(&f)).unwrap();
            let b = std::fs::read(committed.join(&f)).unwrap();
            assert!(
                a == b,
                "{sub}/{f} is stale; run `cargo run -- generate-docs .`"
            );
        }
    }
}

fn man_pages() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    files(&dir)
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(dir.join(&f)).unwrap();
            (f, text)
        })
        .collect()
}

/// The text of section `name` (from its `.SH` line to the next).
fn section<'a>(page: &'a str, name: &str) -> Option<&'a str> {
    let start = page
        .find(&format!(".SH {name}\n"))
        .or_else(|| page.find(&format!(".SH \"{name}\"\n")))?;
    let rest = &page[start..];
    let end = rest[4..].find("\n.SH ").map_or(rest.len(), |i| i + 5);
    Some(&rest[..end])
}

#[test]
fn man_pages_have_exit_status_environment_and_files_and_no_markdown() {
    let pages = man_pages();
    assert!(pages.iter().any(|(f, _)| f == "fts.1"));
    for (f, page) in &pages {
        let exit = section(page, "EXIT STATUS").unwrap_or_else(|| panic!("{f}: no EXIT STATUS"));
        for code in ["0", "2", "9", "10", "130"] {
            assert!(
                exit.contains(&format!("\\fB{code}\\fR\n")),
                "{f}: exit status {code} missing:\n{exit}"
            );
        }
        let env = section(page, "ENVIRONMENT").unwrap_or_else(|| panic!("{f}: no ENVIRONMENT"));
        for var in [
            "FTS_PASSWORD",
            "FTS_ADMIN_PASSWORD",
            "FTS_STATE_DIR",
            "FTS_CONFIG_DIR",
            "FTS_CREDENTIAL_STORE",
        ] {
            assert!(env.contains(var), "{f}: {var} missing from ENVIRONMENT");
        }
        let files = section(page, "FILES").unwrap_or_else(|| panic!("{f}: no FILES"));
        for file in [
            "known_hosts",
            "credentials",
            "cert.pem",
            "totals.json",
            "logs/",
        ] {
            assert!(files.contains(file), "{f}: {file} missing from FILES");
        }
        assert!(!page.contains('`'), "{f}: a backtick is shown literally");
        assert!(
            !page.contains("help(1)"),
            "{f}: lists a help page that does not exist"
        );
    }
}

#[test]
fn man_page_synopses_are_commands_and_references_exist() {
    let pages = man_pages();
    let names: Vec<&str> = pages.iter().map(|(f, _)| f.as_str()).collect();
    for (f, page) in &pages {
        // fts-admin-kick.1 → `fts admin kick`.
        let cmd = f.trim_end_matches(".1").replace('-', " ");
        let synopsis = section(page, "SYNOPSIS").unwrap();
        assert!(
            synopsis.contains(&format!("\\fB{cmd}\\fR")),
            "{f}: the synopsis must start with `{cmd}`:\n{synopsis}"
        );
        // Every NAME(1) the page mentions is a page we ship.
        for (i, _) in page.match_indices("(1)") {
            let start = page[..i]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '\\'))
                .map_or(0, |s| s + 1);
            let referenced = format!("{}.1", page[start..i].replace("\\-", "-"));
            assert!(
                names.contains(&referenced.as_str()),
                "{f} refers to {referenced}, which does not exist"
            );
        }
    }
    let put = pages.iter().find(|(f, _)| f == "fts-put.1").unwrap();
    assert!(
        put.1.contains("[OPTIONS] <LOCAL>... <REMOTE>"),
        "fts-put.1: {}",
        section(&put.1, "SYNOPSIS").unwrap()
    );
}

#[test]
fn help_lists_exit_status_environment_and_files() {
    let home = tempfile::tempdir().unwrap();
    let mut c = common::fts_cmd(home.path());
    c.arg("--help");
    let out = common::run(c);
    out.ok();
    for want in [
        "Exit status:",
        "130",
        "interrupted",
        "10 ",
        "Environment:",
        "FTS_STATE_DIR",
        "FTS_CONFIG_DIR",
        "FTS_PASSWORD",
        "FTS_ADMIN_PASSWORD",
        "FTS_CREDENTIAL_STORE",
        "Files:",
        "known_hosts",
        "totals.json",
    ] {
        assert!(out.stdout.contains(want), "`fts --help` lacks {want:?}");
    }
    let mut c = common::fts_cmd(home.path());
    c.arg("-h");
    let out = common::run(c);
    for want in ["FTS_STATE_DIR", "FTS_CONFIG_DIR"] {
        assert!(out.stdout.contains(want), "`fts -h` lacks {want:?}");
    }
}

#[test]
fn put_and_get_usage_name_each_argument_once() {
    let home = tempfile::tempdir().unwrap();
    for (cmd, usage) in [
        ("put", "Usage: fts put [OPTIONS] <LOCAL>... <REMOTE>\n"),
        ("get", "Usage: fts get [OPTIONS] <REMOTE>... <LOCAL>\n"),
    ] {
        for flag in ["-h", "--help"] {
            let mut c = common::fts_cmd(home.path());
            c.args([cmd, flag]);
            let out = common::run(c);
            out.ok();
            assert!(
                out.stdout.contains(usage),
                "fts {cmd} {flag}:\n{}",
                out.stdout
            );
        }
    }
}

#[test]
fn put_and_get_still_take_sources_then_one_target() {
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let mut c = common::fts_cmd(home.path());
        c.arg("--json").args(args);
        common::run(c)
    };
    // One argument is not enough (and the error does not double names).
    let out = run(&["put", "a"]);
    out.code(2);
    assert!(
        out.stderr
            .contains("Usage: fts put [OPTIONS] <LOCAL>... <REMOTE>\n")
            && !out.stderr.contains("REMOTE> <"),
        "{}",
        out.stderr
    );
    run(&["get", "host:a"]).code(2);
    run(&["put"]).code(2);
    // The last argument is the target, everything before it a source.
    let out = run(&["put", "a", "b", "c"]);
    out.code(2);
    assert!(
        out.err_message().contains("'c': the last argument of put"),
        "{}",
        out.stderr
    );
    let out = run(&["put", "a", "host:b", "host:c"]);
    out.code(2);
    assert!(
        out.err_message()
            .contains("'host:b': put sources must be local"),
        "{}",
        out.stderr
    );
    let out = run(&["get", "host:a", "host:b", "host:c"]);
    out.code(2);
    assert!(
        out.err_message()
            .contains("'host:c': the last argument of get"),
        "{}",
        out.stderr
    );
    // Flags before, between groups of at least two paths, after; `--`.
    for args in [
        &["put", "-r", "a", "b", "c"][..],
        &["put", "a", "b", "-r", "x", "c"],
        &["put", "a", "b", "c", "--no-delta"],
        &["put", "a", "--", "-b", "c"],
    ] {
        let out = run(args);
        out.code(2);
        assert!(
            out.err_message().contains("'c': the last argument of put"),
            "{args:?}: {}",
            out.stderr
        );
    }
}
