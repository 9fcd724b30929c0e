//! Byte streams and buffer helpers shared by both protocol front ends.
//!
//! [`Stream`] is a TCP connection that may have been upgraded to TLS, on
//! either side (sqlmux as TLS server towards clients, as TLS client towards
//! servers), or a Unix-domain socket (never upgraded: like libpq and
//! PostgreSQL, sqlmux does not use TLS over a Unix socket). It is an enum,
//! not a trait object, so the forwarding path pays one `match` per call.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// Bytes requested from the kernel per read.
pub const READ_CHUNK: usize = 16 * 1024;

/// A plain or TLS byte stream.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// A Unix-domain socket.
    Unix(UnixStream),
    /// TLS where sqlmux is the TLS server (client connections).
    TlsServer(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// TLS where sqlmux is the TLS client (server connections).
    TlsClient(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// [`Stream::idle_check`] for either kind of socket: `read` runs only when
/// the socket is readable.
#[inline]
fn idle_read(ready: Poll<io::Result<()>>, read: impl FnOnce() -> io::Result<usize>) -> IdleRead {
    match ready {
        Poll::Pending => IdleRead::Quiet,
        Poll::Ready(Err(_)) => IdleRead::Closed,
        Poll::Ready(Ok(())) => match read() {
            Ok(0) => IdleRead::Closed,
            Ok(n) => IdleRead::Data(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => IdleRead::Quiet,
            Err(_) => IdleRead::Closed,
        },
    }
}

/// The socket under a [`Stream`], TLS or not.
enum Raw<'a> {
    Tcp(&'a TcpStream),
    Unix(&'a UnixStream),
}

/// See [`Stream::idle_check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleRead {
    /// Nothing arrived.
    Quiet,
    /// Bytes arrived (read from the raw socket: encrypted under TLS).
    Data(usize),
    /// The peer closed the connection or it failed.
    Closed,
}

impl Stream {
    /// The TCP socket underneath (None for a Unix socket).
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Unix(_) => None,
            Stream::TlsServer(s) => Some(s.get_ref().0),
            Stream::TlsClient(s) => Some(s.get_ref().0),
        }
    }

    /// True for a Unix-domain socket.
    pub fn is_unix(&self) -> bool {
        matches!(self, Stream::Unix(_))
    }

    /// Ready when the socket underneath is readable (under TLS: raw
    /// bytes, which may not make a whole record). Only the task that reads
    /// the stream may poll it (the socket keeps one read waker).
    #[inline]
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.raw() {
            Raw::Tcp(s) => s.poll_read_ready(cx),
            Raw::Unix(s) => s.poll_read_ready(cx),
        }
    }

    fn raw(&self) -> Raw<'_> {
        match self {
            Stream::Plain(s) => Raw::Tcp(s),
            Stream::Unix(s) => Raw::Unix(s),
            Stream::TlsServer(s) => Raw::Tcp(s.get_ref().0),
            Stream::TlsClient(s) => Raw::Tcp(s.get_ref().0),
        }
    }

    /// Writes `bytes` if the socket takes them now, without TLS (best
    /// effort goodbyes at drop); does nothing under TLS.
    pub fn try_write_plain(&self, bytes: &[u8]) {
        let _ = match self {
            Stream::Plain(s) => s.try_write(bytes),
            Stream::Unix(s) => s.try_write(bytes),
            _ => return,
        };
    }

    /// What an idle pooled server connection has done since it was last
    /// used, found without blocking (and without a syscall while the socket
    /// is not readable): `Data(n)` appended `n` bytes to `buf`.
    pub fn idle_check(&self, buf: &mut BytesMut) -> IdleRead {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match self.raw() {
            Raw::Tcp(s) => idle_read(s.poll_read_ready(&mut cx), || s.try_read_buf(buf)),
            Raw::Unix(s) => idle_read(s.poll_read_ready(&mut cx), || s.try_read_buf(buf)),
        }
    }

    /// Ends a TLS session with close_notify (bounded by a second), so the
    /// peer sees an orderly close after the last message, as PostgreSQL's
    /// SSL_shutdown gives it; a plain TCP stream just closes when dropped.
    pub async fn close_gracefully(&mut self) {
        if self.is_tls() {
            let shutdown = tokio::io::AsyncWriteExt::shutdown(self);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), shutdown).await;
        }
    }

    /// True when TLS is in use.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Stream::Plain(_) | Stream::Unix(_))
    }

    /// Negotiated TLS version and cipher, for SHOW CLIENTS/SERVERS.
    pub fn tls_description(&self) -> String {
        let conn: &rustls::CommonState = match self {
            Stream::Plain(_) | Stream::Unix(_) => return String::new(),
            Stream::TlsServer(s) => s.get_ref().1,
            Stream::TlsClient(s) => s.get_ref().1,
        };
        let version = conn
            .protocol_version()
            .and_then(|v| v.as_str())
            .unwrap_or("TLS");
        let suite = conn
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .unwrap_or("");
        format!("{version}/{suite}")
    }

    /// Reads once into the spare capacity of `buf`, growing it by
    /// [`READ_CHUNK`] when nearly full. Ok(0) means end of stream.
    pub async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_read_buf(cx, buf)).await
    }

    /// Poll form of [`Stream::read_buf`].
    #[inline]
    pub fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(self), cx, buf)
    }

    /// Writes all of `buf` and flushes, then clears it.
    pub async fn write_all_clear(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        if !buf.is_empty() {
            self.write_all(buf).await?;
            buf.clear();
        }
        self.flush().await
    }

    /// Writes as much of `buf` as the socket takes without blocking, then
    /// flushes TLS. Ready(Ok) means `buf` is empty.
    #[inline]
    pub fn poll_write_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<()>> {
        while !buf.is_empty() {
            let n = match Pin::new(&mut *self).poll_write(cx, buf) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "peer stopped reading",
                    )));
                }
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            if n == buf.len() {
                buf.clear();
            } else {
                let _ = buf.split_to(n);
            }
        }
        match self {
            Stream::Plain(_) | Stream::Unix(_) => Poll::Ready(Ok(())),
            _ => Pin::new(&mut *self).poll_flush(cx),
        }
    }
}

impl AsyncRead for Stream {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::TlsServer(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::TlsClient(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::TlsServer(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::TlsClient(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::TlsServer(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::TlsClient(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::TlsServer(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::TlsClient(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

thread_local! {
    static SPARE: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Spare buffers kept per thread for idle clients to borrow.
const SPARE_MAX: usize = 64;
/// Capacity of a recycled buffer.
pub const BUF_CAPACITY: usize = 16 * 1024;

/// Takes an empty buffer from this thread's spares, or allocates one.
///
/// Idle clients give their buffers back ([`recycle_buf`]) so that ten
/// thousand idle connections do not hold ten thousand buffers.
pub fn take_buf() -> BytesMut {
    SPARE
        .with(|s| s.borrow_mut().pop())
        .unwrap_or_else(|| BytesMut::with_capacity(BUF_CAPACITY))
}

/// Returns an empty buffer to this thread's spares (large ones are dropped).
pub fn recycle_buf(buf: &mut BytesMut) {
    if !buf.is_empty() || buf.capacity() == 0 {
        return;
    }
    let b = std::mem::take(buf);
    if b.capacity() > 4 * BUF_CAPACITY {
        return;
    }
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < SPARE_MAX {
            s.push(b);
        }
    });
}
