use confide_proto::v1::{self, auth_service_server::AuthService};
use tonic::{Request, Response, Status};

use super::convert::{client_field, unix_ms};
use crate::state::AppState;

pub struct AuthApi(pub AppState);

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn register_client(
        &self,
        request: Request<v1::RegisterClientRequest>,
    ) -> Result<Response<v1::RegisterClientResponse>, Status> {
        self.0.admit_unauthenticated(&request)?;
        let request = request.into_inner();
        let client = client_field(request.client)?;
        self.0
            .register_client(
                client,
                request.signature_public_key.to_vec(),
                &request.registration_token,
            )
            .await?;
        Ok(Response::new(v1::RegisterClientResponse {}))
    }

    async fn create_challenge(
        &self,
        request: Request<v1::CreateChallengeRequest>,
    ) -> Result<Response<v1::CreateChallengeResponse>, Status> {
        self.0.admit_unauthenticated(&request)?;
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
        self.0.admit_unauthenticated(&request)?;
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
}
