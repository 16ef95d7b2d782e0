//! `fts get`: download remote files and trees.

use super::{context, output::Output, Global};
use clap::Args;
use fts::remote::{parse_location, Location};
use fts::{Error, Result};

/// Download files (and with -r, directories) from a server.
///
/// The last argument is the local target. A source lands inside an
/// existing local directory under its own name; otherwise the target is its
/// new name. `HOST:` with -r copies the whole share's contents into the
/// target. Files are written to a temporary name and renamed into place
/// only after their BLAKE3 hash checks out; mtime and permission bits are
/// kept.
#[derive(Debug, Args)]
#[command(
    override_usage = "fts get [OPTIONS] <REMOTE>... <LOCAL>",
    help_template = super::docs::args_template(&[
        ("<REMOTE>...", "Remote files or directories to download (HOST:PATH or fts://…, all on one server)"),
        ("<LOCAL>", "The local target"),
    ])
)]
pub struct GetArgs {
    /// Copy directories recursively.
    #[arg(short, long)]
    pub recursive: bool,
    /// Report success without first making the downloaded files durable
    /// (no fsync): faster, but a power cut right after may lose them.
    #[arg(long)]
    pub no_fsync: bool,
    #[command(flatten)]
    pub transfer: super::TransferArgs,
    /// REMOTE... LOCAL: remote sources (HOST:PATH or fts://…, all on one
    /// server), then the local target.
    #[arg(required = true, num_args = 2.., value_name = "PATH")]
    pub paths: Vec<String>,
}

pub async fn run(g: &Global, out: &Output, a: GetArgs) -> Result<()> {
    let (dest, sources) = a
        .paths
        .split_last()
        .ok_or_else(|| Error::usage("missing arguments"))?;
    let dest = match parse_location(dest)? {
        Location::Local(p) => p,
        Location::Remote(_) => {
            return Err(Error::usage(format!(
                "'{dest}': the last argument of get must be local (write ./{dest} for a local name with ':')"
            )))
        }
    };
    let remotes = sources
        .iter()
        .map(|s| fts::remote::parse_remote(s))
        .collect::<Result<Vec<_>>>()?;
    let mut ctx = context(g, out, Some(&a.transfer))?;
    ctx.transfer.fsync = !a.no_fsync;
    let report = fts::ops::get(&ctx, &remotes, &dest, a.recursive).await?;
    out.transfer(&report);
    report.status()
}
