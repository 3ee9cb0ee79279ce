//! WebSocket close codes the gateway sends.

/// A close code with its reason text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// 1000: normal closure.
    Normal,
    /// 1007: a text frame was not valid UTF-8.
    InvalidPayload,
    /// 1009: a client frame exceeded the size limit.
    TooBig,
    /// 1011: the server hit an unexpected condition.
    InternalError,
    /// 1012: the server is restarting or draining; reconnect (to any gateway) and resume.
    ServiceRestart,
    /// 4000: the client sent nothing (not even a pong) for too long.
    IdleTimeout,
    /// 4008: the client read too slowly; resume with `since`.
    SlowConsumer,
}

impl CloseCode {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::InvalidPayload => 1007,
            Self::TooBig => 1009,
            Self::InternalError => 1011,
            Self::ServiceRestart => 1012,
            Self::IdleTimeout => 4000,
            Self::SlowConsumer => 4008,
        }
    }

    /// The reason text sent with the code.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Normal => "bye",
            Self::InvalidPayload => "invalid utf-8",
            Self::TooBig => "frame too large",
            Self::InternalError => "internal error",
            Self::ServiceRestart => "draining",
            Self::IdleTimeout => "idle timeout",
            Self::SlowConsumer => "slow consumer",
        }
    }
}
