//! GraphQL over websocket (`graphql-transport-ws`, and the older `graphql-ws`). The access
//! token comes in `connection_init` (`{"Authorization": "Bearer <token>"}`); when it expires the
//! server closes the socket with code 4401, and the client reconnects with a fresh token and
//! the last cursor it saw. A tampered token is refused at init (4403).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    let input = stream
        .take_while(|message| futures::future::ready(message.is_ok()))
        .filter_map(|message| {
            futures::future::ready(match message {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => Some(message.into_data()),
                _ => None,
            })
        });
    // Unix seconds at which the connection's token expires, once `connection_init` told us.
    let (expiry_tx, mut expiry) = watch::channel::<Option<u64>>(None);
    let tokens = shared.tokens.clone();
    let mut data = Data::default();
    data.insert(ClientAddress(address));
    let output = async_graphql::http::WebSocket::new(schema, input, protocol)
        .connection_data(data)
        .on_connection_init(move |payload| async move {
            let mut data = Data::default();
            match authorization(&payload) {
                None => data.insert(Caller::Anonymous),
                Some(header) => match tokens.verify_header(&header) {
                    Ok(session) => {
                        let _ = expiry_tx.send(Some(session.expires_at));
                        data.insert(Caller::Known(session));
                    }
                    Err(TokenError::Expired) => {
                        // Accepted so the close below carries 4401: the client refreshes.
                        let _ = expiry_tx.send(Some(0));
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
    loop {
        let expires_in = expiry
            .borrow()
            .map(|at| Duration::from_secs(at.saturating_sub(unix_now())));
        let expired = async {
            match expires_in {
                Some(wait) => tokio::time::sleep(wait).await,
                None => std::future::pending().await,
            }
        };
        let close = tokio::select! {
            message = output.next() => match message {
                Some(WsMessage::Text(text)) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                    continue;
                }
                Some(WsMessage::Close(code, reason)) => Some((code, reason)),
                None => None,
            },
            changed = expiry.changed(), if init_pending => {
                init_pending = changed.is_ok();
                continue;
            }
            () = expired => Some((CLOSE_TOKEN_EXPIRED, "access token expired".to_owned())),
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
