//! `fts chat`: talk with a server's admins (or, as admin, with clients).

use super::{context, output::Output, Global};
use clap::Args;
use fts::client::ChatReply;
use fts::model::{clean_message, printable, Notice, NoticeKind, MAX_MESSAGE, MAX_NAME};
use fts::{Error, Result};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Chat with the server's admins (or, with --admin, with its clients).
///
/// Interactive: type a line and Enter to send it; messages arrive as they
/// are written, with time and sender; `/to ID` (admin) picks who gets your
/// lines, `/quit` or end of input leaves. With -m TEXT one message is sent
/// and the command exits. With --json every message is one JSON line:
/// {time, from, to, kind: chat|warning|system, text}. Messages are at most
/// 2000 bytes; control characters are shown escaped (^[ …), never acted on;
/// at most a burst of 5 messages, then 1 per second. Messages for a client
/// that is not in chat are kept (100 per client) and announced as "N
/// unread" on its next command.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The server (HOST: or fts://HOST[:PORT]).
    #[arg(value_name = "REMOTE")]
    pub remote: String,
    /// Send this one message and exit.
    #[arg(short, long, value_name = "TEXT")]
    pub message: Option<String>,
    /// Admin: the client (id from `fts stats`, or name) to write to.
    #[arg(long, value_name = "CLIENT_ID")]
    pub to: Option<String>,
    /// Chat as the server's admin: see every client's messages (needs the
    /// admin password).
    #[arg(long)]
    pub admin: bool,
}

/// How one notice is printed in chat.
fn chat_line(n: &Notice, json: bool) -> String {
    if json {
        return serde_json::to_string(n).unwrap_or_default();
    }
    let time = n.time.get(11..19).unwrap_or(&n.time);
    let from = printable(&n.from, MAX_NAME * 2);
    let from = match n.from_id {
        Some(id) => format!("{from} #{id}"),
        None => from,
    };
    let text = printable(&n.text, MAX_MESSAGE);
    match n.kind {
        NoticeKind::Chat => format!("[{time}] {from} → {}: {text}", printable(&n.to, MAX_NAME)),
        NoticeKind::Warning => format!("[{time}] WARNING from {from}: {text}"),
        NoticeKind::System => format!("[{time}] * {text}"),
    }
}

fn print_line(s: &str) -> Result<()> {
    let mut so = std::io::stdout().lock();
    writeln!(so, "{s}")
        .and_then(|_| so.flush())
        .map_err(Error::stdout)
}

pub async fn run(g: &Global, out: &Output, a: ChatArgs) -> Result<()> {
    let remote = fts::remote::parse_remote(&a.remote)?;
    if let Some(m) = &a.message {
        clean_message(m)?;
        if a.admin && a.to.is_none() {
            return Err(Error::usage(
                "as admin, say whom to write to with --to CLIENT_ID",
            ));
        }
    }
    let mut ctx = context(g, out, None)?;
    let json = out.json;
    if a.message.is_none() {
        ctx.connect.notices = Some(Arc::new(move |n: Notice| {
            let _ = print_line(&chat_line(&n, json));
        }));
    }
    let mut client = ctx.connect(&remote).await?;
    if let Some(m) = &a.message {
        if a.admin {
            client.elevate().await?;
        }
        let (live, stored) = client.chat_send(a.to.as_deref(), m).await?;
        if json {
            out.json(&serde_json::json!({"sent": true, "live": live, "stored": stored}));
        } else if stored {
            out.line("sent (nobody is in chat right now: it is kept as unread)");
        } else {
            out.line(&format!(
                "sent to {live} chat session{}",
                if live == 1 { "" } else { "s" }
            ));
        }
        return client.close().await;
    }
    let server = client.server().to_string();
    let (mut tx, mut rx, unread) = client.into_chat(a.admin).await?;
    if !out.quiet && !json {
        eprintln!(
            "fts: in chat on {server}{}{}; /quit or end of input to leave{}",
            if a.admin { " as admin" } else { "" },
            if unread > 0 {
                format!(", {unread} unread shown above")
            } else {
                String::new()
            },
            if a.admin {
                "; /to ID picks who gets your lines"
            } else {
                ""
            },
        );
    }
    let mut to = a.to.clone();
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut ping = tokio::time::interval(Duration::from_secs(20));
    ping.tick().await;
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    let result = loop {
        tokio::select! {
            line = read_line(&mut stdin) => {
                let Some(line) = line? else { break Ok(()) };
                let line = line.trim_end_matches(['\r', '\n']);
                if line.trim().is_empty() {
                    continue;
                }
                if line == "/quit" {
                    break Ok(());
                }
                if let Some(id) = line.strip_prefix("/to ") {
                    to = Some(id.trim().to_string());
                    if !json {
                        eprintln!("fts: now writing to {}", printable(id.trim(), MAX_NAME));
                    }
                    continue;
                }
                if line.starts_with('/') {
                    eprintln!("fts: unknown command {} (/to ID, /quit)", printable(line, 40));
                    continue;
                }
                if let Err(e) = clean_message(line) {
                    out.error(&e);
                    continue;
                }
                if a.admin && to.is_none() {
                    eprintln!("fts: say whom to write to first: /to ID");
                    continue;
                }
                tx.send(to.as_deref(), line).await?;
            }
            reply = rx.next() => match reply? {
                None => break Err(Error::connect("the server closed the chat")),
                Some(ChatReply::Refused { error, .. }) => { out.error(&error); }
                Some(ChatReply::Sent { stored: true, .. }) if !json => {
                    eprintln!("fts: nobody is in chat right now: your message is kept as unread");
                }
                Some(ChatReply::Sent { .. }) => {}
            },
            _ = ping.tick() => tx.ping().await?,
            _ = &mut stop => break Ok(()),
        }
    };
    let _ = tx.close().await;
    result
}

/// One line of input, at most 64 KiB (the rest of a longer line is
/// dropped); `None` at end of input.
async fn read_line<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> Result<Option<String>> {
    const LIMIT: usize = 64 * 1024;
    let mut line = Vec::new();
    loop {
        let buf = r
            .fill_buf()
            .await
            .map_err(|e| Error::other(format!("reading input: {e}")))?;
        if buf.is_empty() {
            return Ok((!line.is_empty()).then(|| String::from_utf8_lossy(&line).into_owned()));
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let room = LIMIT.saturating_sub(line.len());
        line.extend_from_slice(&buf[..take.min(room)]);
        r.consume(take);
        if done {
            return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
        }
    }
}
