//! Thin tonic adapters: each converts proto input to domain types (field
//! validation in one place), calls the domain in [`crate::state::Ds`], and
//! converts the result back. Only these modules know about prost and tonic
//! types; request metadata is read in [`meta`].

mod auth;
mod convert;
mod delivery;
mod devices;
mod groups;
mod key_packages;
mod meta;
mod status;

pub use auth::AuthApi;
pub use delivery::DeliveryApi;
pub use devices::DeviceApi;
pub use groups::GroupApi;
pub use key_packages::KeyPackageApi;
