//! PostgreSQL protocol v3: framing, startup packets, messages, auth math.
//!
//! The proxy's forwarding path only ever calls [`frame::peek_header`] on
//! most messages and looks inside the handful that decide something
//! (see `proxy/src/postgres`). The encoders in [`message`] build the frames
//! sqlmux sends on its own behalf: errors, authentication requests, startup
//! and cancel packets, the statements it injects.

pub mod auth;
pub mod frame;
pub mod message;
pub mod startup;

pub use frame::{FrameError, Header};

/// ReadyForQuery transaction status byte: idle, not in a transaction.
pub const TXN_IDLE: u8 = b'I';
/// ReadyForQuery transaction status byte: inside a transaction block.
pub const TXN_ACTIVE: u8 = b'T';
/// ReadyForQuery transaction status byte: inside a failed transaction block.
pub const TXN_FAILED: u8 = b'E';
