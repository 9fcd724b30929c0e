//! sqlmux integration tests: the real proxy, started in-process on free
//! ports, against real PostgreSQL (and MariaDB) servers that the harness
//! starts in temporary directories, driven by real clients.

mod common;
// A raw protocol client for exact message sequences.
mod raw;
// The harness itself: servers start, restart and never outlive the tests.
mod harness_selftest;
// Transaction pooling under load: pgbench, pool limits, checkout timeout.
mod pooling;
// Protocol coverage: extended protocol, pipelines, COPY, errors, notices.
mod protocol;
// Client authentication and server logins.
mod auth;
// Session parameters that follow the client between servers.
mod session_state;
// Cancel, disconnects mid-transaction, shutdown, bad input.
mod lifecycle;
// Drop-in for drivers: prepared statements, TLS, auth_query, session pinning.
mod dropin;
// Insight through the admin console: latency, N+1 bursts, leaks.
mod insight;
// The admin port: psql console, control commands, /metrics and probes.
mod admin;
// sqlmux's picture of each server stays what the server holds.
mod drift;
// Replicas that act as one: cancels and MySQL KILLs forwarded between peers.
mod deploy;
// The MySQL front end against MariaDB: drivers, state, KILL QUERY, TLS, insight.
mod mysql;
// MySQL server-side prepared statements: ids per client, across servers.
mod mysql_prepared;
// MySQL drivers' prepared statements and sysbench through small pools.
mod mysql_drivers;
// The web page and JSON API: basic auth, answers, headless Chromium.
mod web;
// Bad input on both listeners: malformed, oversized and cut packets, TLS
// garbage, silent clients; a healthy client alongside sees nothing.
mod badinput;
mod badinput_mysql;
// A growing delay for repeated failed logins from one address.
mod login_delay;
// No password in trace logs, TLS 1.2 at least, read-only admin HTTP, no
// login without a password unless trust is configured.
mod security;
// `sqlmux init --from URL`: the written configuration serves the printed URL.
mod init;
// Unix-domain sockets towards clients and towards both servers.
mod unix;
// Faults and load: restarts, killed servers, a failing network path, money.
mod faults;
