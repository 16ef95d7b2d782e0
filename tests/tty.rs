//! What only happens on a terminal, checked inside a real one (a detached
//! tmux pane): the password prompt and the progress bars. The other tests
//! run fts on pipes, where it must never prompt or draw, so they cannot see
//! either. Skipped, with a message, when tmux is not installed.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Upper bound for every wait on the terminal or the server.
const WAIT: Duration = Duration::from_secs(15);

/// The glyphs of indicatif's default bar (filled, empty).
const BAR_GLYPHS: [char; 2] = ['█', '░'];

/// True when tmux can be run; otherwise says that the test is skipped.
fn have_tmux() -> bool {
    let ok = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        // Straight to stderr: libtest swallows eprintln! from passing
        // tests, and a silent skip would read as a pass.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: tmux is not installed, so the password prompt and the progress bars \
             are not tested; install tmux to run tests/tty.rs (tests/run.sh does)"
        );
    }
    ok
}

/// Single-quotes `s` for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn path_arg(p: &Path) -> String {
    sh_quote(p.to_str().expect("UTF-8 temp path"))
}

/// The start of every fts command line run in a terminal: the binary, and
/// the server's fingerprint so that no first-use notice gets in the way.
/// Stored passwords come from the file in HOME only: one stored in the
/// shared kernel keyring for the same address would stand in for the
/// prompt under test.
fn fts(s: &Setup) -> String {
    format!(
        "FTS_CREDENTIAL_STORE=file {} --fingerprint {}",
        sh_quote(BIN),
        sh_quote(&s.server.fingerprint)
    )
}

const SESSION: &str = "fts";

/// One shell command running in a detached 200x50 tmux pane, on a private
/// tmux server so that tests never see each other's sessions or the
/// user's. Its socket lives in the terminal's own temp dir (`-S`; `-L`
/// would leave one socket per run behind in /tmp/tmux-UID). Everything the
/// pane receives is also recorded (pipe-pane): the screen shows only the
/// present, the recording shows whether something, a bar, was *ever*
/// drawn. Dropping it kills the tmux server and whatever still runs in it.
struct Term {
    socket: PathBuf,
    home: PathBuf,
    recording: PathBuf,
    _dir: tempfile::TempDir,
}

impl Term {
    /// Runs `command` with HOME = `home` and nothing else inherited (no
    /// FTS_PASSWORD, no user tmux config), then prints `EXIT=<status>`.
    /// The pane stays on screen after the command ends.
    fn start(home: &Path, command: &str) -> Term {
        let dir = tempfile::tempdir().unwrap();
        let t = Term {
            socket: dir.path().join("tmux.sock"),
            home: home.to_path_buf(),
            recording: dir.path().join("pane.out"),
            _dir: dir,
        };
        // The command first waits for an Enter, so that nothing it prints
        // can come before the recording starts.
        let script = format!("read -r go; {command}; echo EXIT=$?");
        let record = format!("cat >> {}", path_arg(&t.recording));
        t.tmux(&[
            "new-session",
            "-d",
            "-s",
            SESSION,
            "-x",
            "200",
            "-y",
            "50",
            &script,
            ";",
            "set-option",
            "-w",
            "-t",
            SESSION,
            "remain-on-exit",
            "on",
            ";",
            "pipe-pane",
            "-t",
            SESSION,
            &record,
        ]);
        t.tmux(&["send-keys", "-t", SESSION, "Enter"]);
        t
    }

    /// Runs a tmux command against this terminal's server. The server is
    /// started by the first call, so its environment, and the pane's, is
    /// the one set here (tmux adds TERM and TMUX).
    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-u", "-f", "/dev/null", "-S"])
            .arg(&self.socket)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LANG", "C.UTF-8")
            .env("HOME", &self.home)
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What the pane shows now.
    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", SESSION])
    }

    /// Polls the screen until `pred` holds, for at most WAIT.
    #[track_caller]
    fn wait_screen(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "no {what} on the screen:\n{s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types `text` (literally, not as key names), then Enter.
    fn type_line(&self, text: &str) {
        self.tmux(&["send-keys", "-t", SESSION, "-l", text]);
        self.tmux(&["send-keys", "-t", SESSION, "Enter"]);
    }

    /// Waits for the command to end: its exit status and the final screen.
    #[track_caller]
    fn finish(&self) -> (i32, String) {
        let s = self.wait_screen("EXIT=", |s| s.lines().any(|l| l.starts_with("EXIT=")));
        let code = s
            .lines()
            .find_map(|l| l.strip_prefix("EXIT="))
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or_else(|| panic!("unreadable exit status:\n{s}"));
        (code, s)
    }

    /// Every byte the pane received, once the command has ended (the
    /// recorder lags the screen a little, so wait for the last line).
    #[track_caller]
    fn recording(&self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let r = std::fs::read(&self.recording).unwrap_or_default();
            let r = String::from_utf8_lossy(&r).into_owned();
            if r.contains("EXIT=") {
                return r;
            }
            assert!(Instant::now() < deadline, "recording incomplete: {r:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .output();
    }
}

/// A TCP relay in front of the server that, while `slow` is set, passes the
/// client's bytes on at about 2 MiB/s. On loopback an upload of any sane
/// size is over in well under a second, too soon to be sure of catching a
/// bar on the screen; slowing the wire (not the binary) makes the upload
/// last until the test has seen what it needs and lets it go.
struct Throttle {
    port: u16,
    slow: Arc<AtomicBool>,
}

impl Throttle {
    fn start(server_port: u16) -> Throttle {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let slow = Arc::new(AtomicBool::new(true));
        let s = slow.clone();
        // Accepts for the rest of the test process: a thread blocked in
        // accept() cannot be stopped, and it costs nothing.
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                relay(client, server, Some(s.clone()));
                relay(s2, c2, None);
            }
        });
        Throttle { port, slow }
    }

    fn url(&self, path: &str) -> String {
        format!("fts://127.0.0.1:{}/{path}", self.port)
    }

    fn set_slow(&self, slow: bool) {
        self.slow.store(slow, Ordering::Relaxed);
    }
}

/// Copies `from` to `to` until EOF, pausing after each 16 KiB while `slow`.
fn relay(mut from: TcpStream, mut to: TcpStream, slow: Option<Arc<AtomicBool>>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
            if slow.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
                std::thread::sleep(Duration::from_millis(8));
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// Waits until an upload is in flight: its partial (or temp) file exists in `root`.
#[track_caller]
fn wait_upload_started(root: &Path) {
    let deadline = Instant::now() + WAIT;
    while !tree(root)
        .iter()
        .any(|(p, _)| p.ends_with(".fts-part") || p.ends_with(".fts-tmp"))
    {
        assert!(Instant::now() < deadline, "the upload never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True when `text` holds anything a progress bar would leave behind:
/// bar glyphs, ANSI escapes (indicatif redraws with ESC[2K) or the ETA.
fn has_bar_traces(text: &str) -> bool {
    text.contains(BAR_GLYPHS) || text.contains('\x1b') || text.contains("ETA")
}

#[test]
fn password_prompt_on_the_terminal() {
    if !have_tmux() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pw = secret_file(tmp.path(), "pw", "tty s3cret");
    let s = Setup::new(&["--password-file", pw.to_str().unwrap()]);
    std::fs::write(s.root().join("listed-file.txt"), b"x").unwrap();
    let home = s.client.home.path();
    let ls = format!("{} ls {}", fts(&s), sh_quote(&s.url("")));
    // capture-pane drops trailing blanks, so no space after the colon.
    let prompt = format!("Password for 127.0.0.1:{}:", s.server.port);

    // Right password: with no password given and a terminal on stdin, the
    // client asks on the terminal, then lists the share.
    let t = Term::start(home, &ls);
    let screen = t.wait_screen("password prompt", |sc| sc.contains(&prompt));
    assert!(
        !screen.contains("listed-file.txt") && !screen.contains("EXIT="),
        "the command went on without waiting for the password:\n{screen}"
    );
    t.type_line("tty s3cret");
    let (code, screen) = t.finish();
    assert_eq!(code, 0, "ls with the typed password failed:\n{screen}");
    assert!(screen.contains("listed-file.txt"), "no listing:\n{screen}");
    // The prompt does not echo: the password never reached the terminal.
    assert!(
        !t.recording().contains("s3cret"),
        "the typed password was echoed:\n{screen}"
    );

    // Wrong password: refused with the authentication exit code.
    let t = Term::start(home, &ls);
    t.wait_screen("password prompt", |sc| sc.contains(&prompt));
    t.type_line("not it");
    let (code, screen) = t.finish();
    assert_eq!(
        code, 4,
        "a wrong typed password must give exit 4:\n{screen}"
    );
    assert!(screen.contains("wrong password"), "{screen}");
    assert!(!screen.contains("listed-file.txt"), "{screen}");
}

#[test]
fn login_prompts_on_the_terminal_then_commands_do_not() {
    if !have_tmux() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pw = secret_file(tmp.path(), "pw", "tty l0gin");
    let s = Setup::new(&["--password-file", pw.to_str().unwrap()]);
    let home = s.client.home.path();
    let prompt = format!("Password for 127.0.0.1:{}:", s.server.port);

    let t = Term::start(home, &format!("{} login {}", fts(&s), sh_quote(&s.url(""))));
    t.wait_screen("password prompt", |sc| sc.contains(&prompt));
    t.type_line("tty l0gin");
    let (code, screen) = t.finish();
    assert_eq!(code, 0, "login with the typed password failed:\n{screen}");
    assert!(screen.contains("stored the access password"), "{screen}");
    assert!(!t.recording().contains("l0gin"), "the password was echoed");

    // Then, with no terminal and no FTS_PASSWORD, the stored one is used.
    s.run(&["ls", &s.url("")]).ok();
}

#[test]
fn progress_bars_only_on_a_terminal() {
    if !have_tmux() {
        return;
    }
    const SIZE: usize = 64 << 20;
    let s = Setup::new(&[]);
    let wire = Throttle::start(s.server.port);
    let home = s.client.home.path();
    let src = s.local("upload.bin");
    random_file(&src, SIZE, 42);
    let put = |name: &str| {
        format!(
            "{} put {} {}",
            fts(&s),
            path_arg(&src),
            sh_quote(&wire.url(name))
        )
    };

    // On a terminal: a bar with the file name and the bytes done so far
    // (at least 1 MiB, as "N MiB/64.00 MiB"), while the upload runs.
    wire.set_slow(true);
    let t = Term::start(home, &put("with-bar.bin"));
    let screen = t.wait_screen("progress bar", |sc| {
        sc.lines().any(|l| {
            l.starts_with("with-bar.bin") && l.contains(" MiB/64.00 MiB") && l.contains("ETA")
        })
    });
    assert!(screen.contains(BAR_GLYPHS), "no bar glyphs:\n{screen}");
    wire.set_slow(false);
    let (code, screen) = t.finish();
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("1 of 1 file transferred"), "{screen}");
    // The bar is cleared when the transfer ends; only the summary stays.
    assert!(
        !has_bar_traces(&screen),
        "bar left on the screen:\n{screen}"
    );
    assert_eq!(hash(&s.root().join("with-bar.bin")), hash(&src));
    // The recording sees bars, so its silence below means something.
    assert!(has_bar_traces(&t.recording()));

    // --no-progress, and stderr not a terminal: the same slow upload draws
    // nothing, ever, while it is in flight for a second.
    let errfile = s.local("stderr.txt");
    let quiet_runs = [
        (
            "no-progress.bin",
            format!("{} --no-progress", put("no-progress.bin")),
        ),
        (
            "redirected.bin",
            format!("{} 2>{}", put("redirected.bin"), path_arg(&errfile)),
        ),
    ];
    for (name, command) in quiet_runs {
        wire.set_slow(true);
        let t = Term::start(home, &command);
        wait_upload_started(s.root());
        std::thread::sleep(Duration::from_secs(1));
        wire.set_slow(false);
        let (code, screen) = t.finish();
        assert_eq!(code, 0, "{command}:\n{screen}");
        assert!(screen.contains("1 of 1 file transferred"), "{screen}");
        let recorded = t.recording();
        assert!(
            !has_bar_traces(&recorded),
            "{command}: a bar reached the terminal: {recorded:?}"
        );
        assert_eq!(hash(&s.root().join(name)), hash(&src), "{name}");
    }
    let err = std::fs::read_to_string(&errfile).unwrap();
    assert!(
        !has_bar_traces(&err) && !err.contains('\r'),
        "bar written to redirected stderr: {err:?}"
    );
}

#[test]
fn interactive_chat_in_a_terminal() {
    if !have_tmux() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let adm = secret_file(tmp.path(), "adm", "chat adm1n");
    let s = Setup::new(&["--admin-password-file", adm.to_str().unwrap()]);
    let url = s.url("");
    let admin = |args: &[&str]| {
        s.client
            .run_env(args, &[("FTS_ADMIN_PASSWORD", "chat adm1n")])
    };
    let t = Term::start(
        s.client.home.path(),
        &format!("{} --name tina chat {}", fts(&s), sh_quote(&url)),
    );
    t.wait_screen("chat started", |sc| sc.contains("in chat on"));
    // Let the server see tina in chat before writing to her by name.
    let deadline = Instant::now() + WAIT;
    loop {
        let st = s.run(&["--json", "stats", &url]);
        if st.stdout.contains("\"chatting\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tina never in chat: {}",
            st.stdout
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    admin(&["chat", "--admin", "--to", "tina", "-m", "hello tina", &url]).ok();
    t.wait_screen("the admin's message", |sc| {
        sc.lines()
            .any(|l| l.contains("admin") && l.contains("→ tina: hello tina"))
    });
    // Escape sequences arrive as visible text, not as terminal commands.
    admin(&[
        "chat",
        "--admin",
        "--to",
        "tina",
        "-m",
        "\x1b]0;pwned\x07 \x1b[2J gone?",
        &url,
    ])
    .ok();
    t.wait_screen("the escaped message", |sc| {
        sc.contains("^[]0;pwned^G ^[[2J gone?")
    });
    // What tina types reaches the admins (kept: none is in chat now).
    t.type_line("hi admin, typed in a terminal");
    t.wait_screen("kept notice", |sc| sc.contains("kept as unread"));
    let log = admin(&["admin", "log", &url, "--category", "chat"]);
    log.ok();
    assert!(
        log.stdout.contains("hi admin, typed in a terminal"),
        "{}",
        log.stdout
    );
    t.type_line("/quit");
    let (code, screen) = t.finish();
    assert_eq!(code, 0, "{screen}");
    // The raw bytes on the terminal never held the escape character from
    // the message.
    assert!(!t.recording().contains("pwned\x07"));
}
