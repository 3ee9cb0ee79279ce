//! The diagnostic echo (`--diagnostic-echo`, off by default): `/diagnostic/echo` is
//! upgraded by the same handshake, fast path and admission checks as `/ws`, runs on
//! the same WebSocket stack (tungstenite over the connection's outlet, with the same
//! frame and message limits and write timeout), and sends every text and binary message
//! back. It exists for WebSocket conformance suites (Autobahn's cases); it joins no
//! room and touches no store.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::conn::{Exit, classify_read_error, close_with};
use super::io::{ConnIo, Outlet};

/// Echoes until the client closes, breaks the protocol, or stops reading for longer
/// than `write_timeout`.
pub(super) async fn run(
    stream: TcpStream,
    read_ahead: Vec<u8>,
    preface: Option<Bytes>,
    config: WebSocketConfig,
    write_timeout: Duration,
) {
    let outlet = Arc::new(Outlet::new(
        Arc::new(stream),
        Duration::ZERO,
        Arc::default(),
    ));
    if let Some(bytes) = preface {
        outlet.preface(bytes);
    }
    let io = ConnIo {
        outlet: outlet.clone(),
    };
    let mut ws =
        WebSocketStream::from_partially_read(io, read_ahead, Role::Server, Some(config)).await;
    // The 101 of the fast path waits in the outlet for the first write: send it now.
    if tokio::time::timeout(write_timeout, ws.flush())
        .await
        .is_err()
    {
        return;
    }
    while let Some(message) = ws.next().await {
        let reply = match message {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => m,
            // Pongs to pings and the answer to a close are queued by tungstenite.
            Ok(_) => {
                if tokio::time::timeout(write_timeout, ws.flush())
                    .await
                    .is_err()
                {
                    break;
                }
                continue;
            }
            Err(e) => {
                if let Exit::Close(code) = classify_read_error(e) {
                    let reason =
                        tokio_tungstenite::tungstenite::Utf8Bytes::from_static(code.reason());
                    close_with(&mut ws, code.code(), reason).await;
                }
                break;
            }
        };
        match tokio::time::timeout(write_timeout, ws.send(reply)).await {
            Ok(Ok(())) => {}
            _ => break,
        }
    }
    outlet.seal();
}
