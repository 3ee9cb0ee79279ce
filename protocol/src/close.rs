//! WebSocket close codes the gateway sends.
//!
//! Codes 4000–4499 mean "reconnect and resume" (the client did nothing wrong that a
//! new connection would not fix); 4500–4999 mean "stop and report": reconnecting with
//! the same credentials would be refused again.

/// A close code with its reason text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// 1000: normal closure.
    Normal,
    /// 1002: the client broke the WebSocket framing (an unmasked frame, reserved bits,
    /// an unknown opcode, a fragmented or oversized control frame, a stray continuation).
    ProtocolError,
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
    /// 4001: the viewer token expired; reconnect with a fresh one and resume.
    TokenExpired,
    /// 4008: the client read too slowly; resume with `since`.
    SlowConsumer,
    /// 4501: the token was refused (sent only to upgrades that asked for
    /// `refusal=close`; the reason says why). Terminal: get another token.
    Unauthorized,
}

impl CloseCode {
    /// Every close code, in the order declared.
    pub const ALL: [Self; 10] = [
        Self::Normal,
        Self::ProtocolError,
        Self::InvalidPayload,
        Self::TooBig,
        Self::InternalError,
        Self::ServiceRestart,
        Self::IdleTimeout,
        Self::TokenExpired,
        Self::SlowConsumer,
        Self::Unauthorized,
    ];

    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::ProtocolError => 1002,
            Self::InvalidPayload => 1007,
            Self::TooBig => 1009,
            Self::InternalError => 1011,
            Self::ServiceRestart => 1012,
            Self::IdleTimeout => 4000,
            Self::TokenExpired => 4001,
            Self::SlowConsumer => 4008,
            Self::Unauthorized => 4501,
        }
    }

    /// Whether a client should reconnect (and resume) after this code.
    pub fn reconnect(self) -> bool {
        !(4500..5000).contains(&self.code())
    }

    /// The reason text sent with the code.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Normal => "bye",
            Self::ProtocolError => "protocol error",
            Self::InvalidPayload => "invalid utf-8",
            Self::TooBig => "frame too large",
            Self::InternalError => "internal error",
            Self::ServiceRestart => "draining",
            Self::IdleTimeout => "idle timeout",
            Self::TokenExpired => "token expired",
            Self::SlowConsumer => "slow consumer",
            Self::Unauthorized => "unauthorized",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_says_whether_to_reconnect() {
        let all = CloseCode::ALL;
        let terminal: Vec<u16> = all
            .iter()
            .filter(|c| !c.reconnect())
            .map(|c| c.code())
            .collect();
        assert_eq!(terminal, vec![4501]);
        assert!(all.iter().all(|c| c.reason().len() <= 123));
    }
}
