//! The protocol-neutral half of a client session, which the PostgreSQL and
//! the MySQL front ends both drive:
//!
//! - [`admission`]: client limits and the database a login may use.
//! - [`refusal`]: every reason sqlmux refuses or ends a request, with one
//!   SQLSTATE and one MySQL code per cause; each front end renders it.
//! - [`lifecycle`]: the lease and transaction lifecycle with its insight
//!   hooks (checkout timing, counters, statement latency, N+1).
//! - [`leak`]: the leaked-transaction watch.
//! - [`reply`]: the silent-server watch (`pool.query_timeout`).
//! - [`pins`]: session state that keeps a client on its server.
//! - [`statements`]: the prepared statements a server holds (bounded LRU).
//! - [`auth_delay`]: a growing delay for repeated failed logins from one
//!   address.
//!
//! A front end owns the socket, the wire format and what only its
//! protocol knows (statement names, parameters, result shapes), and calls
//! into these at the moments they name.

pub mod admission;
pub mod auth_delay;
pub mod leak;
pub mod lifecycle;
pub mod pins;
pub mod refusal;
pub mod reply;
pub mod statements;

pub use lifecycle::Core;
pub use refusal::Refusal;
