//! `fts ls`: one entry, or a directory's listing, as the server gives it
//! once the client has checked it.

use super::Context;
use crate::error::{Error, Result};
use crate::guard;
use crate::model::{Entry, EntryKind};
use crate::remote::Remote;

/// `fts ls`: the entries at a remote path.
pub async fn ls(ctx: &Context, remote: &Remote, recursive: bool) -> Result<Vec<Entry>> {
    let mut client = ctx.connect(remote).await?;
    let entry = client.stat(&remote.path).await?.ok_or_else(|| {
        Error::not_found(format!(
            "{}: no such file or directory on the server",
            remote.path
        ))
    })?;
    guard::check_stat_reply(&remote.path, &entry)?;
    let out = if entry.kind == EntryKind::Dir {
        let listing = client.list(&remote.path, recursive, false).await?;
        guard::check_listing(&entry.path, &listing, recursive)?;
        listing
    } else {
        vec![entry]
    };
    let _ = client.close().await;
    Ok(out)
}
