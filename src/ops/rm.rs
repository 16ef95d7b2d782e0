//! `fts rm`: removes remote paths with the admin login, and reports what
//! went and what did not.

use super::report::FileError;
use super::Context;
use crate::error::{Error, ErrorKind, Result};
use crate::remote::Remote;
use serde::Serialize;

/// The result of `fts rm`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RemoveReport {
    pub files_deleted: u64,
    pub dirs_deleted: u64,
    pub errors: Vec<FileError>,
}

impl RemoveReport {
    pub fn status(&self) -> Result<()> {
        match self.errors.as_slice() {
            [] => Ok(()),
            [only] if self.files_deleted + self.dirs_deleted == 0 => {
                Err(Error::new(only.kind, only.message.clone()))
            }
            errs => Err(Error::new(
                ErrorKind::Partial,
                format!("{} of the paths could not be removed", errs.len()),
            )),
        }
    }
}

/// `fts rm`: removes remote paths (admin password required).
pub async fn rm(ctx: &Context, targets: &[Remote], recursive: bool) -> Result<RemoveReport> {
    let first = targets
        .first()
        .ok_or_else(|| Error::usage("nothing to remove"))?;
    if targets.iter().any(|s| s.host_port() != first.host_port()) {
        return Err(Error::usage("all remote paths must be on the same server"));
    }
    let mut client = ctx.connect(first).await?;
    client.elevate().await?;
    let mut report = RemoveReport::default();
    for t in targets {
        match client.remove(&t.path, recursive).await {
            Ok((f, d)) => {
                report.files_deleted += f;
                report.dirs_deleted += d;
            }
            Err(e) if e.kind == ErrorKind::Connect => return Err(e),
            Err(e) => report.errors.push(FileError::new(&t.path, e)),
        }
    }
    let _ = client.close().await;
    Ok(report)
}
