//! The danmaku wire protocol, version 1: the contract between the gateway, client apps
//! and backend services.
//!
//! A WebSocket text frame carries one or more JSON objects separated by `\n`. Clients
//! send commands ([`Command`], decoded by [`decode_command`]) that each carry an `id`;
//! the server answers each with `ack`, `joined`, `left`, `pong` or `error` echoing it,
//! and pushes room events. Every sequenced event of a room has an `epoch` and a `seq`
//! (1, 2, 3, … with no gap); a client that resumes with `since {epoch, seq}` gets the
//! events it missed or is told exactly where continuity restarts.
//!
//! This crate is pure: no sockets, no clock, no runtime. Broadcast frames are encoded
//! once into [`bytes::Bytes`] and shared by every receiver.
//!
//! # Layout
//! - [`ids`]: validated identifiers (room ids, event kinds, poll ids).
//! - [`limits`]: the configurable bounds (text length, like counts, rooms per connection).
//! - [`priority`]: event priorities (`high`, `normal`, `low`) and their defaults.
//! - [`audience`]: targeting inside a room (users, tags) and the targeted frame's tag.
//! - [`client`]: decoding and validating client commands.
//! - [`server`]: encoding server frames (`hello`, `joined`, `event`, …).
//! - [`received`]: decoding server frames, for clients (the load test, SDKs' tests).
//! - [`data`]: the payloads of the gateway's own event kinds (likes, polls, merged
//!   comments).
//! - [`moderation`]: mute, ban, retract.
//! - [`welcome`]: a room's welcome templates and the seen record's arithmetic.
//! - [`settings`]: a room's settings (slow mode, blocked words, experiments, …).
//! - [`error`]: protocol error codes and decode errors.
//! - [`close`]: WebSocket close codes the gateway uses.
#![warn(missing_docs)]

pub mod audience;
pub mod client;
pub mod close;
pub mod data;
pub mod error;
pub mod ids;
pub mod limits;
pub mod moderation;
pub mod priority;
pub mod received;
pub mod server;
pub mod settings;
pub mod welcome;

pub use client::{CohostAction, Command, Mode, Opening, Since, decode_command, split_frame};
pub use close::CloseCode;
pub use error::{DecodeError, ErrorCode};
pub use ids::{EventKind, IdError, InteractionId, PollId, RoomId};
pub use limits::Limits;
pub use priority::Priority;
pub use received::{FrameType, JoinedReply, ServerLine};
pub use server::{EventFrame, ServerFrame, SkipReason, Snapshot};

/// The WebSocket subprotocol of this version.
pub const SUBPROTOCOL: &str = "danmaku.v1";
