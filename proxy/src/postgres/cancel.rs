//! Cancel keys and CancelRequests: every client gets its own key in
//! BackendKeyData; a CancelRequest with that key is forwarded to the server
//! running the client's query (and to peer replicas when the key belongs
//! to none of this replica's clients).

use std::sync::atomic::Ordering;

use ring::rand::{SecureRandom, SystemRandom};

use super::server;
use crate::Shared;

/// A random cancel key not used by another client.
pub(super) fn new_cancel_key(shared: &Shared) -> (i32, i32) {
    loop {
        let b = random_8();
        let pid = i32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]);
        let secret = i32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        if pid != 0 && !shared.clients.key_in_use((pid, secret)) {
            return (pid, secret);
        }
    }
}

/// Eight bytes from the operating system's CSPRNG, drawn 512 at a time per
/// thread so a login does not cost a getrandom call.
pub(crate) fn random_8() -> [u8; 8] {
    thread_local! {
        static POOL: std::cell::RefCell<([u8; 512], usize)> = const { std::cell::RefCell::new(([0; 512], 512)) };
    }
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.1 + 8 > p.0.len() {
            if SystemRandom::new().fill(&mut p.0).is_err() {
                // No OS randomness: fall back to unique, unpredictable-enough ids.
                let seed = crate::pool::next_id().wrapping_mul(0x9e37_79b9_7f4a_7c15);
                for (i, chunk) in p.0.chunks_mut(8).enumerate() {
                    chunk.copy_from_slice(&seed.rotate_left(i as u32 * 7).to_be_bytes());
                }
            }
            p.1 = 0;
        }
        let at = p.1;
        p.1 += 8;
        let mut out = [0u8; 8];
        out.copy_from_slice(&p.0[at..at + 8]);
        out
    })
}

/// Forwards a CancelRequest to the server currently running that client's
/// query, and to nothing else. A key that is not this replica's goes to the
/// peers (`[peers]`), which act on it only locally.
pub(super) async fn forward_cancel(shared: &Shared, pid: i32, secret: &[u8]) {
    // Every sqlmux key is 4 bytes: a longer one is no replica's.
    if secret.len() == 4 && !cancel_local(shared, pid, secret).await {
        let req = crate::peers::PeerRequest::PgCancel {
            pid,
            secret: secret.to_vec(),
        };
        crate::peers::broadcast(shared, &req).await;
    }
}

/// Cancels the query of this replica's client with the key, if it runs
/// one. Returns false when the key belongs to no client here (the request
/// is dropped quietly, as PostgreSQL does).
pub(crate) async fn cancel_local(shared: &Shared, pid: i32, secret: &[u8]) -> bool {
    if secret.len() != 4 {
        return false;
    }
    let key = (
        pid,
        i32::from_be_bytes([secret[0], secret[1], secret[2], secret[3]]),
    );
    let Some(client) = shared.clients.by_cancel_key(key) else {
        tracing::debug!("cancel request: no client here has this key");
        return false;
    };
    let server_id = client.link();
    if server_id == 0 {
        return true;
    }
    for entry in shared.pools.all() {
        for s in entry.servers() {
            if s.id == server_id && s.link() == client.id {
                let pid = s.remote_pid.load(Ordering::Relaxed) as i32;
                let secret = s
                    .cancel_token
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                tracing::debug!(client.addr = %client.addr, server.pid = pid, "forwarding cancel request");
                if let Err(e) = server::send_cancel(&s, pid, &secret).await {
                    tracing::warn!(error = %e, "cancel request to the server failed");
                }
                return true;
            }
        }
    }
    true
}
