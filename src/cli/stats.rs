//! `fts stats`: a server's status, lifetime totals and connected clients.

use super::{context, output::Output, Global};
use clap::Args;
use fts::{Error, Result};
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Show a server's status, lifetime totals and the clients connected now.
///
/// Needs only the access password. With --json prints one document
/// (`server`, `totals`, `clients`), e.g. `fts stats host: --json | jq
/// .totals.bytes_sent`; with --watch SECS refreshes every SECS seconds
/// until interrupted (with --json: one document per line).
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The server (HOST: or fts://HOST[:PORT]).
    #[arg(value_name = "REMOTE")]
    pub remote: String,
    /// Refresh every SECS seconds until interrupted.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub watch: Option<u64>,
}

pub async fn run(g: &Global, out: &Output, a: StatsArgs) -> Result<()> {
    let remote = fts::remote::parse_remote(&a.remote)?;
    let ctx = context(g, out, None)?;
    let mut client = ctx.connect(&remote).await?;
    let Some(every) = a.watch else {
        let stats = client.stats().await?;
        if out.json {
            out.json(&stats);
        } else {
            print!("{}", super::output::stats_text(&stats, true));
        }
        return client.close().await;
    };
    let clear = !out.json && std::io::stdout().is_terminal();
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        let stats = client.stats().await?;
        let text = if out.json {
            format!("{}\n", serde_json::to_string(&stats).unwrap_or_default())
        } else if clear {
            format!("\x1b[H\x1b[2J{}", super::output::stats_text(&stats, true))
        } else {
            format!("{}\n", super::output::stats_text(&stats, true))
        };
        let mut so = std::io::stdout().lock();
        if so
            .write_all(text.as_bytes())
            .and_then(|_| so.flush())
            .is_err()
        {
            // The reader went away (`| head`): that is the end, not an error.
            return Ok(());
        }
        drop(so);
        // Wait in steps short enough to keep the connection alive.
        let mut left = Duration::from_secs(every);
        while !left.is_zero() {
            let step = left.min(Duration::from_secs(15));
            tokio::select! {
                _ = &mut stop => return client.close().await,
                _ = tokio::time::sleep(step) => {}
            }
            left -= step;
            if !left.is_zero() {
                client.ping().await.map_err(|e| Error::connect(e.message))?;
            }
        }
    }
}
