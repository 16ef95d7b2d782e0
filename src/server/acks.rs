//! Upload acknowledgements held until the files they confirm are durable.
//!
//! A put's `Done` promises the file is stored, so it may go out only once
//! the file's data and its directory entry survive a power cut. One
//! durability pass per file would make small files pay a disk flush each;
//! instead, while a client keeps pipelining requests, the session holds
//! the replies of the puts it has committed and makes the whole batch
//! durable with one [`crate::store::Store::make_durable`] call before it
//! sends any of them: when the input runs dry (nothing more arrives within
//! [`LINGER`]), before any request that is not a put, or when the batch
//! reaches [`MAX_FILES`], [`MAX_BYTES`] or [`MAX_AGE`]. With `--no-fsync`
//! nothing is held.

use super::session::{Session, Writer};
use super::LogEvent;
use crate::error::{Error, Result};
use crate::proto::Msg;
use std::time::{Duration, Instant};
use tokio::io::AsyncWrite;

/// Files one pass covers at most, so a long run of tiny files still sees
/// its acknowledgements (and progress) flow.
const MAX_FILES: usize = 1000;
/// Bytes one pass covers at most: beyond this the flush is long anyway,
/// and waiting for more only delays the acknowledgements.
const MAX_BYTES: u64 = 64 << 20;
/// The oldest held acknowledgement waits at most about this long.
const MAX_AGE: Duration = Duration::from_millis(200);
/// How long a session with held acknowledgements waits for the next
/// request before it takes the input as dry. A pipelining client's next
/// put is usually already on its way; a pass costs milliseconds on a
/// disk, so waiting a little for more work to share it with is cheaper
/// than flushing at every gap between two frames.
pub(super) const LINGER: Duration = Duration::from_millis(2);

/// Replies waiting for a durability pass, in the order they must go out.
#[derive(Default)]
pub(super) struct Held {
    replies: Vec<Msg>,
    /// The files committed by the puts among `replies`.
    committed: Vec<String>,
    bytes: u64,
    since: Option<Instant>,
}

impl Held {
    pub(super) fn is_empty(&self) -> bool {
        self.replies.is_empty()
    }

    /// Holds `reply`; `committed` is the path and size of the file it
    /// acknowledges, if it acknowledges one.
    fn push(&mut self, reply: Msg, committed: Option<(&str, u64)>) {
        self.since.get_or_insert_with(Instant::now);
        if let Some((rel, size)) = committed {
            self.committed.push(rel.to_string());
            self.bytes += size;
        }
        self.replies.push(reply);
    }

    /// The batch is big or old enough to make durable now.
    pub(super) fn full(&self) -> bool {
        self.committed.len() >= MAX_FILES
            || self.bytes >= MAX_BYTES
            || self.since.is_some_and(|t| t.elapsed() >= MAX_AGE)
    }
}

impl Session {
    /// Sends the reply to the put of `rel` (`size` bytes): held for the
    /// next durability pass if it acknowledges a committed file (or if
    /// earlier replies are held, to keep the order), else at once.
    pub(super) async fn put_reply<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut Writer<W>,
        reply: Msg,
        rel: &str,
        size: u64,
    ) -> Result<()> {
        let committed = matches!(reply, Msg::Done { .. });
        if !self.opts().fsync || (!committed && self.held.is_empty()) {
            return w.msg(&reply).await;
        }
        self.held.push(reply, committed.then_some((rel, size)));
        Ok(())
    }

    /// Makes the held files durable, then sends the held replies. If the
    /// pass fails, no put of the batch is acknowledged as stored: each
    /// gets the error instead.
    pub(super) async fn release<W: AsyncWrite + Unpin>(&mut self, w: &mut Writer<W>) -> Result<()> {
        let Held {
            mut replies,
            committed,
            ..
        } = std::mem::take(&mut self.held);
        if !committed.is_empty() {
            let store = self.opts().store.clone();
            let files = committed.len() as u64;
            // A pass can take a while (a big file's writeback): not on
            // the reactor, which keeps serving every other client.
            let synced = tokio::task::spawn_blocking(move || store.make_durable(&committed))
                .await
                .unwrap_or_else(|e| Err(Error::other(format!("durability pass failed: {e}"))));
            match synced {
                Ok(()) => self.hub().fsynced(files),
                Err(e) => {
                    self.log(LogEvent::Error {
                        client: self.id,
                        message: e.message.clone(),
                    });
                    for r in &mut replies {
                        if let Msg::Done { id } = *r {
                            *r = Msg::error(Some(id), &e);
                        }
                    }
                }
            }
        }
        for r in &replies {
            w.msg(r).await?;
        }
        Ok(())
    }
}
