//! Free TCP ports for test servers.
//!
//! The kernel picks a port nobody is listening on; the harness releases it
//! and hands it to a server. Another process may grab it in between, so the
//! server start-up code retries with a new port when the bind fails. Within
//! one process a port is never handed out twice, so two tests starting
//! servers at the same moment cannot be given the same port.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, PoisonError};

/// Every port [`free_port`] has returned in this process.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Returns a TCP port on 127.0.0.1 that was free a moment ago and that no
/// earlier call in this process returned.
///
/// # Concurrency
///
/// Safe to call from many threads. Across processes it relies on the kernel
/// not reusing a just-released port at once; callers that bind the port
/// later must cope with `EADDRINUSE` (the server start-up code does).
///
/// # Panics
///
/// When no port can be bound on 127.0.0.1.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0 to find a free port: {e}"));
        let port = listener
            .local_addr()
            .expect("local_addr of a bound socket")
            .port();
        drop(listener);
        let mut guard = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("no free port found after 1000 tries");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_not_repeated_within_a_process() {
        let ports: HashSet<u16> = (0..50).map(|_| free_port()).collect();
        assert_eq!(ports.len(), 50);
        assert!(ports.iter().all(|&p| p != 0));
    }
}
