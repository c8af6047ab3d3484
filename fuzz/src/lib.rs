//! `confide-fuzz`: cargo-fuzz targets for every place the Confide delivery
//! service parses client bytes. A panic, or an internal error, on any input
//! is a bug in the DS: design invariant 7 says bad input gets a clear error.
//!
//! Shared here: [`edit::Field`], fuzz input that edits a valid template, and
//! [`fixture::Fixture`], a real group and the templates made from it.

pub mod edit;
pub mod fixture;

use confide_ds::mls::MlsError;

/// Client bytes may be refused, never answered with an internal error:
/// `CorruptState` is the only `MlsError` that maps to INTERNAL.
pub fn assert_client_error(error: &MlsError) {
    assert!(
        !matches!(error, MlsError::CorruptState),
        "client bytes reported as a corrupt group state: {error}"
    );
    assert!(!error.to_string().is_empty(), "an error without a reason");
}
