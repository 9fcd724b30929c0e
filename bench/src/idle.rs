//! Idle clients: many connections that log in fully (StartupMessage,
//! trust authentication, ParameterStatus, BackendKeyData, ReadyForQuery)
//! and then stay silent, to measure a proxy's memory per idle client.
//!
//! The client is a minimal blocking implementation of the login exchange
//! on top of `sqlmux_protocol`'s encoders and frame reader.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use sqlmux_protocol::postgres::{frame, message};

use crate::pgbench::Endpoint;

/// Opens one connection and logs in; returns the open socket.
pub fn login(ep: &Endpoint) -> Result<TcpStream> {
    let addr: SocketAddr = format!("{}:{}", ep.host, ep.port)
        .parse()
        .with_context(|| format!("{}:{} is not an IP address and port", ep.host, ep.port))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut out = BytesMut::with_capacity(128);
    message::startup(
        &mut out,
        &[
            ("user", &ep.user),
            ("database", &ep.db),
            ("application_name", "sqlmux-bench-idle"),
        ],
    );
    s.write_all(&out)?;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        // Handle every complete frame in the buffer.
        while let Some((h, body)) = frame::complete_frame(&buf, 1 << 20)? {
            let len = h.frame_len();
            match h.tag {
                b'R' => {
                    let code = body
                        .get(..4)
                        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                    if code != Some(0) {
                        bail!(
                            "port {} asked for a password (authentication request {code:?}); idle clients use trust only",
                            ep.port
                        );
                    }
                }
                b'E' => {
                    let text: String = String::from_utf8_lossy(body)
                        .split('\0')
                        .filter(|f| f.starts_with('M'))
                        .map(|f| f[1..].to_owned())
                        .collect();
                    bail!("login to port {} failed: {text}", ep.port);
                }
                b'Z' => {
                    s.set_read_timeout(None)?;
                    return Ok(s);
                }
                _ => {}
            }
            buf.drain(..len);
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            bail!("port {} closed the connection during login", ep.port);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Opens `n` logged-in idle connections using `threads` threads. Returns
/// the sockets (dropping them closes the connections) and the time taken.
pub fn open_many(ep: &Endpoint, n: usize, threads: usize) -> Result<(Vec<TcpStream>, Duration)> {
    let started = Instant::now();
    let threads = threads.max(1);
    let per = n.div_ceil(threads);
    let results: Vec<Result<Vec<TcpStream>>> = std::thread::scope(|scope| {
        let handles: Vec<_> =
            (0..threads)
                .map(|t| {
                    let count = per.min(n.saturating_sub(t * per));
                    scope.spawn(move || {
                        let mut v = Vec::with_capacity(count);
                        for i in 0..count {
                            if crate::procs::interrupted() {
                                bail!("interrupted");
                            }
                            v.push(login(ep).with_context(|| {
                                format!("idle client {} of {n}", t * per + i + 1)
                            })?);
                        }
                        Ok(v)
                    })
                })
                .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| bail!("idle client thread panicked"))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(n);
    for r in results {
        all.extend(r?);
    }
    Ok((all, started.elapsed()))
}
