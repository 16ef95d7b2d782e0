//! A connection turned into a chat session: one message sent on a plain
//! connection, or the connection split into a [`ChatWriter`] and a
//! [`ChatReader`] that work at once while people type.

use super::{reply_error, Client, Tls};
use crate::error::{Error, Result};
use crate::proto::{Frame, FrameReader, FrameWriter, Msg};
use std::time::Duration;
use tokio::io::{ReadHalf, WriteHalf};

impl Client {
    /// Sends one chat message (as admin when logged in as admin, then `to`
    /// is needed). Returns (live sessions reached, kept for later).
    pub async fn chat_send(&mut self, to: Option<&str>, text: &str) -> Result<(u64, bool)> {
        let id = self.ids(1);
        match self
            .call(&Msg::ChatSend {
                id,
                to: to.map(str::to_string),
                text: text.into(),
            })
            .await?
        {
            Msg::ChatAck { live, stored, .. } => Ok((live, stored)),
            m => Err(Error::protocol(format!("unexpected reply to chat: {m:?}"))),
        }
    }

    /// Enters chat mode (as admin with `admin`, logging in first): messages
    /// for this client now arrive as notices, starting with the unread
    /// ones. Returns the connection split for reading and writing at once.
    pub async fn into_chat(mut self, admin: bool) -> Result<(ChatWriter, ChatReader, u64)> {
        if admin {
            self.elevate().await?;
        }
        let unread = match self.call(&Msg::ChatJoin { admin }).await? {
            Msg::ChatJoined { unread } => unread,
            m => return Err(Error::protocol(format!("unexpected reply: {m:?}"))),
        };
        // Chat waits on people: only writes (and pings) are timed.
        self.r.set_timeout(Duration::from_secs(100 * 365 * 86400));
        Ok((
            ChatWriter {
                _keepalive: self._keepalive.take(),
                w: self.w,
                next_id: self.next_id,
            },
            ChatReader { r: self.r },
            unread,
        ))
    }
}

/// The sending half of a chat connection.
pub struct ChatWriter {
    _keepalive: Option<crate::link::KeepAlive>,
    w: FrameWriter<WriteHalf<Tls>>,
    next_id: u64,
}

impl ChatWriter {
    /// Sends a message; its acknowledgement arrives on the [`ChatReader`]
    /// with the returned id.
    pub async fn send(&mut self, to: Option<&str>, text: &str) -> Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        self.w
            .msg(&Msg::ChatSend {
                id,
                to: to.map(str::to_string),
                text: text.into(),
            })
            .await?;
        self.w.flush().await?;
        Ok(id)
    }

    pub async fn ping(&mut self) -> Result<()> {
        self.w.msg(&Msg::Ping).await?;
        self.w.flush().await
    }

    pub async fn close(mut self) -> Result<()> {
        self.w.msg(&Msg::Bye).await?;
        self.w.shutdown().await
    }
}

/// What comes back on a chat connection besides notices.
#[derive(Debug)]
pub enum ChatReply {
    /// Message `id` went to `live` sessions, or was kept (`stored`).
    Sent { id: u64, live: u64, stored: bool },
    /// Message `id` was refused.
    Refused { id: Option<u64>, error: Error },
}

/// The receiving half of a chat connection; notices go to the handler
/// given in [`super::ConnectOptions::notices`].
pub struct ChatReader {
    r: FrameReader<ReadHalf<Tls>>,
}

impl ChatReader {
    /// The next reply; `None` when the server closed the connection.
    pub async fn next(&mut self) -> Result<Option<ChatReply>> {
        let Some(frame) = self.r.read_opt().await? else {
            return Ok(None);
        };
        match frame {
            Frame::Control(Msg::ChatAck { id, live, stored }) => {
                Ok(Some(ChatReply::Sent { id, live, stored }))
            }
            Frame::Control(Msg::Error { id, kind, message }) => Ok(Some(ChatReply::Refused {
                id,
                error: reply_error(kind, message),
            })),
            other => Err(Error::protocol(format!("unexpected in chat: {other:?}"))),
        }
    }
}
