//! Field validation for proto input: a missing or empty required field becomes
//! `INVALID_ARGUMENT` naming the field, in one place.

use tonic::Status;

/// Turns an absent optional message field into `INVALID_ARGUMENT`.
pub trait RequireField<T> {
    fn require(self, field: &'static str) -> Result<T, Status>;
}

impl<T> RequireField<T> for Option<T> {
    fn require(self, field: &'static str) -> Result<T, Status> {
        self.ok_or_else(|| Status::invalid_argument(format!("missing field `{field}`")))
    }
}

/// Checks that a bytes field is present and within a size bound: a missing
/// field is INVALID_ARGUMENT, an oversized one RESOURCE_EXHAUSTED.
pub fn require_bytes(value: &[u8], field: &'static str, max_len: usize) -> Result<(), Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!("missing field `{field}`")));
    }
    if value.len() > max_len {
        return Err(Status::resource_exhausted(format!(
            "field `{field}` is {} bytes, more than the {max_len} allowed",
            value.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn missing_message_field_names_the_field() {
        let err = None::<u8>.require("client").unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("`client`"));
    }

    #[test]
    fn empty_and_oversized_bytes_are_refused() {
        assert_eq!(
            require_bytes(b"", "commit", 4).unwrap_err().code(),
            Code::InvalidArgument
        );
        let err = require_bytes(b"12345", "commit", 4).unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
        assert!(err.message().contains("more than the 4 allowed"));
        assert!(require_bytes(b"1234", "commit", 4).is_ok());
    }
}
