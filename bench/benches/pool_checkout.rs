//! Pool checkout + return (group `pool`).
//!
//! `sqlmux::pool::Pool` with an in-memory server type (no sockets): the
//! cost of the bookkeeping a session pays twice per transaction, lending
//! and returning a server.
//!
//! - `uncontended`: one task, a pool of 2 with an idle server.
//! - `two_threads_size_2`: two OS threads, each with its own current-thread
//!   runtime, checking out and returning in a loop on one pool of 2: the
//!   pool lock is contended but nobody waits for a server. Time is per
//!   checkout+return per thread (both threads run at once).
//! - `two_threads_size_1`: the same on a pool of 1, so every other checkout
//!   queues and is woken by the other thread's return (the hand-off path).
//!
//! Run: `cargo bench -p sqlmux-bench --bench pool_checkout`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sqlmux::config::Config;
use sqlmux::pool::{
    ConnectFuture, Connector, Pool, PoolKey, PooledServer, ResetFuture, ServerInfo,
};

/// A server that is only its shared info.
struct MemServer {
    info: Arc<ServerInfo>,
}

impl PooledServer for MemServer {
    fn info(&self) -> &Arc<ServerInfo> {
        &self.info
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

/// Opens `MemServer`s instantly.
struct MemConnector;

impl Connector<MemServer> for MemConnector {
    fn connect(&self, info: Arc<ServerInfo>) -> ConnectFuture<MemServer> {
        Box::pin(async move { Ok(MemServer { info }) })
    }
}

fn pool(size: usize) -> Arc<Pool<MemServer>> {
    // From the config parser, so new PoolConfig fields get their defaults.
    let cfg = Config::parse(&format!(
        "[pool]\nsize = {size}\ncheckout_timeout = \"30s\"\n\n\
         [[databases]]\nname = \"bench\"\nhost = \"127.0.0.1\"\n"
    ))
    .expect("bench pool config");
    Pool::new(
        PoolKey {
            database: Arc::from("bench"),
            user: Arc::from("bench"),
        },
        cfg.databases[0].pool.clone(),
        Box::new(MemConnector),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

async fn cycle(pool: &Arc<Pool<MemServer>>, client: u64) {
    let lease = pool
        .checkout(client, sqlmux::clock::Tick::now())
        .await
        .expect("checkout");
    black_box(lease.server_ref().info.id);
    drop(lease);
}

/// Runs `iters` cycles on each of two threads at once; returns wall time.
fn two_threads(pool: &Arc<Pool<MemServer>>, iters: u64) -> Duration {
    let barrier = Arc::new(std::sync::Barrier::new(3));
    let handles: Vec<_> = (0..2u64)
        .map(|t| {
            let pool = pool.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let rt = runtime();
                barrier.wait();
                rt.block_on(async {
                    for _ in 0..iters {
                        cycle(&pool, t + 1).await;
                    }
                });
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().expect("bench thread");
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("pool");
    let rt = runtime();

    let p = pool(2);
    rt.block_on(cycle(&p, 1)); // opens the first server
    group.bench_function("uncontended", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    cycle(&p, 1).await;
                }
                start.elapsed()
            })
        })
    });

    let p2 = pool(2);
    two_threads(&p2, 10); // opens both servers
    group.bench_function("two_threads_size_2", |b| {
        b.iter_custom(|iters| two_threads(&p2, iters))
    });

    let p1 = pool(1);
    two_threads(&p1, 10);
    group.bench_function("two_threads_size_1", |b| {
        b.iter_custom(|iters| two_threads(&p1, iters))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
