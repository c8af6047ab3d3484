//! PublishKeyPackages' input: `validate_key_package`, as the DS runs it on
//! every uploaded key package (framing, signatures, lifetime, ciphersuite,
//! credential). Templates: a key package and a last-resort one.

#![no_main]

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use confide_ds::mls::validate_key_package;
use confide_fuzz::assert_client_error;
use confide_fuzz::edit::{Field, pick};
use confide_fuzz::fixture::Fixture;
use libfuzzer_sys::fuzz_target;

static FIXTURE: LazyLock<Fixture> = LazyLock::new(Fixture::new);

#[derive(Arbitrary, Debug)]
struct Input {
    template: u8,
    key_package: Field,
}

fuzz_target!(|input: Input| {
    let template = pick(&FIXTURE.key_packages, input.template);
    let bytes = input.key_package.build(template);
    match validate_key_package(&bytes, &Default::default()) {
        Ok(valid) => assert!(!valid.key_package_ref.is_empty()),
        Err(error) => assert_client_error(&error),
    }
});
