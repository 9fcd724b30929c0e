//! The forwarding pump of a leased session: bytes flow both ways until the
//! transaction ends. Frame headers are walked; complete frames go to
//! [`super::client_messages`] and [`super::server_messages`], which decide
//! whether a frame is forwarded as it is. Each direction has a bounded
//! output buffer: when it is full, sqlmux stops reading the other side
//! (backpressure, not buffering).
//!
//! The lease is taken out of the session core for the length of one poll,
//! so the pump can hold the server and the session at once.

use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use sqlmux_protocol::postgres::frame::{self, HEADER_LEN};

use super::session::{PumpEnd, Session};
use crate::clock::Tick;
use crate::postgres::server::PgServer;
use crate::postgres::tracker::Req;
use crate::stats::Stat;

/// Output buffered for one side before sqlmux stops reading the other.
pub(crate) const HIGH_WATER: usize = 64 * 1024;

/// Which sides' reads returned Pending in the current poll.
#[derive(Default)]
struct Waiting {
    client: bool,
    server: bool,
}

impl Session {
    pub(crate) fn poll_pump(&mut self, cx: &mut Context<'_>) -> Poll<PumpEnd> {
        let mut lease = self.core.lease.take().expect("pump runs leased");
        let r = self.pump(cx, lease.server());
        self.core.lease = Some(lease);
        r
    }

    fn pump(&mut self, cx: &mut Context<'_>, srv: &mut PgServer) -> Poll<PumpEnd> {
        // A side whose read returned Pending in this poll is not read again
        // until the next one: its waker is registered, and asking tokio
        // again costs instructions for nothing.
        let mut waiting = Waiting::default();
        loop {
            let mut progress = false;
            if let Err(end) = self.flush_both(cx, srv) {
                return Poll::Ready(end);
            }
            if self.cout.len() < HIGH_WATER {
                match self.server_to_client(cx, srv, &mut waiting.server) {
                    Ok(p) => progress |= p,
                    Err(end) => return Poll::Ready(end),
                }
                if self.at_boundary(srv) {
                    return Poll::Ready(PumpEnd::Boundary);
                }
            }
            if self.sout.len() < HIGH_WATER {
                match self.client_to_server(cx, srv, &mut waiting.client) {
                    Ok(p) => progress |= p,
                    Err(end) => return Poll::Ready(end),
                }
            }
            let idle = self.idle_in_transaction(srv);
            if self.core.leak.poll_due(cx, idle).is_ready() {
                return Poll::Ready(PumpEnd::LeakIdle);
            }
            if let Some(end) = self.server_silent(cx, srv) {
                return Poll::Ready(end);
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }

    /// Writes what is buffered for either side, as far as it goes now.
    fn flush_both(&mut self, cx: &mut Context<'_>, srv: &mut PgServer) -> Result<(), PumpEnd> {
        if !self.cout.is_empty() {
            let before = self.cout.len();
            if let Poll::Ready(Err(_)) = self.client.poll_write_buf(cx, &mut self.cout) {
                return Err(PumpEnd::ClientGone);
            }
            let written = before - self.cout.len();
            self.core.counts.add(Stat::BytesSent, written as u64);
        }
        if !self.sout.is_empty()
            && let Poll::Ready(Err(e)) = srv.stream.poll_write_buf(cx, &mut self.sout)
        {
            return Err(PumpEnd::ServerGone(e.to_string()));
        }
        Ok(())
    }

    /// Server input to client output. Ok(true) on progress.
    fn server_to_client(
        &mut self,
        cx: &mut Context<'_>,
        srv: &mut PgServer,
        waiting: &mut bool,
    ) -> Result<bool, PumpEnd> {
        let mut sbuf = std::mem::take(&mut srv.buf);
        let r = self.process_server(srv, &mut sbuf);
        srv.buf = sbuf;
        let mut progress = r?;
        if *waiting
            || self.at_boundary(srv)
            || self.cout.len() >= HIGH_WATER
            || !self.server_needs_bytes(srv)
        {
            return Ok(progress);
        }
        match srv.stream.poll_read_buf(cx, &mut srv.buf) {
            Poll::Ready(Ok(0)) => Err(PumpEnd::ServerGone(
                "the server closed the connection".into(),
            )),
            Poll::Ready(Ok(_)) => {
                self.core.now = Tick::now();
                self.core.reply.heard();
                progress = true;
                Ok(progress)
            }
            Poll::Ready(Err(e)) => Err(PumpEnd::ServerGone(e.to_string())),
            Poll::Pending => {
                *waiting = true;
                Ok(progress)
            }
        }
    }

    /// Client input to server output. Ok(true) on progress.
    fn client_to_server(
        &mut self,
        cx: &mut Context<'_>,
        srv: &mut PgServer,
        waiting: &mut bool,
    ) -> Result<bool, PumpEnd> {
        let progress = self.process_client(srv)?;
        if *waiting || self.sout.len() >= HIGH_WATER || !self.client_needs_bytes() {
            return Ok(progress);
        }
        match self.client.poll_read_buf(cx, &mut self.cin) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Err(PumpEnd::ClientGone),
            Poll::Ready(Ok(n)) => {
                self.core.now = Tick::now();
                self.core.counts.add(Stat::BytesReceived, n as u64);
                Ok(true)
            }
            Poll::Pending => {
                *waiting = true;
                Ok(progress)
            }
        }
    }

    /// `pool.query_timeout`: the server owes a reply and has sent nothing
    /// for that long.
    fn server_silent(&mut self, cx: &mut Context<'_>, srv: &PgServer) -> Option<PumpEnd> {
        use crate::pool::PooledServer;
        let limit = srv.info().query_timeout();
        if limit.is_zero() {
            return None;
        }
        let owed = srv.q.owes_reply();
        self.core.reply.poll_due(cx, owed, limit).is_ready().then(|| {
            PumpEnd::ServerGone(format!(
                "no reply from the server for {} ms (pool.query_timeout); the server connection was closed",
                limit.as_millis()
            ))
        })
    }

    fn at_boundary(&self, srv: &PgServer) -> bool {
        self.ready_idle
            && srv.q.is_empty()
            && self.sout.is_empty()
            && self.client_skip == 0
            && srv.skip == 0
    }

    fn idle_in_transaction(&self, srv: &PgServer) -> bool {
        srv.txn_status != b'I' && srv.q.is_empty() && self.sout.is_empty() && !srv.q.copy_in
    }

    fn server_needs_bytes(&self, srv: &PgServer) -> bool {
        if srv.skip > 0 {
            return true;
        }
        match frame::peek_header(&srv.buf, self.max_msg) {
            Ok(Some(h)) => srv.buf.len() < h.frame_len(),
            Ok(None) => true,
            Err(_) => false,
        }
    }

    fn client_needs_bytes(&self) -> bool {
        if self.client_skip > 0 {
            return true;
        }
        match frame::peek_header(&self.cin, self.max_msg) {
            Ok(Some(h)) => self.cin.len() < h.frame_len(),
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// Moves complete client frames into `sout`. Ok(true) if anything moved.
    fn process_client(&mut self, srv: &mut PgServer) -> Result<bool, PumpEnd> {
        let mut moved = false;
        while self.sout.len() < HIGH_WATER {
            if self.client_skip > 0 {
                if self.cin.is_empty() {
                    break;
                }
                let n = self.client_skip.min(self.cin.len());
                self.sout.extend_from_slice(&self.cin[..n]);
                self.cin.advance(n);
                self.client_skip -= n;
                moved = true;
                continue;
            }
            let h = match frame::peek_header(&self.cin, self.max_msg) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => return Err(super::client_messages::bad_client(&e.to_string())),
            };
            let len = h.frame_len();
            if self.cin.len() < len {
                if h.tag == b'd' {
                    // Stream large CopyData through.
                    let n = self.cin.len();
                    self.sout.extend_from_slice(&self.cin[..n]);
                    self.cin.advance(n);
                    self.client_skip = len - n;
                    moved = true;
                    continue;
                }
                if self.cin.capacity() < len {
                    self.cin.reserve(len - self.cin.len());
                }
                break;
            }
            moved = true;
            let insight = &self.core.shared.insight;
            self.core.leak.activity(insight);
            let cin = std::mem::take(&mut self.cin);
            let r = self.on_client_message(srv, h.tag, &cin[..len]);
            self.cin = cin;
            if r? {
                self.sout.extend_from_slice(&self.cin[..len]);
                self.send_restore(srv);
            }
            self.cin.advance(len);
            if h.tag == b'X' {
                return Err(PumpEnd::ClientTerminate);
            }
        }
        Ok(moved)
    }

    /// Moves complete server frames from `sbuf` into `cout`. Ok(true) if
    /// anything was consumed.
    fn process_server(&mut self, srv: &mut PgServer, sbuf: &mut BytesMut) -> Result<bool, PumpEnd> {
        let mut moved = false;
        // Frames forwarded unchanged are copied in runs: `run` is where the
        // current run starts, `pos` where the next frame starts.
        let mut run = 0;
        let mut pos = 0;
        while self.cout.len() + (pos - run) < HIGH_WATER {
            let rest = &sbuf[pos..];
            if srv.skip > 0 {
                if rest.is_empty() {
                    break;
                }
                let n = srv.skip.min(rest.len());
                pos += n;
                srv.skip -= n;
                moved = true;
                continue;
            }
            let h = match frame::peek_header(rest, self.max_msg) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    srv.dirty = true;
                    return Err(super::client_messages::bad_server(&e.to_string()));
                }
            };
            let len = h.frame_len();
            if rest.len() < len {
                if matches!(h.tag, b'D' | b'd') && !swallowing(srv) {
                    // Stream large rows and copy data through.
                    let n = rest.len();
                    pos += n;
                    srv.skip = len - n;
                    moved = true;
                    continue;
                }
                if sbuf.capacity() - run < len {
                    sbuf.reserve(len);
                }
                break;
            }
            moved = true;
            if h.tag == b'A' {
                self.own_notification_pid(srv, &mut sbuf[pos + HEADER_LEN..pos + len]);
            }
            let forward = self.on_server_message(srv, h.tag, &sbuf[pos + HEADER_LEN..pos + len])?;
            if !forward {
                self.cout.extend_from_slice(&sbuf[run..pos]);
                run = pos + len;
            }
            pos += len;
            if matches!(srv.q.front(), Some(Req::Local(_))) {
                self.cout.extend_from_slice(&sbuf[run..pos]);
                run = pos;
                self.drain_local(srv);
            }
        }
        self.cout.extend_from_slice(&sbuf[run..pos]);
        sbuf.advance(pos);
        Ok(moved)
    }

    /// A NotificationResponse sent by the client's own session (NOTIFY on
    /// the server it is lent) names the server's process id; the client
    /// knows its session by the id sqlmux gave it in BackendKeyData, as on
    /// a direct connection. Rewritten in place.
    fn own_notification_pid(&self, srv: &PgServer, body: &mut [u8]) {
        let Some(pid) = body.get(..4) else {
            return;
        };
        if i32::from_be_bytes([pid[0], pid[1], pid[2], pid[3]]) == srv.cancel_pid {
            body[..4].copy_from_slice(&self.core.info.cancel_key.0.to_be_bytes());
        }
    }
}

/// True while the responses at the front are to a query sqlmux injected.
pub(crate) fn swallowing(srv: &PgServer) -> bool {
    matches!(srv.q.front(), Some(Req::Injected(_)))
}
