//! `fts admin`: the client table, kick, warn and log export (admin password).

use super::{context, output::Output, Global};
use clap::{Args, Subcommand, ValueEnum};
use fts::{Error, Result};
use std::io::Write;

/// Manage a server's clients and read its log (needs the admin password).
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// The connected clients: id, name, address, state, file, progress, rate.
    Clients(RemoteArg),
    /// Disconnect a client. Its transfer stops at once, it is shown the
    /// reason and exits with code 10; an interrupted upload stays resumable.
    Kick(KickArgs),
    /// Show a warning on one client's terminal (or every client's with
    /// --all) at once, even in the middle of a transfer.
    Warn(WarnArgs),
    /// Export the server's event log (JSON Lines or CSV), oldest first.
    Log(LogArgs),
}

#[derive(Debug, Args)]
pub struct RemoteArg {
    /// The server (HOST: or fts://HOST[:PORT]).
    #[arg(value_name = "REMOTE")]
    pub remote: String,
}

#[derive(Debug, Args)]
pub struct KickArgs {
    /// The server (HOST: or fts://HOST[:PORT]).
    #[arg(value_name = "REMOTE")]
    pub remote: String,
    /// The client's id (from `fts stats` or `fts admin clients`).
    #[arg(value_name = "ID")]
    pub id: u64,
    /// Told to the client.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct WarnArgs {
    /// The server (HOST: or fts://HOST[:PORT]).
    #[arg(value_name = "REMOTE")]
    pub remote: String,
    /// Warn every connected client (then give only TEXT).
    #[arg(long)]
    pub all: bool,
    /// ID TEXT, or with --all just TEXT.
    #[arg(value_name = "ID|TEXT", num_args = 1..=2, required = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Jsonl,
    Csv,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// The server (HOST: or fts://HOST[:PORT]).
    #[arg(value_name = "REMOTE")]
    pub remote: String,
    /// Only events of the last DURATION (e.g. 90s, 15m, 2h, 7d).
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// Only this category: server, connect, auth, transfer, delete, chat,
    /// admin or error.
    #[arg(long, value_name = "C")]
    pub category: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = LogFormat::Jsonl)]
    pub format: LogFormat,
}

pub async fn run(g: &Global, out: &Output, cmd: AdminCommand) -> Result<()> {
    let remote_s = match &cmd {
        AdminCommand::Clients(a) => &a.remote,
        AdminCommand::Kick(a) => &a.remote,
        AdminCommand::Warn(a) => &a.remote,
        AdminCommand::Log(a) => &a.remote,
    };
    let remote = fts::remote::parse_remote(remote_s)?;
    // Check what can be checked before connecting.
    let warn_target = match &cmd {
        AdminCommand::Warn(a) => Some(warn_target(a)?),
        _ => None,
    };
    let since = match &cmd {
        AdminCommand::Log(LogArgs { since: Some(s), .. }) => Some(
            humantime::parse_duration(s)
                .map_err(|e| Error::usage(format!("--since {s}: {e}")))?
                .as_secs(),
        ),
        _ => None,
    };
    let ctx = context(g, out, None)?;
    let mut client = ctx.connect(&remote).await?;
    match cmd {
        AdminCommand::Clients(_) => {
            let stats = client.admin_clients().await?;
            if out.json {
                out.json(&stats.clients);
            } else {
                print!("{}", super::output::clients_text(&stats));
            }
        }
        AdminCommand::Kick(a) => {
            client.kick(a.id, &a.reason).await?;
            if out.json {
                out.json(&serde_json::json!({ "kicked": a.id }));
            } else {
                out.line(&format!("kicked client #{}", a.id));
            }
        }
        AdminCommand::Warn(_) => {
            let (id, text) = warn_target.unwrap_or_default();
            let n = client.warn(id, &text).await?;
            if out.json {
                out.json(&serde_json::json!({ "warned": n }));
            } else {
                out.line(&format!(
                    "warned {n} client{}",
                    if n == 1 { "" } else { "s" }
                ));
            }
        }
        AdminCommand::Log(a) => {
            let csv = a.format == LogFormat::Csv;
            let mut so = std::io::stdout().lock();
            let mut put = |line: String| so.write_all(line.as_bytes()).map_err(Error::stdout);
            if csv {
                put(csv_line(&CSV_HEADER.map(String::from)))?;
            }
            client
                .admin_log(since, a.category, &mut |v| {
                    put(if csv {
                        csv_line(&csv_row(&v))
                    } else {
                        format!("{v}\n")
                    })
                })
                .await?;
        }
    }
    client.close().await
}

fn warn_target(a: &WarnArgs) -> Result<(Option<u64>, String)> {
    match (a.all, a.args.as_slice()) {
        (true, [text]) => Ok((None, text.clone())),
        (false, [id, text]) => {
            let id = id
                .parse()
                .map_err(|_| Error::usage(format!("'{id}' is not a client id (a number)")))?;
            Ok((Some(id), text.clone()))
        }
        (true, _) => Err(Error::usage("with --all give only the TEXT")),
        (false, _) => Err(Error::usage(
            "give a client ID and the TEXT (or --all TEXT)",
        )),
    }
}

const CSV_HEADER: [&str; 6] = ["time", "category", "event", "client", "addr", "detail"];

/// One CSV line (quoted as needed).
fn csv_line(fields: &[String]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(fields);
    String::from_utf8_lossy(&w.into_inner().unwrap_or_default()).into_owned()
}

/// A log record as CSV fields: the common ones, then the rest as JSON.
fn csv_row(v: &serde_json::Value) -> Vec<String> {
    let field = |k: &str| match v.get(k) {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(x) => x.to_string(),
    };
    let mut rest = v.as_object().cloned().unwrap_or_default();
    for k in ["time", "category", "event", "client", "addr"] {
        rest.remove(k);
    }
    let row = [
        field("time"),
        field("category"),
        field("event"),
        field("client"),
        field("addr"),
        serde_json::Value::Object(rest).to_string(),
    ];
    // A cell starting with = + - @ is a formula to a spreadsheet.
    row.into_iter()
        .map(|c| {
            if c.starts_with(['=', '+', '-', '@']) {
                format!("'{c}")
            } else {
                c
            }
        })
        .collect()
}
