use confide_proto::v1::{self, group_service_server::GroupService};
use tonic::{Request, Response, Status};

use super::convert::group_id_field;
use super::meta::meta;
use crate::state::AppState;

pub struct GroupApi(pub AppState);

#[tonic::async_trait]
impl GroupService for GroupApi {
    async fn create_group(
        &self,
        request: Request<v1::CreateGroupRequest>,
    ) -> Result<Response<v1::CreateGroupResponse>, Status> {
        let client = self.0.authenticated_client(&meta(&request)).await?;
        let request = request.into_inner();
        let (group_id, epoch) = self
            .0
            .create_group(&client, request.group_info, request.ratchet_tree)
            .await?;
        Ok(Response::new(v1::CreateGroupResponse {
            group_id: group_id.as_slice().to_vec().into(),
            epoch,
        }))
    }

    async fn submit_commit(
        &self,
        request: Request<v1::SubmitCommitRequest>,
    ) -> Result<Response<v1::SubmitCommitResponse>, Status> {
        let client = self.0.authenticated_client(&meta(&request)).await?;
        let request = request.into_inner();
        let group_id = group_id_field(&request.group_id)?;
        let welcome = (!request.welcome.is_empty()).then_some(request.welcome);
        let result = self
            .0
            .submit_commit(
                &client,
                &group_id,
                request.commit,
                welcome,
                request.group_info,
            )
            .await?;
        Ok(Response::new(v1::SubmitCommitResponse {
            seq: result.seq,
            epoch: result.epoch,
        }))
    }

    async fn submit_proposal(
        &self,
        request: Request<v1::SubmitProposalRequest>,
    ) -> Result<Response<v1::SubmitProposalResponse>, Status> {
        let client = self.0.authenticated_client(&meta(&request)).await?;
        let request = request.into_inner();
        let group_id = group_id_field(&request.group_id)?;
        let seq = self
            .0
            .submit_proposal(&client, &group_id, request.proposal)
            .await?;
        Ok(Response::new(v1::SubmitProposalResponse { seq }))
    }

    async fn send_message(
        &self,
        request: Request<v1::SendMessageRequest>,
    ) -> Result<Response<v1::SendMessageResponse>, Status> {
        let client = self.0.authenticated_client(&meta(&request)).await?;
        let request = request.into_inner();
        let group_id = group_id_field(&request.group_id)?;
        let seq = self
            .0
            .send_message(&client, &group_id, &request.message_id, request.message)
            .await?;
        Ok(Response::new(v1::SendMessageResponse { seq }))
    }

    async fn get_group_info(
        &self,
        request: Request<v1::GetGroupInfoRequest>,
    ) -> Result<Response<v1::GetGroupInfoResponse>, Status> {
        let client = self.0.authenticated_client(&meta(&request)).await?;
        let group_id = group_id_field(&request.into_inner().group_id)?;
        let info = self.0.group_info(&client, &group_id).await?;
        Ok(Response::new(v1::GetGroupInfoResponse {
            group_info: info.group_info,
            ratchet_tree: info.ratchet_tree.into(),
            epoch: info.epoch,
        }))
    }

    async fn list_groups(
        &self,
        request: Request<v1::ListGroupsRequest>,
    ) -> Result<Response<v1::ListGroupsResponse>, Status> {
        let client = self.0.authenticated_client(&meta(&request)).await?;
        let groups = self.0.list_groups(&client).await?;
        Ok(Response::new(v1::ListGroupsResponse {
            group_ids: groups
                .into_iter()
                .map(|id| id.as_slice().to_vec().into())
                .collect(),
        }))
    }
}
