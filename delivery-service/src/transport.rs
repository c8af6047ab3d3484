//! The gRPC port's transport: TLS (rustls) from the configured PEM files, and
//! a connection limit on the accepted TCP connections, and closing the
//! connections still open when the shutdown grace period is over.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::TlsSettings;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reading TLS file {path}: {source}")]
    TlsFile {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("serving gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("serving metrics: {0}")]
    Metrics(#[source] io::Error),
}

/// rustls configuration from the PEM files: the server's certificate chain
/// and key, and the CA that client certificates must chain to, if any.
pub fn tls_config(tls: &TlsSettings) -> Result<ServerTlsConfig, ServeError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| ServeError::TlsFile {
            path: path.display().to_string(),
            source,
        })
    };
    let mut config =
        ServerTlsConfig::new().identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?));
    if let Some(ca) = &tls.client_ca {
        config = config.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(config)
}

/// An accepted connection holding one of the DS's connection slots until it
/// closes. Once `closed` is cancelled every read and write fails, so the
/// server drops the connection whatever the client does.
pub struct Connection {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Connection {
    fn check_open(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.closed.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the shutdown grace period is over",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

/// Awaits `serving`, a server that shuts down gracefully on `shutdown`; if it
/// has not finished `grace` after `shutdown`, cancels `close` (which closes
/// the connections from [`limited_incoming`]) and then awaits it.
pub async fn serve_within_grace<T>(
    serving: impl Future<Output = T>,
    shutdown: &CancellationToken,
    grace: Duration,
    close: &CancellationToken,
) -> T {
    tokio::pin!(serving);
    let grace_over = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = &mut serving => served,
        () = grace_over => {
            tracing::warn!(?grace, "shutdown grace period over: closing the connections still open");
            close.cancel();
            serving.await
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        metrics::gauge!("confide_connections_open").decrement(1);
    }
}

/// Connections from `listener`, at most `max` open at once: a connection
/// beyond that is closed at once (the client sees UNAVAILABLE and may retry)
/// rather than left waiting in the backlog. Cancelling `close` fails every
/// read and write of every connection.
pub fn limited_incoming(
    listener: TcpListener,
    max: usize,
    close: CancellationToken,
) -> impl Stream<Item = io::Result<Connection>> {
    let slots = Arc::new(Semaphore::new(max));
    futures::stream::unfold((listener, slots), move |(listener, slots)| {
        let close = close.clone();
        async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => match slots.clone().try_acquire_owned() {
                        Ok(slot) => {
                            let _ = stream.set_nodelay(true);
                            metrics::gauge!("confide_connections_open").increment(1);
                            let connection = Connection {
                                stream,
                                _slot: slot,
                                closed: Box::pin(close.cancelled_owned()),
                            };
                            return Some((Ok(connection), (listener, slots)));
                        }
                        Err(_) => {
                            metrics::counter!("confide_connections_refused_total").increment(1);
                            tracing::warn!(%peer, max, "connection limit reached: closing a new connection");
                        }
                    },
                    Err(error) => {
                        // Out of file descriptors and the like: wait, don't spin.
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    })
}

impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check_open(cx)?;
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check_open(cx)?;
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check_open(cx)?;
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
