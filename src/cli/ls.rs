//! `fts ls`: list a remote directory.

use super::{context, output::rfc3339, output::Output, Global};
use clap::Args;
use fts::model::EntryKind;
use fts::Result;
use serde::Serialize;

/// List files on a server.
///
/// Paths are shown relative to the share root, so they can be passed back
/// to `get` or `rm` as HOST:PATH. With --json: an array of
/// {path, size, mtime (RFC 3339), is_dir, kind, mode}.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// HOST:PATH or fts://HOST[:PORT]/PATH (HOST: is the share root).
    pub remote: String,
    /// Long format: permissions, size, modification time.
    #[arg(short, long)]
    pub long: bool,
    /// List subdirectories recursively.
    #[arg(short, long)]
    pub recursive: bool,
}

#[derive(Serialize)]
struct LsEntry {
    path: String,
    size: u64,
    mtime: String,
    is_dir: bool,
    kind: EntryKind,
    mode: String,
    /// A symlink's target, as `ls -l` shows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
}

fn mode_string(kind: EntryKind, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(match kind {
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::File => '-',
    });
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

pub async fn run(g: &Global, out: &Output, a: LsArgs) -> Result<()> {
    let remote = fts::remote::parse_remote(&a.remote)?;
    let ctx = context(g, out, None)?;
    let entries = fts::ops::ls(&ctx, &remote, a.recursive).await?;
    if out.json {
        let v: Vec<LsEntry> = entries
            .into_iter()
            .map(|e| LsEntry {
                mtime: rfc3339(e.mtime),
                is_dir: e.kind == EntryKind::Dir,
                mode: format!("{:04o}", e.mode),
                size: e.size,
                kind: e.kind,
                target: e.target,
                path: e.path,
            })
            .collect();
        out.json(&v);
        return Ok(());
    }
    for e in entries {
        let name = if e.kind == EntryKind::Dir {
            format!("{}/", e.path)
        } else {
            e.path.clone()
        };
        if a.long {
            let t = rfc3339(e.mtime);
            let link = match (&e.kind, &e.target) {
                (EntryKind::Symlink, Some(to)) => format!(" -> {to}"),
                _ => String::new(),
            };
            out.line(&format!(
                "{} {:>12} {} {name}{link}",
                mode_string(e.kind, e.mode),
                e.size,
                t,
            ));
        } else {
            out.line(&name);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn mode_strings() {
        assert_eq!(
            super::mode_string(super::EntryKind::Dir, 0o755),
            "drwxr-xr-x"
        );
        assert_eq!(
            super::mode_string(super::EntryKind::File, 0o640),
            "-rw-r-----"
        );
    }
}
