//! sqlmux: a connection-pooling proxy for PostgreSQL and MySQL.
pub mod client;
pub mod config;
pub mod insight;
pub mod io;
pub mod pool;
pub mod stats;
