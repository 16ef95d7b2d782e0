//! `fts sync`: make one directory a mirror of another, across the network.

use super::{context, output::Output, Global};
use clap::Args;
use fts::remote::parse_location;
use fts::Result;

/// Make DST a mirror of the contents of SRC (one side remote).
///
/// Like `rsync -a SRC/ DST/`: unchanged files (same size and mtime, or same
/// BLAKE3 with --checksum) are skipped, changed ones are sent as deltas,
/// new directories (also empty ones) are created, symlinks are copied as
/// symlinks (never followed; ones pointing outside the tree are refused),
/// and mtime and permission bits are kept. Many small files travel
/// pipelined over one connection. --delete removes what SRC does not have
/// (on the server this needs the admin password); --dry-run only reports
/// what a real run would do.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Source directory (local, or HOST:PATH / fts://…).
    pub src: String,
    /// Destination directory (the other side); created if missing.
    pub dst: String,
    /// Delete files in DST that are not in SRC.
    #[arg(long)]
    pub delete: bool,
    /// Show what would be transferred or deleted; change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Leave matching paths alone (repeatable). A pattern without `/`
    /// matches a name at any depth (`*.log`), one with `/` the path from the
    /// top (`/build`, `docs/*.tmp`); excluded paths are not deleted either.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Compare file contents (BLAKE3) instead of size and mtime.
    #[arg(short = 'c', long)]
    pub checksum: bool,
    /// When pulling, report success without first making the downloaded
    /// files durable (no fsync). A push is made durable by the server
    /// (see `fts serve --no-fsync`).
    #[arg(long)]
    pub no_fsync: bool,
    #[command(flatten)]
    pub transfer: super::TransferArgs,
}

pub async fn run(g: &Global, out: &Output, a: SyncArgs) -> Result<()> {
    let src = parse_location(&a.src)?;
    let dst = parse_location(&a.dst)?;
    let mut ctx = context(g, out, Some(&a.transfer))?;
    ctx.transfer.delete = a.delete;
    ctx.transfer.dry_run = a.dry_run;
    ctx.transfer.excludes = a.exclude;
    ctx.transfer.checksum = a.checksum;
    ctx.transfer.fsync = !a.no_fsync;
    let report = fts::ops::sync(&ctx, &src, &dst).await?;
    out.transfer(&report);
    report.status()
}
