//! Hidden `fts generate-docs DIR`: writes the man pages (`man/`) and shell
//! completions (`completions/`) from the clap definition. The committed
//! copies are checked against it by `tests/docs.rs`.
//!
//! The exit status, environment and files tables live here once: `fts
//! --help` shows them after the options ([`after_long_help`]) and every
//! man page has them as EXIT STATUS, ENVIRONMENT and FILES sections;
//! tests/readme.rs checks the README's exit-code table against `fts
//! --help`.

use clap::{Args, CommandFactory};
use clap_complete::Shell;
use fts::{Error, Result};
use roff::{bold, italic, roman, Roff};
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct DocsArgs {
    /// Directory that receives man/ and completions/.
    pub out: PathBuf,
}

/// Exit codes and what they mean (src/error.rs maps error kinds to them).
pub const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "success"),
    ("1", "other error"),
    ("2", "usage error"),
    ("3", "file or directory not found (local or remote)"),
    ("4", "authentication failed or required"),
    (
        "5",
        "permission denied (read-only share, admin needed, outside the root)",
    ),
    (
        "6",
        "could not connect / connection lost / timeout / server full",
    ),
    ("7", "server identity mismatch or TLS failure"),
    ("8", "integrity check failed"),
    ("9", "partial: some files failed, the rest were transferred"),
    (
        "10",
        "disconnected by the server's admin (fts admin kick); not retried by --retries",
    ),
    ("130", "interrupted (Ctrl-C, SIGINT)"),
];

/// Environment variables fts reads.
pub const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "FTS_PASSWORD",
        "The access password (after --password-file). For serve: the password clients must give.",
    ),
    (
        "FTS_ADMIN_PASSWORD",
        "The admin password (after --admin-password-file). For serve: enables deletes and admin actions.",
    ),
    (
        "FTS_IDENTITY",
        "The client key file to offer servers with authorized keys (after --identity; default identity.pem in FTS_CONFIG_DIR).",
    ),
    (
        "FTS_STATE_DIR",
        "The server's state directory (default ~/.local/state/fts, or $XDG_STATE_HOME/fts); --state-dir overrides it.",
    ),
    (
        "FTS_CONFIG_DIR",
        "The client's config directory, for known_hosts, the client key and the credentials file (default ~/.config/fts, or $XDG_CONFIG_HOME/fts).",
    ),
    (
        "FTS_CREDENTIAL_STORE",
        "Where fts login keeps passwords: auto (default: the OS keyring, else the credentials file), keyring or file.",
    ),
];

/// Files fts reads and writes (default locations on Linux).
pub const FILES: &[(&str, &str)] = &[
    (
        "~/.config/fts/known_hosts",
        "Pinned server certificates, one HOST:PORT SHA256:... per line (in FTS_CONFIG_DIR).",
    ),
    (
        "~/.config/fts/identity.pem",
        "The client's key (Ed25519) and its self-signed certificate, made by fts keygen, mode 0600 (in FTS_CONFIG_DIR).",
    ),
    (
        "~/.config/fts/credentials",
        "Passwords stored by fts login where no OS keyring works: JSON, plain text, mode 0600 (in FTS_CONFIG_DIR).",
    ),
    (
        "~/.local/state/fts/",
        "The server's state directory (FTS_STATE_DIR, --state-dir).",
    ),
    (
        "~/.local/state/fts/cert.pem, key.pem",
        "The server's self-signed certificate and key, made on first start (not used with --cert/--key).",
    ),
    (
        "~/.local/state/fts/lock",
        "Held by a running fts serve (it contains its PID): a second server on the same state directory refuses to start.",
    ),
    (
        "~/.local/state/fts/totals.json",
        "The server's lifetime totals, written every 2 s when they changed.",
    ),
    (
        "~/.local/state/fts/logs/",
        "The server's event log, events.jsonl (JSON Lines), rotated at 10 MiB to events.1.jsonl ... (5 kept).",
    ),
    (
        ".NAME.fts-part, .NAME.fts-part.json",
        "Beside a target: the partial file of a cut transfer and the source version it belongs to; the next transfer resumes it.",
    ),
];

/// Width of the name column in `fts --help`, and of its lines.
const COL: usize = 22;
const WIDTH: usize = 80;

/// `rows` as a two-column list, wrapped to [`WIDTH`] with a hanging indent
/// (clap wraps after_help again only on terminals narrower than that).
fn plain_table(out: &mut String, title: &str, rows: &[(&str, &str)]) {
    out.push_str(title);
    out.push_str(":\n");
    for (name, text) in rows {
        let mut line = format!("  {name}");
        if line.len() + 2 > COL {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        for word in text.split(' ') {
            if line.len() < COL {
                line.push_str(&" ".repeat(COL - line.len()));
            } else if line.len() + 1 + word.len() >= WIDTH {
                out.push_str(&line);
                out.push('\n');
                line = " ".repeat(COL);
            } else {
                line.push(' ');
            }
            line.push_str(word);
        }
        out.push_str(&line);
        out.push('\n');
    }
}

/// After the options of `fts -h`: where the rest is.
pub fn after_help() -> String {
    let names: Vec<&str> = ENVIRONMENT.iter().map(|(n, _)| *n).collect();
    format!(
        "Environment: {}.\nExit status, environment and files: see --help or man fts.",
        names.join(", ")
    )
}

/// After the options of `fts --help`: exit status, environment, files.
pub fn after_long_help() -> String {
    let mut s = String::new();
    plain_table(&mut s, "Exit status", EXIT_STATUS);
    s.push('\n');
    plain_table(&mut s, "Environment", ENVIRONMENT);
    s.push('\n');
    plain_table(&mut s, "Files", FILES);
    s.trim_end().to_string()
}

/// A help template with the Arguments section written out as `args`
/// (name, help), for `put` and `get`: their sources and target are one
/// clap list (at least two values, the last one the target), which clap
/// can only show as `<X> <X>...`. Use with an `override_usage`.
pub fn args_template(args: &[(&str, &str)]) -> String {
    let header = clap::builder::Styles::default().get_header().render();
    let reset = clap::builder::Styles::default().get_header().render_reset();
    let w = args.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut rows = String::new();
    for (name, help) in args {
        rows.push_str(&format!("  {name:<w$}  {help}\n"));
    }
    format!(
        "{{before-help}}{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n\
         {header}Arguments:{reset}\n{rows}\n{header}Options:{reset}\n{{options}}{{after-help}}"
    )
}

fn write(path: &Path, data: &[u8]) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| Error::local_io(d, e))?;
    }
    std::fs::write(path, data).map_err(|e| Error::local_io(path, e))
}

/// The apostrophe preamble every roff render starts with.
const PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";

fn roff_section(
    roff: &mut Roff,
    title: &str,
    rows: &[(&str, &str)],
    name: fn(&str) -> roff::Inline,
) {
    roff.control("SH", [title]);
    for (n, text) in rows {
        roff.control("TP", []);
        roff.text([name(n)]);
        roff.text([roman(*text)]);
    }
}

/// Renders `` `code` `` in text lines as bold (an unpaired backtick is
/// dropped), so no backtick reaches the reader.
fn render_backticks(page: &str) -> String {
    let mut out = String::with_capacity(page.len());
    for line in page.lines() {
        if line.starts_with('.') || !line.contains('`') {
            out.push_str(line);
        } else {
            let parts: Vec<&str> = line.split('`').collect();
            let paired = parts.len() % 2 == 1;
            for (i, part) in parts.iter().enumerate() {
                let code = i % 2 == 1 && (paired || i + 1 < parts.len());
                if code {
                    out.push_str("\\fB");
                    out.push_str(part);
                    out.push_str("\\fR");
                } else {
                    out.push_str(part);
                }
            }
        }
        out.push('\n');
    }
    out
}

/// One man page. `cmd` is built (global flags propagated, bin name set to
/// e.g. `fts put`); `name` is the page's name (`fts-put`).
fn man(cmd: &clap::Command, name: &str, see_also: &[String]) -> Result<Vec<u8>> {
    use clap_mangen::Man;
    let page = cmd
        .clone()
        .name(name.to_string())
        .display_name(name.to_string())
        .after_help(None::<&str>)
        .after_long_help(None::<&str>);
    let m = Man::new(page.clone());
    let render = |f: fn(&Man, &mut dyn std::io::Write) -> std::io::Result<()>| {
        let mut buf = Vec::new();
        f(&m, &mut buf).map_err(|e| Error::other(e.to_string()))?;
        String::from_utf8(buf).map_err(|e| Error::other(e.to_string()))
    };
    let mut parts = vec![
        render(Man::render_title)?,
        render(Man::render_name_section)?,
    ];
    // clap's usage line (`fts put [OPTIONS] <LOCAL>... <REMOTE>`), as in
    // --help, rather than clap_mangen's list of every flag.
    let mut synopsis = Roff::default();
    synopsis.control("SH", ["SYNOPSIS"]);
    let usage = page.clone().render_usage().to_string();
    let usage = usage.strip_prefix("Usage: ").unwrap_or(&usage);
    let bin = cmd.get_bin_name().unwrap_or(name);
    synopsis.text([bold(bin), roman(usage.strip_prefix(bin).unwrap_or(usage))]);
    parts.push(synopsis.render());
    parts.push(render(Man::render_description_section)?);
    if page.get_arguments().any(|a| !a.is_hide_set()) {
        parts.push(render(Man::render_options_section)?);
    }
    if page.get_subcommands().any(|s| !s.is_hide_set()) {
        parts.push(render(Man::render_subcommands_section)?);
    }
    let mut roff = Roff::default();
    roff_section(&mut roff, "EXIT STATUS", EXIT_STATUS, |n| bold(n));
    roff_section(&mut roff, "ENVIRONMENT", ENVIRONMENT, |n| bold(n));
    roff_section(&mut roff, "FILES", FILES, |n| italic(n));
    if !see_also.is_empty() {
        roff.control("SH", ["SEE ALSO"]);
        roff.text([roman(see_also.join(", "))]);
    }
    parts.push(roff.render());
    if page.get_version().is_some() {
        parts.push(render(Man::render_version_section)?);
    }
    let mut text = String::from(PREAMBLE);
    for p in &parts {
        text.push_str(p.strip_prefix(PREAMBLE).unwrap_or(p));
    }
    Ok(render_backticks(&text).into_bytes())
}

/// The clap definition as the man pages show it: no `help` subcommand
/// (there is no fts-help(1)), every flag a command accepts on its page.
fn for_man(cmd: clap::Command) -> clap::Command {
    let mut cmd = cmd.disable_help_subcommand(true);
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for n in names {
        cmd = cmd.mut_subcommand(n, for_man);
    }
    cmd
}

/// Writes the pages of `cmd` (built) and of its visible subcommands.
fn pages(out: &Path, cmd: &clap::Command, name: &str, parent: Option<&str>) -> Result<()> {
    let subs: Vec<&clap::Command> = cmd.get_subcommands().filter(|s| !s.is_hide_set()).collect();
    let mut see_also: Vec<String> = parent.iter().map(|p| format!("{p}(1)")).collect();
    if parent.is_some() && parent != Some("fts") {
        see_also.push("fts(1)".into());
    }
    write(
        &out.join(format!("man/{name}.1")),
        &man(cmd, name, &see_also)?,
    )?;
    for sub in subs {
        pages(out, sub, &format!("{name}-{}", sub.get_name()), Some(name))?;
    }
    Ok(())
}

pub fn run(a: DocsArgs) -> Result<()> {
    let cmd = super::Cli::command();
    let mut built = for_man(cmd.clone());
    built.build();
    pages(&a.out, &built, "fts", None)?;
    for (shell, file) in [
        (Shell::Bash, "fts.bash"),
        (Shell::Zsh, "_fts"),
        (Shell::Fish, "fts.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "fts", &mut buf);
        write(&a.out.join("completions").join(file), &buf)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backticks_become_bold() {
        assert_eq!(
            render_backticks("a `b` c `d\n.TP `x`\n"),
            "a \\fBb\\fR c d\n.TP `x`\n"
        );
    }

    #[test]
    fn every_error_kind_has_its_exit_status() {
        use fts::error::ErrorKind::*;
        for k in [
            Other, Usage, NotFound, Auth, Permission, Connect, Tls, Integrity, Partial, Kicked,
        ] {
            let code = k.exit_code().to_string();
            assert!(
                EXIT_STATUS.iter().any(|(c, _)| *c == code),
                "exit code {code} ({k}) is not documented"
            );
        }
    }
}
