//! The reference server: a trivial tonic unary echo (`confide.bench.v1`)
//! served in this process, as fast as tonic answers a call that does nothing.

use confide_proto::bench::v1::EchoMessage;
use confide_proto::bench::v1::echo_service_server::{EchoService, EchoServiceServer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

struct Echo;

#[tonic::async_trait]
impl EchoService for Echo {
    async fn echo(&self, request: Request<EchoMessage>) -> Result<Response<EchoMessage>, Status> {
        Ok(Response::new(request.into_inner()))
    }
}

/// Serves the echo service on 127.0.0.1, port 0, until `stop` is cancelled;
/// returns its `http://` endpoint.
pub async fn start(stop: CancellationToken) -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(EchoServiceServer::new(Echo))
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned()),
    );
    Ok(endpoint)
}
