//! GraphQL over websocket (`graphql-transport-ws`, and the older `graphql-ws`). The access
//! token comes in `connection_init` (`{"Authorization": "Bearer <token>"}`); when it expires the
//! server closes the socket with code 4401, and the client reconnects with a fresh token and
//! the last cursor it saw. A tampered token is refused at init (4403).
//!
//! Limits: a message is at most `WS_MAX_MESSAGE_BYTES` (a larger one closes the socket with
//! 1009), a socket carries at most `WS_MAX_OPERATIONS` operations at once (one more closes it
//! with 4429), an account holds at most `WS_MAX_SOCKETS_PER_USER` sockets per process (one more
//! is refused at init), and a socket whose user an admin disabled is closed with 4403 within
//! about a second.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_graphql::{
    Data,
    http::{WebSocketProtocols, WsMessage},
};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    auth::TokenError,
    graphql::{AppSchema, Caller, ClientAddress},
    state::SharedState,
};

/// Close code for an expired access token (the client refreshes and reconnects).
pub const CLOSE_TOKEN_EXPIRED: u16 = 4401;
/// Close code for a user an admin disabled (the client signs out).
pub const CLOSE_FORBIDDEN: u16 = 4403;
/// Close code for a message over `WS_MAX_MESSAGE_BYTES` (RFC 6455's "message too big").
pub const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;
/// Close code for a socket that opened more operations than `WS_MAX_OPERATIONS`.
pub const CLOSE_TOO_MANY_OPERATIONS: u16 = 4429;

/// Open sockets per user in this process.
#[derive(Debug, Default)]
pub struct SocketCounts {
    open: Arc<Mutex<HashMap<i64, usize>>>,
}

/// One socket's place in [`SocketCounts`]; given back when dropped.
#[derive(Debug)]
pub struct SocketSlot {
    open: Arc<Mutex<HashMap<i64, usize>>>,
    user_id: i64,
}

impl SocketCounts {
    pub fn try_acquire(&self, user_id: i64, max: usize) -> Option<SocketSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(user_id).or_insert(0);
        if *count >= max.max(1) {
            return None;
        }
        *count += 1;
        Some(SocketSlot {
            open: self.open.clone(),
            user_id,
        })
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.user_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.user_id);
            }
        }
    }
}

/// The operation ids a socket has open: started by the client (`subscribe`, or `start` in the
/// older protocol), ended by either side (`complete`, `stop`).
#[derive(Debug, Default)]
struct Operations {
    open: HashSet<String>,
    over_limit: bool,
}

/// `(type, id)` of a protocol message, when it is one that opens or ends an operation.
fn operation_message(raw: &[u8]) -> Option<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        #[serde(rename = "type")]
        kind: String,
        id: Option<String>,
    }
    let envelope: Envelope = serde_json::from_slice(raw).ok()?;
    match envelope.kind.as_str() {
        "subscribe" | "start" | "complete" | "stop" => Some((envelope.kind, envelope.id?)),
        _ => None,
    }
}

fn authorization(payload: &serde_json::Value) -> Option<String> {
    let object = payload.as_object()?;
    object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, v)| v.as_str().map(str::to_owned))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub async fn serve(
    socket: WebSocket,
    schema: AppSchema,
    shared: SharedState,
    protocol: WebSocketProtocols,
    address: String,
    stop: CancellationToken,
) {
    let (mut sink, stream) = socket.split();
    let operations = Arc::new(Mutex::new(Operations::default()));
    let max_operations = shared.config.ws_max_operations.max(1);
    let counted = operations.clone();
    // A message over WS_MAX_MESSAGE_BYTES ends the input with an error; the close says why.
    let too_big = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let saw_too_big = too_big.clone();
    let input = stream
        .take_while(move |message| {
            if let Err(e) = message
                && e.to_string().contains("Message too long")
            {
                saw_too_big.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            futures::future::ready(message.is_ok())
        })
        .filter_map(|message| {
            futures::future::ready(match message {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => Some(message.into_data()),
                _ => None,
            })
        })
        // Past the limit nothing more reaches the schema; the loop below closes the socket.
        .take_while(move |raw| {
            let mut ops = counted.lock().unwrap_or_else(|e| e.into_inner());
            match operation_message(raw) {
                Some((kind, id)) if kind == "subscribe" || kind == "start" => {
                    ops.open.insert(id);
                    if ops.open.len() > max_operations {
                        ops.over_limit = true;
                    }
                }
                Some((_, id)) => {
                    ops.open.remove(&id);
                }
                None => {}
            }
            futures::future::ready(!ops.over_limit)
        });
    // Unix seconds at which the connection's token expires, and whose it is, once
    // `connection_init` told us.
    let (expiry_tx, mut expiry) = watch::channel::<Option<(u64, i64)>>(None);
    let tokens = shared.tokens.clone();
    let init_shared = shared.clone();
    let slot: Arc<Mutex<Option<SocketSlot>>> = Arc::default();
    let init_slot = slot.clone();
    let mut data = Data::default();
    data.insert(ClientAddress(address));
    let output = async_graphql::http::WebSocket::new(schema, input, protocol)
        .connection_data(data)
        .on_connection_init(move |payload| async move {
            let mut data = Data::default();
            match authorization(&payload) {
                None => data.insert(Caller::Anonymous),
                Some(header) => match tokens.verify_header(&header) {
                    Ok(session) if init_shared.revocations.is_disabled(session.user_id) => {
                        return Err(async_graphql::Error::new("this account is disabled"));
                    }
                    Ok(session) => {
                        let max = init_shared.config.ws_max_sockets_per_user;
                        let Some(taken) = init_shared.sockets.try_acquire(session.user_id, max)
                        else {
                            return Err(async_graphql::Error::new(format!(
                                "this account already holds {max} open sockets"
                            )));
                        };
                        *init_slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(taken);
                        let _ = expiry_tx.send(Some((session.expires_at, session.user_id)));
                        data.insert(Caller::Known(session));
                    }
                    Err(TokenError::Expired) => {
                        // Accepted so the close below carries 4401: the client refreshes.
                        let _ = expiry_tx.send(Some((0, 0)));
                        data.insert(Caller::Refused(TokenError::Expired.into()));
                    }
                    Err(TokenError::Invalid) => {
                        return Err(async_graphql::Error::new("the access token is not valid"));
                    }
                },
            }
            Ok(data)
        })
        .keepalive_timeout(Duration::from_secs(60));
    futures::pin_mut!(output);
    // The sender goes away once `connection_init` ran; its last value stays readable.
    let mut init_pending = true;
    let mut recheck = tokio::time::interval(crate::revocation::RELOAD_EVERY);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (expires_in, user_id) = match *expiry.borrow() {
            Some((at, user)) => (
                Some(Duration::from_secs(at.saturating_sub(unix_now()))),
                Some(user),
            ),
            None => (None, None),
        };
        let expired = async {
            match expires_in {
                Some(wait) => tokio::time::sleep(wait).await,
                None => std::future::pending().await,
            }
        };
        let close = tokio::select! {
            message = output.next() => match message {
                Some(WsMessage::Text(text)) => {
                    // The server ending an operation frees its place.
                    if text.contains("\"complete\"")
                        && let Some((kind, id)) = operation_message(text.as_bytes())
                        && kind == "complete"
                    {
                        operations.lock().unwrap_or_else(|e| e.into_inner()).open.remove(&id);
                    }
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                    continue;
                }
                None if too_big.load(std::sync::atomic::Ordering::Relaxed) => Some((
                    CLOSE_MESSAGE_TOO_BIG,
                    format!("messages are at most {} bytes", shared.config.ws_max_message_bytes),
                )),
                None if operations.lock().unwrap_or_else(|e| e.into_inner()).over_limit => Some((
                    CLOSE_TOO_MANY_OPERATIONS,
                    format!("at most {max_operations} operations at once on one socket"),
                )),
                Some(WsMessage::Close(code, reason)) => Some((code, reason)),
                None => None,
            },
            changed = expiry.changed(), if init_pending => {
                init_pending = changed.is_ok();
                continue;
            }
            () = expired => Some((CLOSE_TOKEN_EXPIRED, "access token expired".to_owned())),
            _ = recheck.tick() => {
                if user_id.is_some_and(|user| shared.revocations.is_disabled(user)) {
                    Some((CLOSE_FORBIDDEN, "this account is disabled".to_owned()))
                } else {
                    continue;
                }
            }
            () = stop.cancelled() => Some((1001, "server shutting down".to_owned())),
        };
        if let Some((code, reason)) = close {
            let _ = sink
                .send(Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                })))
                .await;
        }
        let _ = sink.close().await;
        return;
    }
}
