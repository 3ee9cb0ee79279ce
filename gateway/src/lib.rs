//! The danmaku gateway: WebSocket viewers, the backend HTTP API, health and metrics on
//! one port, over the [`danmaku_fanout`] store.
//!
//! # Layout
//! - [`cli`]: flags, environment and TOML file → [`config::Config`].
//! - [`app`]: wiring (the router is assembled here), the accept loop, drain.
//! - [`analytics`]: retention data, counted into the store.
//! - [`state`]: the state every handler and connection task shares.
//! - [`http`]: the backend API, health, metrics.
//! - [`opening`]: keyword games, quizzes, lotteries and coupons opened from their body
//!   (the API's and a host's `open` command).
//! - [`demo`]: the demo live room at `/demo` (embedded page and SDK bundle).
//! - [`dashboard`]: the retention dashboard at `/dashboard` (embedded page).
//! - `ws`: the upgrade and the connection task (`conn`, `commands`, `outbound`).
//! - [`proxy`]: the client address behind trusted proxies (`X-Forwarded-For`, PROXY).
//! - [`auth`], [`limits`], [`likes`], [`metrics`].
//! - [`telemetry`] (logs) and [`healthcheck`] (`--healthcheck`).

pub mod analytics;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod demo;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod healthcheck;
pub mod http;
pub mod likes;
pub mod limits;
pub mod metrics;
pub mod opening;
pub mod proxy;
pub mod state;
pub mod telemetry;
mod ws;
