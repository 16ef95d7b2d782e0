//! `fts put`: upload local files and trees.

use super::{context, output::Output, Global};
use clap::Args;
use fts::remote::{parse_location, Location};
use fts::{Error, Result};
use std::path::PathBuf;

/// Upload files (and with -r, directories) to a server.
///
/// The last argument is the remote target. A source lands inside an
/// existing remote directory under its own name; otherwise the target is
/// its new name. Files are written to a temporary name and renamed into
/// place only after their BLAKE3 hash checks out; mtime and permission bits
/// are kept.
#[derive(Debug, Args)]
#[command(
    override_usage = "fts put [OPTIONS] <LOCAL>... <REMOTE>",
    help_template = super::docs::args_template(&[
        ("<LOCAL>...", "Local files or directories to upload"),
        ("<REMOTE>", "The remote target (HOST:PATH or fts://HOST[:PORT]/PATH)"),
    ])
)]
pub struct PutArgs {
    /// Copy directories recursively.
    #[arg(short, long)]
    pub recursive: bool,
    #[command(flatten)]
    pub transfer: super::TransferArgs,
    /// LOCAL... REMOTE: local files or directories, then the remote target
    /// (HOST:PATH or fts://…).
    #[arg(required = true, num_args = 2.., value_name = "PATH")]
    pub paths: Vec<String>,
}

pub async fn run(g: &Global, out: &Output, a: PutArgs) -> Result<()> {
    let (dest, sources) = a
        .paths
        .split_last()
        .ok_or_else(|| Error::usage("missing arguments"))?;
    let dest = match parse_location(dest)? {
        Location::Remote(r) => r,
        Location::Local(_) => {
            return Err(Error::usage(format!(
                "'{dest}': the last argument of put must be remote (HOST:PATH or fts://HOST[:PORT]/PATH)"
            )))
        }
    };
    let mut locals = Vec::new();
    for s in sources {
        match parse_location(s)? {
            Location::Local(p) => locals.push(p),
            Location::Remote(_) => {
                return Err(Error::usage(format!(
                    "'{s}': put sources must be local (write ./{s} for a local name with ':')"
                )))
            }
        }
    }
    let ctx = context(g, out, Some(&a.transfer))?;
    let report = fts::ops::put(&ctx, &locals as &[PathBuf], &dest, a.recursive).await?;
    out.transfer(&report);
    report.status()
}
