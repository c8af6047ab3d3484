use confide_proto::v1::{self, device_service_server::DeviceService};
use tonic::{Request, Response, Status};

use super::convert::unix_ms;
use super::meta::meta;
use crate::devices::LinkPoll;
use crate::state::AppState;

pub struct DeviceApi(pub AppState);

#[tonic::async_trait]
impl DeviceService for DeviceApi {
    async fn list_devices(
        &self,
        request: Request<v1::ListDevicesRequest>,
    ) -> Result<Response<v1::ListDevicesResponse>, Status> {
        self.0.authenticated_client(&meta(&request)).await?;
        let devices = self.0.list_devices(&request.into_inner().user).await?;
        Ok(Response::new(v1::ListDevicesResponse {
            identity_key: devices.identity_key.unwrap_or_default().into(),
            devices: devices
                .devices
                .into_iter()
                .map(|device| v1::Device {
                    client: Some((&device.id).into()),
                    signature_public_key: device.signature_key.into(),
                    device_certificate: device.certificate.unwrap_or_default().into(),
                })
                .collect(),
            revocations: devices
                .revocations
                .into_iter()
                .map(|(client, revocation)| v1::DeviceRevocation {
                    client: Some((&client).into()),
                    revocation: revocation.into(),
                })
                .collect(),
        }))
    }

    async fn post_link_offer(
        &self,
        request: Request<v1::PostLinkOfferRequest>,
    ) -> Result<Response<v1::PostLinkOfferResponse>, Status> {
        self.0.admit_unauthenticated(&meta(&request))?;
        let request = request.into_inner();
        let expires_at = self
            .0
            .post_link_offer(&request.user, &request.link_id, request.sealed_offer)
            .await?;
        Ok(Response::new(v1::PostLinkOfferResponse {
            expires_at_unix_ms: unix_ms(expires_at),
        }))
    }

    async fn take_link_offer(
        &self,
        request: Request<v1::TakeLinkOfferRequest>,
    ) -> Result<Response<v1::TakeLinkOfferResponse>, Status> {
        let caller = self.0.authenticated_client(&meta(&request)).await?;
        let sealed_offer = self
            .0
            .take_link_offer(&caller, &request.into_inner().link_id)
            .await?;
        Ok(Response::new(v1::TakeLinkOfferResponse { sealed_offer }))
    }

    async fn post_link_answer(
        &self,
        request: Request<v1::PostLinkAnswerRequest>,
    ) -> Result<Response<v1::PostLinkAnswerResponse>, Status> {
        let caller = self.0.authenticated_client(&meta(&request)).await?;
        let request = request.into_inner();
        self.0
            .post_link_answer(&caller, &request.link_id, request.sealed_answer)
            .await?;
        Ok(Response::new(v1::PostLinkAnswerResponse {}))
    }

    async fn take_link_answer(
        &self,
        request: Request<v1::TakeLinkAnswerRequest>,
    ) -> Result<Response<v1::TakeLinkAnswerResponse>, Status> {
        self.0.admit_unauthenticated(&meta(&request))?;
        let poll = self
            .0
            .take_link_answer(&request.into_inner().link_id)
            .await?;
        Ok(Response::new(match poll {
            LinkPoll::Pending => v1::TakeLinkAnswerResponse::default(),
            LinkPoll::Answered(sealed_answer) => v1::TakeLinkAnswerResponse {
                answered: true,
                sealed_answer,
            },
        }))
    }
}
