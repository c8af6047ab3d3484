use confide_proto::v1::{self, key_package_service_server::KeyPackageService};
use tonic::{Request, Response, Status};

use super::meta::meta;
use crate::domain::{InvalidClientId, valid_user};
use crate::state::AppState;

pub struct KeyPackageApi(pub AppState);

#[tonic::async_trait]
impl KeyPackageService for KeyPackageApi {
    async fn publish_key_packages(
        &self,
        request: Request<v1::PublishKeyPackagesRequest>,
    ) -> Result<Response<v1::PublishKeyPackagesResponse>, Status> {
        let client = self.0.authenticated_client(&meta(&request)).await?;
        let request = request.into_inner();
        let last_resort = (!request.last_resort_key_package.is_empty())
            .then_some(request.last_resort_key_package);
        let available = self
            .0
            .publish_key_packages(&client, request.key_packages, last_resort)
            .await?;
        Ok(Response::new(v1::PublishKeyPackagesResponse { available }))
    }

    async fn claim_key_packages(
        &self,
        request: Request<v1::ClaimKeyPackagesRequest>,
    ) -> Result<Response<v1::ClaimKeyPackagesResponse>, Status> {
        let claimer = self.0.authenticated_client(&meta(&request)).await?;
        let user = request.into_inner().user;
        if !valid_user(&user) {
            return Err(Status::invalid_argument(
                InvalidClientId::BadName("user").to_string(),
            ));
        }
        let claimed = self.0.claim_key_packages(&claimer, &user).await?;
        Ok(Response::new(v1::ClaimKeyPackagesResponse {
            key_packages: claimed
                .into_iter()
                .map(|kp| v1::ClaimedKeyPackage {
                    client: Some((&kp.client).into()),
                    key_package: kp.data,
                    last_resort: kp.last_resort,
                })
                .collect(),
        }))
    }

    async fn count_key_packages(
        &self,
        request: Request<v1::CountKeyPackagesRequest>,
    ) -> Result<Response<v1::CountKeyPackagesResponse>, Status> {
        let client = self.0.authenticated_client(&meta(&request)).await?;
        let count = self.0.count_key_packages(&client).await?;
        Ok(Response::new(v1::CountKeyPackagesResponse {
            available: count.available,
            has_last_resort: count.has_last_resort,
            low_watermark: self.0.settings.key_package_low_watermark,
        }))
    }
}
