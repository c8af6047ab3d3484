use confide_proto::v1::{self, auth_service_server::AuthService};
use tonic::{Request, Response, Status};

use super::convert::{client_field, unix_ms};
use super::meta::meta;
use crate::mls::ExternalSenderKey;
use crate::state::AppState;

pub struct AuthApi(pub AppState);

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn register_client(
        &self,
        request: Request<v1::RegisterClientRequest>,
    ) -> Result<Response<v1::RegisterClientResponse>, Status> {
        self.0.admit_unauthenticated(&meta(&request))?;
        let request = request.into_inner();
        let client = client_field(request.client)?;
        self.0
            .register_client(
                client,
                request.signature_public_key.to_vec(),
                &request.device_certificate,
                &request.registration_token,
            )
            .await?;
        Ok(Response::new(v1::RegisterClientResponse {}))
    }

    async fn create_challenge(
        &self,
        request: Request<v1::CreateChallengeRequest>,
    ) -> Result<Response<v1::CreateChallengeResponse>, Status> {
        self.0.admit_unauthenticated(&meta(&request))?;
        let client = client_field(request.into_inner().client)?;
        let challenge = self.0.create_challenge(&client).await?;
        Ok(Response::new(v1::CreateChallengeResponse {
            challenge: challenge.challenge.into(),
            expires_at_unix_ms: unix_ms(challenge.expires_at),
        }))
    }

    async fn authenticate(
        &self,
        request: Request<v1::AuthenticateRequest>,
    ) -> Result<Response<v1::AuthenticateResponse>, Status> {
        self.0.admit_unauthenticated(&meta(&request))?;
        let request = request.into_inner();
        let client = client_field(request.client)?;
        let session = self
            .0
            .authenticate(&client, &request.challenge, &request.signature)
            .await?;
        Ok(Response::new(v1::AuthenticateResponse {
            session_token: session.token,
            expires_at_unix_ms: unix_ms(session.expires_at),
        }))
    }

    async fn revoke_session(
        &self,
        request: Request<v1::RevokeSessionRequest>,
    ) -> Result<Response<v1::RevokeSessionResponse>, Status> {
        let client = self.0.revoke_session(&meta(&request)).await?;
        tracing::debug!(%client, "session revoked");
        Ok(Response::new(v1::RevokeSessionResponse {}))
    }

    async fn remove_client(
        &self,
        request: Request<v1::RemoveClientRequest>,
    ) -> Result<Response<v1::RemoveClientResponse>, Status> {
        let remover = self.0.authenticate_remover(&meta(&request)).await?;
        let target = client_field(request.get_ref().client.clone())?;
        remover.may_remove(&target)?;
        let removal = self
            .0
            .remove_client(&target, &request.get_ref().revocation)
            .await?;
        Ok(Response::new(v1::RemoveClientResponse {
            removal_proposed_in: removal.proposed_in,
            not_removable_in: removal.not_removable_in,
        }))
    }

    async fn get_service_info(
        &self,
        request: Request<v1::GetServiceInfoRequest>,
    ) -> Result<Response<v1::GetServiceInfoResponse>, Status> {
        self.0.admit_unauthenticated(&meta(&request))?;
        Ok(Response::new(v1::GetServiceInfoResponse {
            external_sender: self
                .0
                .external_sender
                .as_ref()
                .map(|key| v1::ExternalSender {
                    signature_public_key: key.public().to_vec().into(),
                    identity: ExternalSenderKey::IDENTITY.to_vec().into(),
                }),
        }))
    }
}
