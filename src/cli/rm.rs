//! `fts rm`: remove remote files (admin password required).

use super::{context, output::Output, Global};
use clap::Args;
use fts::Result;

/// Remove files (and with -r, directories) on a server.
///
/// Needs the server's admin password (--admin-password-file,
/// FTS_ADMIN_PASSWORD, or a prompt on a terminal). A server started without
/// --admin-password-file refuses all removals (exit 5).
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Remove directories and their contents.
    #[arg(short, long)]
    pub recursive: bool,
    /// Remote paths (HOST:PATH or fts://…, all on one server).
    #[arg(required = true, value_name = "REMOTE")]
    pub remotes: Vec<String>,
}

pub async fn run(g: &Global, out: &Output, a: RmArgs) -> Result<()> {
    let remotes = a
        .remotes
        .iter()
        .map(|s| fts::remote::parse_remote(s))
        .collect::<Result<Vec<_>>>()?;
    let ctx = context(g, out, None)?;
    let report = fts::ops::rm(&ctx, &remotes, a.recursive).await?;
    if out.json {
        out.json(&report);
    } else {
        for e in &report.errors {
            eprintln!("fts: {}", super::output::failure_line(e));
        }
        out.line(&format!(
            "removed {}, {}",
            super::output::count(report.files_deleted, "file"),
            super::output::count(report.dirs_deleted, "directory")
        ));
    }
    report.status()
}
