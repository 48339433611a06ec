//! `KmsError`: the AWS KMS exception names.

/// An error of a KMS call, named as AWS KMS names its exceptions.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KmsError {
    /// `NotFoundException`.
    #[error("NotFoundException: {0}")]
    NotFound(String),
    /// `DisabledException`.
    #[error("DisabledException: {0}")]
    Disabled(String),
    /// `KMSInvalidStateException`.
    #[error("KMSInvalidStateException: {0}")]
    InvalidState(String),
    /// `InvalidCiphertextException`.
    #[error("InvalidCiphertextException: {0}")]
    InvalidCiphertext(String),
    /// `IncorrectKeyException`.
    #[error("IncorrectKeyException: {0}")]
    IncorrectKey(String),
    /// `AlreadyExistsException`.
    #[error("AlreadyExistsException: {0}")]
    AlreadyExists(String),
    /// `ValidationException`.
    #[error("ValidationException: {0}")]
    Validation(String),
    /// `InvalidArnException`.
    #[error("InvalidArnException: {0}")]
    InvalidArn(String),
    /// `InvalidMarkerException`.
    #[error("InvalidMarkerException: {0}")]
    InvalidMarker(String),
    /// `KMSInternalException`, or the KMS could not be reached (`DependencyTimeoutException` upstream).
    #[error("KMSInternalException: {0}")]
    Internal(String),
    /// The KMS is unreachable or timed out.
    #[error("DependencyTimeoutException: {0}")]
    Unavailable(String),
}

impl KmsError {
    /// The AWS exception name (`__type` in the JSON API).
    pub fn aws_name(&self) -> &'static str {
        match self {
            KmsError::NotFound(_) => "NotFoundException",
            KmsError::Disabled(_) => "DisabledException",
            KmsError::InvalidState(_) => "KMSInvalidStateException",
            KmsError::InvalidCiphertext(_) => "InvalidCiphertextException",
            KmsError::IncorrectKey(_) => "IncorrectKeyException",
            KmsError::AlreadyExists(_) => "AlreadyExistsException",
            KmsError::Validation(_) => "ValidationException",
            KmsError::InvalidArn(_) => "InvalidArnException",
            KmsError::InvalidMarker(_) => "InvalidMarkerException",
            KmsError::Internal(_) => "KMSInternalException",
            KmsError::Unavailable(_) => "DependencyTimeoutException",
        }
    }

    /// Rebuilds an error from its AWS exception name and message (the inverse of
    /// [`KmsError::aws_name`]); `None` for a name this enum does not carry.
    pub fn from_aws_name(name: &str, message: impl Into<String>) -> Option<KmsError> {
        let m = message.into();
        Some(match name {
            "NotFoundException" => KmsError::NotFound(m),
            "DisabledException" => KmsError::Disabled(m),
            "KMSInvalidStateException" => KmsError::InvalidState(m),
            "InvalidCiphertextException" => KmsError::InvalidCiphertext(m),
            "IncorrectKeyException" => KmsError::IncorrectKey(m),
            "AlreadyExistsException" => KmsError::AlreadyExists(m),
            "ValidationException" => KmsError::Validation(m),
            "InvalidArnException" => KmsError::InvalidArn(m),
            "InvalidMarkerException" => KmsError::InvalidMarker(m),
            "KMSInternalException" => KmsError::Internal(m),
            "DependencyTimeoutException" => KmsError::Unavailable(m),
            _ => return None,
        })
    }

    /// The message without the exception name.
    pub fn message(&self) -> &str {
        match self {
            KmsError::NotFound(m)
            | KmsError::Disabled(m)
            | KmsError::InvalidState(m)
            | KmsError::InvalidCiphertext(m)
            | KmsError::IncorrectKey(m)
            | KmsError::AlreadyExists(m)
            | KmsError::Validation(m)
            | KmsError::InvalidArn(m)
            | KmsError::InvalidMarker(m)
            | KmsError::Internal(m)
            | KmsError::Unavailable(m) => m,
        }
    }
}
