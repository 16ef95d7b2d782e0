//! `--parallel N`: the files of a batch shared out over N connections to
//! the same server, like rclone's `--transfers`. Each connection takes a
//! share of what is left whenever it is done with its last, so a big file
//! on one does not hold up the others; every connection pipelines its
//! share as a single connection does. A file that fails is reported for
//! that file (exit 9 when others went through); a lost connection ends the
//! batch, as it does with one connection.

use super::report::TransferReport;
use super::Context;
use crate::client::Client;
use crate::error::Result;
use std::collections::VecDeque;
use std::sync::Mutex;

/// Opens the extra connections `--parallel` asks for, once per command.
async fn ensure(client: &mut Client, ctx: &Context, n: usize) -> Result<()> {
    while client.extra.len() + 1 < n {
        let remote = client.remote().clone();
        client.extra.push(ctx.connect(&remote).await?);
    }
    Ok(())
}

/// The next share for one connection: a quarter of a fair split of what is
/// left (at least one item, at most 1024), so shares shrink towards the end
/// and the connections finish together.
fn take<T>(queue: &Mutex<VecDeque<T>>, workers: usize) -> Vec<T> {
    let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
    let n = q.len().div_ceil(workers * 4).clamp(1, 1024).min(q.len());
    q.drain(..n).collect()
}

/// Runs `job` on `items` over `ctx.transfer.parallel` connections at once
/// (just `client` when that is 1 or there is only one item), merging what
/// each reports into `report`.
pub(super) async fn share_out<T>(
    client: &mut Client,
    ctx: &Context,
    items: Vec<T>,
    report: &mut TransferReport,
    job: impl AsyncFn(&mut Client, Vec<T>, &mut TransferReport) -> Result<()>,
) -> Result<()> {
    let n = ctx.transfer.parallel.min(items.len());
    if n <= 1 {
        return job(client, items, report).await;
    }
    ensure(client, ctx, n).await?;
    let queue = Mutex::new(VecDeque::from(items));
    let mut extra = std::mem::take(&mut client.extra);
    let (queue, job) = (&queue, &job);
    let workers = std::iter::once(&mut *client)
        .chain(extra.iter_mut())
        .take(n)
        .map(|c| async move {
            let mut mine = TransferReport::default();
            loop {
                let share = take(queue, n);
                if share.is_empty() {
                    return Ok::<_, crate::Error>(mine);
                }
                job(c, share, &mut mine).await?;
            }
        });
    let reports = futures_util::future::try_join_all(workers).await;
    client.extra = extra;
    for r in reports? {
        report.merge(r);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_shrink_towards_the_end_and_cover_everything_once() {
        let q = Mutex::new((0..100).collect::<VecDeque<u32>>());
        let mut sizes = Vec::new();
        let mut seen = Vec::new();
        loop {
            let s = take(&q, 2);
            if s.is_empty() {
                break;
            }
            sizes.push(s.len());
            seen.extend(s);
        }
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        assert_eq!(sizes[0], 13);
        assert_eq!(*sizes.last().unwrap(), 1);
        assert!(sizes.windows(2).all(|w| w[0] >= w[1]));
    }
}
