use std::pin::Pin;

use confide_proto::v1::{self, delivery_service_server::DeliveryService};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::convert::stream_field;
use super::meta::meta;
use crate::state::AppState;

pub struct DeliveryApi(pub AppState);

type EnvelopeStream = Pin<Box<dyn Stream<Item = Result<v1::Envelope, Status>> + Send>>;

#[tonic::async_trait]
impl DeliveryService for DeliveryApi {
    type SubscribeStream = EnvelopeStream;

    async fn subscribe(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let caller = self.0.authenticated_caller(&meta(&request)).await?;
        let deliveries = self
            .0
            .subscribe(caller, self.0.settings.stream_buffer)
            .await?;
        let stream = ReceiverStream::new(deliveries)
            .map(|item| item.map(v1::Envelope::from).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn fetch(
        &self,
        request: Request<v1::FetchRequest>,
    ) -> Result<Response<v1::FetchResponse>, Status> {
        let client = self.0.authenticated_client(&meta(&request)).await?;
        let request = request.into_inner();
        let stream = stream_field(request.stream)?;
        let entries = self
            .0
            .fetch(&client, &stream, request.after_seq, request.limit)
            .await?;
        Ok(Response::new(v1::FetchResponse {
            entries: entries.into_iter().map(Into::into).collect(),
        }))
    }

    async fn ack(
        &self,
        request: Request<v1::AckRequest>,
    ) -> Result<Response<v1::AckResponse>, Status> {
        let client = self.0.authenticated_client(&meta(&request)).await?;
        let request = request.into_inner();
        let stream = stream_field(request.stream)?;
        self.0.ack(&client, &stream, request.seq).await?;
        Ok(Response::new(v1::AckResponse {}))
    }
}
