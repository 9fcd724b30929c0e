//! Faults and load on both protocols, against servers the harness
//! controls: restarts under load, server connections ended by the
//! database, a network path that drops, delays or black-holes (through
//! the harness's fault-injecting relay), the money test with chaos, RELOAD
//! and PAUSE/RESUME under load, and a short soak.

// Proxy set-up, the pool picture from the console, guard timeouts.
mod util;
// Server connections ended by the database, busy and idle.
mod killed;
// The server restarts under 64 clients over a pool of 8.
mod restart;
// A failing network path through the relay: black hole, drop, delay.
mod network;
// The money test: transfers under client cuts and server terminations.
mod money;
// The money test on MariaDB: sqlmux KILLs clients, MariaDB KILLs servers.
mod money_mysql;
// RELOAD and PAUSE/RESUME under load on both protocols.
mod control;
// A 1,000-client soak with RELOADs (scripts/soak.sh runs the long one).
mod soak;
