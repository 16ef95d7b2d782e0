//! The dashboard's live feed: a server-sent event stream that carries the
//! `stats` document once a second and, for a logged-in admin, every chat
//! message for the admins as it arrives (messages that waited for an admin
//! come first). The stream ends when the browser goes away or the server
//! stops; an admin's stream leaves the chat with it.

use super::Conn;
use crate::model::Notice;
use crate::server::hub::Hub;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Takes the web admin out of chat when its stream is dropped.
struct Listening {
    hub: Arc<Hub>,
    id: u64,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.hub.unregister(self.id);
    }
}

struct Feed {
    hub: Arc<Hub>,
    tick: tokio::time::Interval,
    stop: watch::Receiver<bool>,
    waiting: VecDeque<Notice>,
    chat: Option<(Listening, mpsc::Receiver<Notice>)>,
}

/// The next chat notice, or never when not listening.
async fn next_notice(chat: &mut Option<(Listening, mpsc::Receiver<Notice>)>) -> Option<Notice> {
    match chat {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn chat_event(n: &Notice) -> Event {
    Event::default()
        .event("chat")
        .json_data(n)
        .unwrap_or_else(|_| Event::default().comment("unencodable notice"))
}

fn feed(f: Feed) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(f, |mut f| async move {
        if let Some(n) = f.waiting.pop_front() {
            return Some((Ok(chat_event(&n)), f));
        }
        let ev = {
            let Feed {
                hub,
                tick,
                stop,
                chat,
                ..
            } = &mut f;
            tokio::select! {
                () = super::stopped(stop) => return None,
                _ = tick.tick() => Event::default()
                    .event("stats")
                    .json_data(hub.stats())
                    .unwrap_or_else(|_| Event::default().comment("unencodable stats")),
                n = next_notice(chat) => match n {
                    Some(n) => chat_event(&n),
                    None => return None,
                },
            }
        };
        Some((Ok(ev), f))
    })
}

pub(super) async fn events(State(c): State<Conn>, headers: HeaderMap) -> Response {
    let hub = c.shared.hub.clone();
    let mut waiting = VecDeque::new();
    let chat = c.shared.web.sessions.find(&headers).map(|_| {
        let id = c.shared.next_id();
        let (_, inbox, before) = hub.watch_chat(id, "web");
        waiting.extend(before);
        (
            Listening {
                hub: hub.clone(),
                id,
            },
            inbox.notices,
        )
    });
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let f = Feed {
        hub,
        tick,
        stop: c.stop.clone(),
        waiting,
        chat,
    };
    Sse::new(feed(f))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
