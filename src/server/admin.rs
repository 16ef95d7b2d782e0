//! Admin actions (client table, kick, warn, log export) and chat, for an
//! fts session; the web side's admin page calls the same hub functions.

use super::session::{Session, Writer};
use super::LogEvent;
use super::Shared;
use crate::error::{Error, Result};
use crate::model::{Notice, NoticeKind};
use crate::proto::{AdminAction, Msg};
use std::time::Duration;
use tokio::io::AsyncWrite;

impl Session {
    /// Tells the person at the client about chat messages waiting for them.
    pub(super) fn announce_unread(&self, admin: bool) {
        let (n, whose) = if admin {
            (self.hub().unread_admin(), "from clients for the admins")
        } else {
            (
                self.hub().unread(&self.live.name()),
                "from the server's admins",
            )
        };
        if n == 0 {
            return;
        }
        let cmd = if admin {
            "fts chat --admin"
        } else {
            "fts chat"
        };
        let _ = self.live_notice(
            NoticeKind::System,
            format!(
                "{n} unread message{} {whose}: read {} with `{cmd}`",
                if n == 1 { "" } else { "s" },
                if n == 1 { "it" } else { "them" }
            ),
        );
    }

    pub(super) fn live_notice(&self, kind: NoticeKind, text: String) -> bool {
        self.hub().notify(
            &self.live,
            Notice {
                time: crate::server::hub::now_rfc3339(),
                from: "server".into(),
                to: self.live.name(),
                kind,
                text,
                from_id: None,
            },
        )
    }

    /// Enters chat mode. Waiting messages are written before the reply,
    /// so the client has shown them by the time it knows it is in.
    pub(super) async fn chat_join<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut Writer<W>,
        admin: bool,
    ) -> Result<()> {
        if admin && !self.admin {
            let e = self.admin_needed("chatting as admin");
            return w.msg(&Msg::error(None, &e)).await;
        }
        let waiting = self.hub().join_chat(&self.live, admin);
        let unread = waiting.len() as u64;
        for notice in waiting {
            w.msg(&Msg::Notice { notice }).await?;
        }
        w.msg(&Msg::ChatJoined { unread }).await
    }

    pub(super) async fn admin_action<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut Writer<W>,
        action: AdminAction,
    ) -> Result<()> {
        let (name, target) = match &action {
            AdminAction::Clients => ("clients", None),
            AdminAction::Kick { client, .. } => ("kick", Some(*client)),
            AdminAction::Warn { client, .. } => ("warn", *client),
            AdminAction::Log { .. } => ("log", None),
        };
        if !self.admin {
            let e = self.admin_needed(&format!("admin {name}"));
            self.log(LogEvent::Admin {
                client: self.id,
                action: name.into(),
                target,
                ok: false,
                detail: "refused: not logged in as admin".into(),
            });
            return w.msg(&Msg::error(None, &e)).await;
        }
        let me = format!("admin ({})", self.live.name());
        let result: Result<Msg> = match action {
            AdminAction::Clients => Ok(Msg::StatsReply {
                stats: Box::new(self.hub().stats()),
            }),
            AdminAction::Kick { client, reason } => self
                .shared
                .kick(self.id, client, &reason, None)
                .map(|n| Msg::AdminOk { clients: n }),
            AdminAction::Warn { client, text } => self
                .shared
                .warn(self.id, client, &text, &me, None)
                .map(|n| Msg::AdminOk { clients: n }),
            AdminAction::Log { since_s, category } => {
                return self.export_log(w, since_s, category).await;
            }
        };
        match result {
            Ok(reply) => w.msg(&reply).await,
            Err(e) => w.msg(&Msg::error(None, &e)).await,
        }
    }

    /// Streams the event log, oldest first, in batches.
    pub(super) async fn export_log<W: AsyncWrite + Unpin>(
        &self,
        w: &mut Writer<W>,
        since_s: Option<u64>,
        category: Option<String>,
    ) -> Result<()> {
        if let Some(c) = &category {
            if !crate::server::journal::CATEGORIES.contains(&c.as_str()) {
                let e = Error::usage(format!(
                    "unknown log category '{c}' (one of: {})",
                    crate::server::journal::CATEGORIES.join(", ")
                ));
                return w.msg(&Msg::error(None, &e)).await;
            }
        }
        self.log(LogEvent::Admin {
            client: self.id,
            action: "log".into(),
            target: None,
            ok: true,
            detail: format!(
                "export{}{}",
                category
                    .as_ref()
                    .map(|c| format!(" category={c}"))
                    .unwrap_or_default(),
                since_s.map(|s| format!(" since={s}s")).unwrap_or_default()
            ),
        });
        if self.shared.journal.is_none() {
            return w.msg(&Msg::LogEnd).await;
        }
        let shared = self.shared.clone();
        let since = since_s.map(|s| std::time::SystemTime::now() - Duration::from_secs(s));
        // Read on a blocking thread; batches come back through a small
        // channel, so a long log never sits in memory whole.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<serde_json::Value>>(2);
        let reader = tokio::task::spawn_blocking(move || -> Result<()> {
            let Some(j) = &shared.journal else {
                return Ok(());
            };
            // Everything logged before the question, this request too.
            shared.logger.flush();
            let mut batch = Vec::new();
            let mut bytes = 0;
            j.query(since, category.as_deref(), &mut |v| {
                bytes += v.to_string().len() + 8;
                batch.push(v);
                if bytes > 24 * 1024 {
                    bytes = 0;
                    tx.blocking_send(std::mem::take(&mut batch))
                        .map_err(|_| Error::other("log export cancelled"))?;
                }
                Ok(())
            })?;
            if !batch.is_empty() {
                let _ = tx.blocking_send(batch);
            }
            Ok(())
        });
        while let Some(records) = rx.recv().await {
            w.msg(&Msg::LogBatch { records }).await?;
        }
        match reader.await {
            Ok(Ok(())) => w.msg(&Msg::LogEnd).await,
            Ok(Err(e)) => w.msg(&Msg::error(None, &e)).await,
            Err(e) => w.msg(&Msg::error(None, &Error::other(e.to_string()))).await,
        }
    }

    /// A chat message from this session; the acknowledgement to send.
    pub(super) fn chat_send(&self, id: u64, to: Option<String>, text: &str) -> Msg {
        match self.hub().chat(&self.live, self.admin, to.as_deref(), text) {
            Ok((n, live, stored)) => {
                self.log(LogEvent::Chat {
                    client: self.id,
                    from: n.from,
                    to: n.to,
                    text: n.text,
                    live,
                    stored,
                });
                Msg::ChatAck { id, live, stored }
            }
            Err(e) => Msg::error(Some(id), &e),
        }
    }
}

/// The one way to kick or warn, for fts admins and the web's admin page
/// alike: the action, then its `Admin` event in the log. `via` names the
/// route when it is not the fts protocol (`"web"`).
impl Shared {
    pub(super) fn kick(
        &self,
        by: u64,
        client: u64,
        reason: &str,
        via: Option<&str>,
    ) -> Result<u64> {
        let reason = if reason.trim().is_empty() {
            "no reason given"
        } else {
            reason
        };
        self.hub.kick(client, reason)?;
        self.admin_done(by, "kick", Some(client), reason, via);
        Ok(1)
    }

    pub(super) fn warn(
        &self,
        by: u64,
        client: Option<u64>,
        text: &str,
        from: &str,
        via: Option<&str>,
    ) -> Result<u64> {
        let n = self.hub.warn(client, text, from)?;
        self.admin_done(by, "warn", client, text, via);
        Ok(n)
    }

    fn admin_done(
        &self,
        by: u64,
        action: &str,
        target: Option<u64>,
        detail: &str,
        via: Option<&str>,
    ) {
        let detail = match via {
            Some(v) => format!("{v}: {detail}"),
            None => detail.to_string(),
        };
        self.log(LogEvent::Admin {
            client: by,
            action: action.into(),
            target,
            ok: true,
            detail: crate::model::printable(&detail, 200),
        });
    }
}
