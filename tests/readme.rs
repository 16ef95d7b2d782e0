//! The README cannot go stale without a test failing:
//!
//! - its tour ("A 60-second tour") runs for real: the first console block
//!   starts `fts serve` (on a free port instead of 7387), every `$ ` line
//!   of the second runs, in order, in one bash session in the same
//!   directory, and what each prints (stdout and stderr) must be what the
//!   README shows, up to what differs from run to run: fingerprints,
//!   times, durations, rates, wire byte counts, addresses and ports, the
//!   client's name, and the directories (`/tmp/tour`, `/home/me`). The
//!   server-log lines shown must be in the server's log, in that order.
//!   On a mismatch the test prints the tour as it runs today;
//! - its exit-code table is the one `fts --help` prints;
//! - every flag of every command is in its Usage section, every global
//!   flag in "Global flags";
//! - its two commands are `cargo install --path . --locked` and
//!   `tests/run.sh`, `.ci/run` runs exactly the latter, and that script
//!   installs what the tests need when it is missing.

mod common;

use regex_automata::meta::Regex;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the tour in the README ran: its directory and the user's HOME.
const TOUR_DIR: &str = "/tmp/tour";
const TOUR_HOME: &str = "/home/me";
/// The port the README's commands use (the default).
const TOUR_PORT: &str = "7387";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn readme() -> String {
    std::fs::read_to_string(repo().join("README.md")).unwrap()
}

/// The text of `## {heading}`, up to the next `## `.
fn section(text: &str, heading: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            inside = h.trim() == heading;
            continue;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(!out.is_empty(), "README.md has no section '## {heading}'");
    out
}

/// The fenced blocks of `text`: (language, body).
fn blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in text.lines() {
        match (line.strip_prefix("```"), open.take()) {
            (Some(lang), None) => open = Some((lang.trim().to_string(), String::new())),
            (Some(_), Some(block)) => out.push(block),
            (None, Some((lang, mut body))) => {
                body.push_str(line);
                body.push('\n');
                open = Some((lang, body));
            }
            (None, None) => {}
        }
    }
    out
}

/// The `$ ` commands of a console block, each with the lines after it.
fn commands(block: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        if let Some(cmd) = line.strip_prefix("$ ") {
            out.push((cmd.to_string(), String::new()));
        } else if let Some((_, expected)) = out.last_mut() {
            expected.push_str(line);
            expected.push('\n');
        } else {
            panic!("console block text before its first `$ `: {line:?}");
        }
    }
    out
}

fn replace_all(pattern: &str, hay: &str, with: &str) -> String {
    let re = Regex::new(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
    let mut out = String::with_capacity(hay.len());
    let mut last = 0;
    for m in re.find_iter(hay) {
        out.push_str(&hay[last..m.start()]);
        out.push_str(with);
        last = m.end();
    }
    out.push_str(&hay[last..]);
    out
}

/// Masks what differs from run to run; applied to the README and to the
/// real output alike.
fn mask(s: &str) -> String {
    const RULES: &[(&str, &str)] = &[
        ("SHA256:[A-Za-z0-9+/]{43}=?", "SHA256:<fingerprint>"),
        (
            "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?Z",
            "<time>",
        ),
        (" in [0-9]+(\\.[0-9]+)?s", " in <secs>"),
        ("\\([0-9]+(\\.[0-9]+)? [KMGT]?i?B/s\\)", "(<rate>)"),
        (
            "sent [0-9]+(\\.[0-9]+)? [KMGT]?i?B, received [0-9]+(\\.[0-9]+)? [KMGT]?i?B",
            "sent <bytes>, received <bytes>",
        ),
        ("\"wire_bytes_sent\":[0-9]+", "\"wire_bytes_sent\":<n>"),
        (
            "\"wire_bytes_received\":[0-9]+",
            "\"wire_bytes_received\":<n>",
        ),
        ("\"elapsed_s\":[0-9.]+", "\"elapsed_s\":<n>"),
        (
            "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}:[0-9]+",
            "<addr>",
        ),
        ("\\([A-Za-z0-9._-]+@[A-Za-z0-9._-]+\\)", "(<name>)"),
    ];
    let mut s = s.trim_end().to_string();
    for (pattern, with) in RULES {
        s = replace_all(pattern, &s, with);
    }
    s
}

/// The tour's directory and HOME as the README names them, and its port.
struct Places {
    dir: String,
    home: String,
    port: u16,
}

impl Places {
    fn localize(&self, s: &str) -> String {
        s.replace(&self.home, TOUR_HOME)
            .replace(&self.dir, TOUR_DIR)
            .replace(
                &format!("127.0.0.1:{}", self.port),
                &format!("0.0.0.0:{TOUR_PORT}"),
            )
            .replace(
                &format!("localhost:{}", self.port),
                &format!("localhost:{TOUR_PORT}"),
            )
    }
}

fn write_file(path: &Path, size: usize, seed: u64, mode: u32) {
    common::random_file(path, size, seed);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Lines a process writes to a pipe, collected by a thread.
fn collect(r: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l2 = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            l2.lock().unwrap().push(line);
        }
    });
    lines
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + common::WAIT;
    while !done() {
        if Instant::now() > deadline {
            eprintln!("gave up waiting for {what}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_tour_prints_what_the_readme_shows() {
    let text = readme();
    let tour = section(&text, "A 60-second tour");
    let blocks = blocks(&tour);
    let consoles: Vec<&String> = blocks
        .iter()
        .filter(|(l, _)| l == "console")
        .map(|(_, b)| b)
        .collect();
    let logs: Vec<&String> = blocks
        .iter()
        .filter(|(l, _)| l == "text")
        .map(|(_, b)| b)
        .collect();
    assert_eq!(
        (consoles.len(), logs.len()),
        (2, 1),
        "the tour has a server console block, a client console block and a server log block"
    );

    // The files the tour works with, as in the README: report.pdf and
    // photos/{a,b}.jpg in the current directory, the admin password in
    // admin.pw, an empty share/.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap().join("tour");
    let home = tmp.path().canonicalize().unwrap().join("home");
    std::fs::create_dir_all(dir.join("share")).unwrap();
    std::fs::create_dir_all(dir.join("photos")).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(dir.join("photos"), std::fs::Permissions::from_mode(0o755)).unwrap();
    write_file(&dir.join("report.pdf"), 3_000_000, 1, 0o644);
    write_file(&dir.join("photos/a.jpg"), 200_000, 2, 0o644);
    write_file(&dir.join("photos/b.jpg"), 300_000, 3, 0o644);
    std::fs::write(dir.join("admin.pw"), "hunter2-admin\n").unwrap();

    let mut problems = Vec::new();
    let mut today = String::new();

    // The server.
    let server = commands(consoles[0]);
    assert_eq!(server.len(), 1, "the server block runs one command");
    let (serve_cmd, serve_expected) = &server[0];
    let args: Vec<&str> = serve_cmd.split_whitespace().collect();
    assert_eq!(&args[..2], ["fts", "serve"], "{serve_cmd}");
    let mut c = common::fts_cmd(&home);
    c.args(&args[1..])
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("start fts serve");
    // The banner on stdout, the log on stderr.
    let stdout = collect(child.stdout.take().unwrap());
    let stderr = collect(child.stderr.take().unwrap());
    let _server = KillOnDrop(child);
    let want = serve_expected.lines().count();
    wait_for("the server's banner", || {
        stdout.lock().unwrap().len() >= want
    });
    // Anything else it prints before the first client comes is banner too.
    std::thread::sleep(Duration::from_millis(300));
    let banner: Vec<String> = stdout.lock().unwrap().clone();
    let port: u16 = banner
        .iter()
        .find_map(|l| {
            let rest = &l[l.find("127.0.0.1:")? + "127.0.0.1:".len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or_else(|| panic!("no 127.0.0.1:PORT in the banner: {banner:#?}"));
    let places = Places {
        dir: dir.to_string_lossy().into_owned(),
        home: home.to_string_lossy().into_owned(),
        port,
    };
    let banner = places.localize(&banner.join("\n"));
    today.push_str(&format!("```console\n$ {serve_cmd}\n{banner}\n```\n\n"));
    if mask(&banner) != mask(serve_expected) {
        problems.push(format!(
            "$ {serve_cmd}\nREADME:\n{serve_expected}today:\n{banner}\n"
        ));
    }

    // The client: every command in one bash session (so `echo $?` works),
    // with `localhost:PATH` sent to the server's port.
    let client = commands(consoles[1]);
    let mut script = String::from(
        r#"exec 2>&1
fts() {
    local a=() x
    for x in "$@"; do
        case $x in
            localhost:*) a+=("fts://localhost:$TOUR_PORT/${x#localhost:}") ;;
            *) a+=("$x") ;;
        esac
    done
    "$TOUR_FTS" "${a[@]}"
}
"#,
    );
    for (i, (cmd, _)) in client.iter().enumerate() {
        script.push_str(&format!(
            "{cmd}\n__status=$?; printf '\\n@@tour {i}@@\\n'; (exit $__status)\n"
        ));
    }
    let mut c = common::fts_cmd_via(&home, &["bash", "-c", &script]);
    c.current_dir(&dir)
        .env("TOUR_FTS", common::BIN)
        .env("TOUR_PORT", port.to_string());
    let out = common::run(c);
    let mut rest = out.stdout.as_str();
    today.push_str("```console\n");
    for (i, (cmd, expected)) in client.iter().enumerate() {
        let marker = format!("\n@@tour {i}@@\n");
        let (got, after) = rest.split_once(&marker).unwrap_or_else(|| {
            panic!(
                "the tour stopped before `{cmd}` finished:\n{}{}",
                out.stdout, out.stderr
            )
        });
        rest = after;
        let got = places.localize(got.trim_end_matches('\n'));
        today.push_str(&format!("$ {cmd}\n"));
        if !got.is_empty() {
            today.push_str(&got);
            today.push('\n');
        }
        if mask(&got) != mask(expected) {
            problems.push(format!(
                "$ {cmd}\nREADME:\n{expected}today:\n{got}\nmasked, README:\n{}\nmasked, today:\n{}\n",
                mask(expected),
                mask(&got)
            ));
        }
    }
    today.push_str("```\n\n");

    // The server's log: the README's lines, in order, among the real ones.
    // (A line `…` marks lines left out.)
    let expected_log: Vec<String> = logs[0]
        .lines()
        .filter(|l| l.trim() != "…")
        .map(mask)
        .collect();
    let log = || -> Vec<String> {
        stderr
            .lock()
            .unwrap()
            .iter()
            .map(|l| places.localize(l))
            .collect()
    };
    let in_order = |log: &[String]| {
        let mut it = log.iter().map(|l| mask(l));
        expected_log.iter().all(|want| it.any(|l| &l == want))
    };
    wait_for("the README's log lines", || in_order(&log()));
    let log = log();
    today.push_str(&format!("```text\n{}\n```\n", log.join("\n")));
    if !in_order(&log) {
        problems.push(format!(
            "server log: the README's lines are not all in the log, in order.\nREADME:\n{}today:\n{}\n",
            logs[0],
            log.join("\n")
        ));
    }

    assert!(
        problems.is_empty(),
        "README.md's tour is stale:\n\n{}\nThe tour as it runs today (in README.md's directories and port):\n\n{today}",
        problems.join("\n")
    );
}

#[test]
fn the_mask_hides_only_what_varies() {
    assert_eq!(
        mask("1 of 1 files transferred, 2.86 MiB in 0.01s (317.89 MiB/s)\nsent 2.87 MiB, received 1.16 KiB; saved 0.0% by delta"),
        "1 of 1 files transferred, 2.86 MiB in <secs> (<rate>)\nsent <bytes>, received <bytes>; saved 0.0% by delta"
    );
    assert_eq!(
        mask("2026-11-21T12:34:54Z connect #1 from 127.0.0.1:48830 (me@laptop)"),
        "<time> connect #1 from <addr> (<name>)"
    );
    assert_eq!(
        mask("{\"wire_bytes_sent\":446,\"elapsed_s\":0.002,\"bytes_total\":0}"),
        "{\"wire_bytes_sent\":<n>,\"elapsed_s\":<n>,\"bytes_total\":0}"
    );
    assert_ne!(mask("removed 2 files"), mask("removed 3 files"));
}

/// Runs `fts ARGS -h`.
fn help(args: &[&str]) -> String {
    let home = tempfile::tempdir().unwrap();
    let mut c = common::fts_cmd(home.path());
    c.args(args);
    let out = common::run(c);
    out.ok();
    out.stdout
}

/// The rows of a two-column list in `help` under `title:` (continuation
/// lines joined): the exit-status table of `fts --help`.
fn help_table(help: &str, title: &str) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut lines = help.lines().skip_while(|l| *l != format!("{title}:"));
    lines
        .next()
        .unwrap_or_else(|| panic!("no '{title}:' in help"));
    for line in lines.take_while(|l| !l.is_empty()) {
        let t = line.trim_start();
        if line.len() - t.len() == 2 {
            let (name, text) = t.split_once(' ').unwrap_or((t, ""));
            rows.push((name.to_string(), text.trim().to_string()));
        } else if let Some((_, text)) = rows.last_mut() {
            text.push(' ');
            text.push_str(t);
        }
    }
    rows
}

fn words(s: &str) -> String {
    s.replace('`', "")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_exit_code_table_is_the_one_fts_help_prints() {
    let text = readme();
    let table: Vec<(String, String)> = section(&text, "Exit codes")
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim().trim_matches('|').split('|').collect();
            let code = cells.first()?.trim();
            code.parse::<u32>().ok()?;
            Some((code.to_string(), words(cells.get(1)?)))
        })
        .collect();
    let help: Vec<(String, String)> = help_table(&help(&["--help"]), "Exit status")
        .into_iter()
        .map(|(c, t)| (c, words(&t)))
        .collect();
    assert_eq!(
        table, help,
        "README.md's exit codes differ from `fts --help`"
    );
    for code in ["10", "130"] {
        assert!(table.iter().any(|(c, _)| c == code), "exit code {code}");
    }
}

/// The options of a `-h` page: (short, long) without `-h`/`-V`.
fn options(help: &str) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    for line in help.lines() {
        let t = line.trim_start();
        if line.len() - t.len() > 6 || !t.starts_with('-') {
            continue;
        }
        let (short, t) = match t.strip_prefix('-') {
            Some(r) if !r.starts_with('-') => (Some(format!("-{}", &r[..1])), &r[1..]),
            _ => (None, t),
        };
        let t = t.trim_start_matches(", ");
        let Some(long) = t.strip_prefix("--") else {
            continue;
        };
        let long: String = long
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if long != "help" && long != "version" {
            out.push((short, format!("--{long}")));
        }
    }
    out
}

/// `flag` occurs in `text` as a whole flag (not as the start of a longer
/// one, not inside a word).
fn mentions(text: &str, flag: &str) -> bool {
    text.match_indices(flag).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + flag.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
            && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

/// The subcommands a `-h` page lists (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| l.len() - l.trim_start().len() == 2)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn every_flag_is_in_the_readme() {
    let text = readme();
    let usage = section(&text, "Usage");
    let global_text: String = usage
        .split("Global flags:")
        .nth(1)
        .expect("README.md's Usage has a 'Global flags:' paragraph")
        .split("\n\n")
        .next()
        .unwrap()
        .to_string();
    let top = help(&["-h"]);
    let global = options(&top);
    let mut missing = Vec::new();
    for (short, long) in &global {
        for f in short.iter().chain([long]) {
            if !mentions(&global_text, f) {
                missing.push(format!("global flag {f} is not in 'Global flags'"));
            }
        }
    }
    let mut cmds: Vec<Vec<String>> = subcommands(&top).into_iter().map(|c| vec![c]).collect();
    let mut i = 0;
    while i < cmds.len() {
        let name = cmds[i].join(" ");
        let args: Vec<&str> = name.split(' ').collect();
        let page = help(&[&args[..], &["-h"]].concat());
        for sub in subcommands(&page) {
            let mut path = cmds[i].clone();
            path.push(sub);
            cmds.push(path);
        }
        for (short, long) in options(&page) {
            if global.iter().any(|(_, g)| *g == long) {
                continue;
            }
            let named =
                mentions(&usage, &long) || short.as_ref().is_some_and(|s| mentions(&usage, s));
            if !named {
                missing.push(format!("fts {name}: {long} is not in Usage"));
            }
        }
        i += 1;
    }
    assert!(cmds.len() > 10, "found too few commands: {cmds:?}");
    assert!(missing.is_empty(), "README.md:\n{}", missing.join("\n"));
}

#[test]
fn the_readme_s_two_commands_are_install_and_tests_run_sh() {
    let text = readme();
    let quick = section(&text, "Quick start");
    let (_, block) = blocks(&quick)
        .into_iter()
        .find(|(l, _)| l == "sh")
        .expect("Quick start has a sh block");
    let cmds: Vec<&str> = block
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(cmds, ["cargo install --path . --locked", "tests/run.sh"]);
    for place in [
        &text,
        &std::fs::read_to_string(repo().join("ARCHITECTURE.md")).unwrap(),
    ] {
        for (i, _) in place.match_indices("cargo install --path .") {
            assert!(
                place[i..].starts_with("cargo install --path . --locked"),
                "cargo install without --locked: {}",
                &place[i..place.len().min(i + 60)]
            );
        }
    }
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    let run: Vec<&str> = ci
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        run,
        [r#"exec "$(dirname "$0")/../tests/run.sh""#],
        ".ci/run"
    );
}

/// A fake machine for tests/run.sh: a copy of the script in an empty
/// tree, and a PATH with only `tools` (logging stubs) and what the script
/// itself needs.
struct FakeMachine {
    tmp: tempfile::TempDir,
}

impl FakeMachine {
    fn new(tools: &[&str], uid: u32) -> FakeMachine {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        std::fs::create_dir_all(tmp.path().join("tree/tests")).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(
            repo().join("tests/run.sh"),
            tmp.path().join("tree/tests/run.sh"),
        )
        .unwrap();
        let log = tmp.path().join("log");
        let stub = |name: &str, body: &str| {
            let p = bin.join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        for t in ["apt-get", "sudo", "npm", "cargo"].iter().chain(tools) {
            stub(t, &format!("echo \"{t} $*\" >> '{}'", log.display()));
        }
        stub("id", &format!("echo {uid}"));
        // The one other program the script runs.
        std::os::unix::fs::symlink(which("dirname"), bin.join("dirname")).unwrap();
        FakeMachine { tmp }
    }

    fn run(&self, args: &[&str]) -> Vec<String> {
        let out = Command::new(which("bash"))
            .arg(self.tmp.path().join("tree/tests/run.sh"))
            .args(args)
            .env_clear()
            .env("PATH", self.tmp.path().join("bin"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tests/run.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(self.tmp.path().join("log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

fn which(prog: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{prog} is not on PATH"))
}

#[test]
fn tests_run_sh_installs_what_is_missing_then_runs_cargo_test() {
    let chromium = if Path::new("/usr/bin/chromium").exists() {
        ""
    } else {
        " chromium chromium-driver"
    };
    // Not root, nothing there but npm: sudo apt-get, Garage, npm ci, cargo test.
    let m = FakeMachine::new(&[], 1000);
    assert_eq!(
        m.run(&["--test", "docs"]),
        [
            "sudo apt-get update -qq".to_string(),
            format!("sudo apt-get install -y -qq tmux curl wget nodejs{chromium}"),
            "cargo install --locked garage --version 2.5.0".into(),
            "npm ci --prefix tests/browser --no-audit --no-fund".into(),
            "cargo test --locked --test docs".into(),
        ]
    );
    // Root: no sudo.
    let m = FakeMachine::new(&["tmux", "curl", "wget"], 0);
    assert_eq!(
        m.run(&[]),
        [
            "apt-get update -qq".to_string(),
            format!("apt-get install -y -qq nodejs{chromium}"),
            "cargo install --locked garage --version 2.5.0".into(),
            "npm ci --prefix tests/browser --no-audit --no-fund".into(),
            "cargo test --locked".into(),
        ]
    );
    // Everything there: just the tests.
    if chromium.is_empty() {
        let m = FakeMachine::new(&["tmux", "curl", "wget", "node", "garage"], 1000);
        std::fs::create_dir_all(
            m.tmp
                .path()
                .join("tree/tests/browser/node_modules/playwright-core"),
        )
        .unwrap();
        assert_eq!(m.run(&[]), ["cargo test --locked"]);
    }
}

/// Every key path of a JSON document (`clients[].name`), arrays by their
/// first element.
fn key_paths(v: &serde_json::Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(p.clone());
                key_paths(v, &p, out);
            }
        }
        serde_json::Value::Array(a) => {
            if let Some(first) = a.first() {
                key_paths(first, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_stats_example_has_the_fields_of_fts_stats_json() {
    let text = readme();
    let (_, example) = blocks(&section(&text, "JSON output"))
        .into_iter()
        .find(|(l, _)| l == "json")
        .expect("JSON output has a json block (the stats example)");
    let example: serde_json::Value = serde_json::from_str(&example).unwrap();
    let s = common::Setup::new(&[]);
    // The stats client itself is in the client table.
    let out = s.run(&["stats", "--json", &s.url("")]);
    out.ok();
    let (mut want, mut got) = Default::default();
    key_paths(&example, "", &mut want);
    key_paths(&out.json(), "", &mut got);
    assert!(got.contains("clients[].state"), "{got:?}");
    assert_eq!(want, got, "README.md's `fts stats --json` example");
}
