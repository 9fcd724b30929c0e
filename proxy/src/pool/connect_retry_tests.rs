//! Checkout while the server cannot be reached: a connect that fails the
//! way a restarting server fails is tried again until `checkout_timeout`;
//! any other failure reaches the client at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::clock::Tick;
use crate::config::Config;

/// A server with nothing to say.
struct Fake(Arc<ServerInfo>);

impl PooledServer for Fake {
    fn info(&self) -> &Arc<ServerInfo> {
        &self.0
    }
    fn is_usable(&mut self) -> bool {
        true
    }
    fn is_clean(&self) -> bool {
        true
    }
    fn needs_reset(&self) -> bool {
        false
    }
    fn reset(&mut self) -> ResetFuture<'_> {
        Box::pin(async { true })
    }
}

/// Fails with the queued SQLSTATEs, then connects.
struct Script {
    fails: Mutex<Vec<&'static str>>,
    attempts: Arc<AtomicUsize>,
}

impl Connector<Fake> for Script {
    fn connect(&self, info: Arc<ServerInfo>) -> ConnectFuture<Fake> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let fail = self.fails.lock().unwrap().pop();
        Box::pin(async move {
            match fail {
                Some(sqlstate) => Err(ConnectError {
                    sqlstate,
                    message: format!("failed with {sqlstate}"),
                }),
                None => Ok(Fake(info)),
            }
        })
    }
}

fn pool(fails: Vec<&'static str>, checkout: &str) -> (Arc<Pool<Fake>>, Arc<AtomicUsize>) {
    let text = format!(
        "[pool]\nsize = 1\ncheckout_timeout = \"{checkout}\"\n[[databases]]\nname = \"d\"\nhost = \"127.0.0.1\"\n"
    );
    let cfg = Config::parse(&text).unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let key = PoolKey {
        database: "d".into(),
        user: "u".into(),
    };
    let connector = Script {
        fails: Mutex::new(fails),
        attempts: attempts.clone(),
    };
    let pool = Pool::new(key, cfg.databases[0].pool.clone(), Box::new(connector));
    (pool, attempts)
}

#[tokio::test]
async fn a_restarting_server_is_tried_again_until_it_accepts() {
    // Refused, "shutting down", "starting up", then up.
    let (pool, attempts) = pool(vec!["57P03", "57P03", "08006"], "30s");
    let lease = pool.checkout(1, Tick::now()).await;
    assert!(lease.is_ok(), "{:?}", lease.err());
    assert_eq!(attempts.load(Ordering::Relaxed), 4);
}

#[tokio::test]
async fn other_failures_reach_the_client_at_once() {
    let (pool, attempts) = pool(vec!["28P01"], "30s");
    let e = pool.checkout(1, Tick::now()).await.err().expect("refused");
    assert!(e.to_string().contains("28P01"), "{e}");
    assert_eq!(attempts.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn retries_stop_at_the_checkout_deadline() {
    let (pool, attempts) = pool(vec!["08006"; 1000], "500ms");
    let started = Tick::now();
    let e = pool.checkout(1, started).await.err().expect("refused");
    assert!(e.to_string().contains("08006"), "{e}");
    let n = attempts.load(Ordering::Relaxed);
    assert!((2..1000).contains(&n), "{n} attempts");
    // A guard against a retry loop that never ends, not a speed check.
    assert!(started.elapsed() < Duration::from_secs(60));
}
