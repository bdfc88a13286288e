//! The connections a gRPC server takes: accepted TCP connections, each behind a TLS handshake
//! with the listener's config of the moment when TLS is on ([`ListenerTls::config`]), so
//! rotated certificates reach new clients without a restart. The HTTP listeners
//! ([`crate::http`]) accept on their own but serve the same [`Conn`].
//!
//! Plaintext connections come straight from tonic's own accept loop. Handshakes run beside the
//! accept loop, bounded by [`HANDSHAKE_TIMEOUT`], so a client that
//! never finishes one holds up nobody. Nothing here looks at requests.
//!
//! Every read that brings data asks the kernel to acknowledge at once (`TCP_QUICKACK`, on
//! Linux). A connection that carries one request message and one short answer after another
//! looks interactive to the kernel, which then holds its acknowledgements back for up to 40 ms
//! in the hope of sending them with the answer. A client sending a batch of a megabyte or more
//! uses up its congestion window on the first part and waits for those acknowledgements, so the
//! rest of the batch sat in its send queue while this side had read everything and was idle.
//! Over loopback (64 KiB segments) that stall hit a few batches of every 10 s at a steady 10,000
//! real detector events per second, each by 40–70 ms; the mode does not last, so it is asked
//! for again after every read that brought data.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_stream::{Stream, StreamExt as _, wrappers::ReceiverStream};
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::{http::HANDSHAKE_TIMEOUT, tls::ListenerTls};

/// One connection, in plaintext or after its TLS handshake.
pub(crate) enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// The connections a server takes.
pub(crate) type Incoming = Pin<Box<dyn Stream<Item = Result<Conn, std::io::Error>> + Send>>;

/// Accepts connections on `listener`: in plaintext as tonic does; with `tls`, on a task of its
/// own until the returned stream is dropped, each connection handed over once its handshake
/// completed (failed handshakes are logged at debug and dropped).
pub(crate) fn incoming(listener: TcpListener, tls: Option<ListenerTls>) -> Incoming {
    let Some(tls) = tls else {
        let plain = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        return Box::pin(plain.map(|accepted| accepted.map(Conn::Plain)));
    };
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "grpc accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (tls.acceptor(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(Conn::Tls(Box::new(stream)))).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "tls handshake failed"),
                    Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
                }
            });
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(tcp) => tcp,
            Conn::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.tcp().connect_info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = match this {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_read(cx, buf),
        };
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            acknowledge_at_once(this.tcp());
        }
        read
    }
}

/// Puts `tcp` in quick-acknowledgement mode (see the module documentation); a no-op where the
/// option does not exist. A failure only leaves the kernel's own choice, so it is ignored.
fn acknowledge_at_once(tcp: &TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let _ = socket2::SockRef::from(tcp).set_tcp_quickack(true);
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = tcp;
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_read_that_brings_data_leaves_the_connection_acknowledging_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut conn = Conn::Plain(server);
        // Delayed acknowledgements, as the kernel chooses for a connection that looks interactive.
        let tcp = socket2::SockRef::from(conn.tcp());
        tcp.set_tcp_quickack(false).unwrap();
        assert!(!tcp.tcp_quickack().unwrap());

        client.write_all(b"a request").await.unwrap();
        let mut buf = [0u8; 64];
        let n = conn.read(&mut buf).await.unwrap();

        assert_eq!(&buf[..n], &b"a request"[..n]);
        assert!(n > 0);
        assert!(socket2::SockRef::from(conn.tcp()).tcp_quickack().unwrap());
    }
}
