//! S3 errors: every code the gateway returns, its HTTP status, and the XML body.
//!
//! Handlers build errors with [`s3_error!`]; conversions from the role crates' errors
//! (`MetaError`, `KmsError`, `BlobError`) live at the bottom of this file and nowhere else.

use std::fmt;

use http::StatusCode;

macro_rules! s3_codes {
    ($( $(#[$doc:meta])* $name:ident => $status:expr ),* $(,)?) => {
        /// An S3 error code, as AWS spells it in `<Code>`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum S3ErrorCode {
            $( $(#[$doc])* $name, )*
        }

        impl S3ErrorCode {
            /// The code as it appears in the XML body (`KMS.*` codes keep AWS's dotted names).
            #[allow(unreachable_patterns)]
            pub fn as_str(self) -> &'static str {
                match self {
                    S3ErrorCode::KMSDisabledException => "KMS.DisabledException",
                    S3ErrorCode::KMSInvalidStateException => "KMS.KMSInvalidStateException",
                    S3ErrorCode::KMSNotFoundException => "KMS.NotFoundException",
                    S3ErrorCode::KMSInternalException => "KMS.KMSInternalException",
                    $( S3ErrorCode::$name => stringify!($name), )*
                }
            }

            /// The HTTP status AWS returns with this code.
            pub fn status(self) -> StatusCode {
                match self { $( S3ErrorCode::$name => $status, )* }
            }
        }
    };
}

s3_codes! {
    /// 403 Forbidden
    AccessDenied => StatusCode::FORBIDDEN,
    /// 409 Conflict
    BucketAlreadyExists => StatusCode::CONFLICT,
    /// 409 Conflict
    BucketAlreadyOwnedByYou => StatusCode::CONFLICT,
    /// 409 Conflict
    BucketNotEmpty => StatusCode::CONFLICT,
    /// 400 Bad Request
    BadDigest => StatusCode::BAD_REQUEST,
    /// 400 Bad Request
    EntityTooSmall => StatusCode::BAD_REQUEST,
    /// 400 Bad Request
    EntityTooLarge => StatusCode::BAD_REQUEST,
    /// 400 Bad Request
    IncompleteBody => StatusCode::BAD_REQUEST,
    /// 500 Internal Server Error
    InternalError => StatusCode::INTERNAL_SERVER_ERROR,
    /// 403 Forbidden
    InvalidAccessKeyId => StatusCode::FORBIDDEN,
    /// 400 Bad Request
    InvalidArgument => StatusCode::BAD_REQUEST,
    /// 400 Bad Request
    InvalidBucketName => StatusCode::BAD_REQUEST,
    /// 409 Conflict
    InvalidBucketState => StatusCode::CONFLICT,
    /// 400 Bad Request
    InvalidDigest => StatusCode::BAD_REQUEST,
    /// 400 Bad Request
    InvalidEncryptionAlgorithmError => StatusCode::BAD_REQUEST,
    /// 400 Bad Request
    InvalidLocationConstraint => StatusCode::BAD_REQUEST,
    /// 403 Forbidden
    InvalidObjectState => StatusCode::FORBIDDEN,
    /// 400 Bad Request
    InvalidPart => StatusCode::BAD_REQUEST,
    /// 400 Bad Request
    InvalidPartOrder => StatusCode::BAD_REQUEST,
    /// 416 Requested Range Not Satisfiable
    InvalidRange => StatusCode::RANGE_NOT_SATISFIABLE,
    /// 400 Bad Request
    InvalidRequest => StatusCode::BAD_REQUEST,
    /// 400 Bad Request
    InvalidStorageClass => StatusCode::BAD_REQUEST,
    /// 400 Bad Request
    InvalidURI => StatusCode::BAD_REQUEST,
    /// 416 Requested Range Not Satisfiable
    InvalidPartNumber => StatusCode::RANGE_NOT_SATISFIABLE,
    /// 400 Bad Request
    InvalidTag => StatusCode::BAD_REQUEST,
    /// 400 Bad Request
    IllegalVersioningConfigurationException => StatusCode::BAD_REQUEST,
    /// 400 Bad Request
    InvalidEncryptionMethod => StatusCode::BAD_REQUEST,
    /// 409 Conflict
    OperationAborted => StatusCode::CONFLICT,
    /// 400 Bad Request
    KeyTooLongError => StatusCode::BAD_REQUEST,
    /// 400 Bad Request
    MalformedXML => StatusCode::BAD_REQUEST,
    /// 400 Bad Request
    MalformedPolicy => StatusCode::BAD_REQUEST,
    /// 400 Bad Request
    MetadataTooLarge => StatusCode::BAD_REQUEST,
    /// 405 Method Not Allowed
    MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
    /// 411 Length Required
    MissingContentLength => StatusCode::LENGTH_REQUIRED,
    /// 400 Bad Request
    MissingSecurityHeader => StatusCode::BAD_REQUEST,
    /// 404 Not Found
    NoSuchBucket => StatusCode::NOT_FOUND,
    /// 404 Not Found
    NoSuchKey => StatusCode::NOT_FOUND,
    /// 404 Not Found
    NoSuchUpload => StatusCode::NOT_FOUND,
    /// 404 Not Found
    NoSuchVersion => StatusCode::NOT_FOUND,
    /// 404 Not Found
    NoSuchObjectLockConfiguration => StatusCode::NOT_FOUND,
    /// 404 Not Found
    ObjectLockConfigurationNotFoundError => StatusCode::NOT_FOUND,
    /// 404 Not Found
    ServerSideEncryptionConfigurationNotFoundError => StatusCode::NOT_FOUND,
    /// 501 Not Implemented
    NotImplemented => StatusCode::NOT_IMPLEMENTED,
    /// 304 Not Modified (no body is sent)
    NotModified => StatusCode::NOT_MODIFIED,
    /// 412 Precondition Failed
    PreconditionFailed => StatusCode::PRECONDITION_FAILED,
    /// 409 Conflict
    ConditionalRequestConflict => StatusCode::CONFLICT,
    /// 403 Forbidden
    RequestTimeTooSkewed => StatusCode::FORBIDDEN,
    /// 400 Bad Request
    RequestTimeout => StatusCode::BAD_REQUEST,
    /// 503 Service Unavailable
    ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
    /// 503 Slow Down
    SlowDown => StatusCode::SERVICE_UNAVAILABLE,
    /// 403 Forbidden
    SignatureDoesNotMatch => StatusCode::FORBIDDEN,
    /// 400 Bad Request
    XAmzContentSHA256Mismatch => StatusCode::BAD_REQUEST,
    /// 400 Bad Request
    InvalidChunkSizeError => StatusCode::BAD_REQUEST,
    /// 400 Bad Request (KMS key disabled)
    KMSDisabledException => StatusCode::BAD_REQUEST,
    /// 400 Bad Request (KMS key in the wrong state)
    KMSInvalidStateException => StatusCode::BAD_REQUEST,
    /// 400 Bad Request (KMS key not found)
    KMSNotFoundException => StatusCode::BAD_REQUEST,
    /// 503 Service Unavailable (KMS unreachable)
    KMSInternalException => StatusCode::SERVICE_UNAVAILABLE,
    /// 400 Bad Request
    UnexpectedContent => StatusCode::BAD_REQUEST,
    /// 400 Bad Request
    AuthorizationHeaderMalformed => StatusCode::BAD_REQUEST,
    /// 400 Bad Request
    AuthorizationQueryParametersError => StatusCode::BAD_REQUEST,
    /// 400 Bad Request
    TooManyParts => StatusCode::BAD_REQUEST,
    /// 400 Bad Request
    MalformedTrailerError => StatusCode::BAD_REQUEST,
}

struct Inner {
    code: S3ErrorCode,
    message: String,
    resource: Option<String>,
    headers: Vec<(&'static str, String)>,
    extra: Vec<(&'static str, String)>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// An S3 error response: code, message and optional details. Boxed so `Result<_, S3Error>` stays small.
pub struct S3Error(Box<Inner>);

impl S3Error {
    /// An error with the given code and message.
    pub fn new(code: S3ErrorCode, message: impl Into<String>) -> Self {
        S3Error(Box::new(Inner {
            code,
            message: message.into(),
            resource: None,
            headers: Vec::new(),
            extra: Vec::new(),
            source: None,
        }))
    }

    /// An `InternalError` that keeps its cause for the log, never for the client.
    pub fn internal(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        let mut e = Self::new(
            S3ErrorCode::InternalError,
            "We encountered an internal error. Please try again.",
        );
        e.0.source = Some(source.into());
        e
    }

    /// The error code.
    pub fn code(&self) -> S3ErrorCode {
        self.0.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The logged cause, if any.
    pub fn source_error(&self) -> Option<&(dyn std::error::Error + Send + Sync)> {
        self.0.source.as_deref()
    }

    /// Sets `<Resource>`.
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.0.resource = Some(resource.into());
        self
    }

    /// Adds a response header (e.g. `x-amz-delete-marker` on a 404 for a delete marker).
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.0.headers.push((name, value.into()));
        self
    }

    /// Adds an element to the XML body after `<Message>` (e.g. `<BucketName>`, `<Key>`).
    pub fn with_detail(mut self, element: &'static str, value: impl Into<String>) -> Self {
        self.0.extra.push((element, value.into()));
        self
    }

    /// Response headers the error carries.
    pub fn headers(&self) -> &[(&'static str, String)] {
        &self.0.headers
    }

    /// The XML body AWS sends for this error.
    pub fn to_xml(&self, request_id: &str) -> String {
        let mut s = String::with_capacity(256);
        s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>");
        s.push_str(self.0.code.as_str());
        s.push_str("</Code><Message>");
        s.push_str(&xml_escape(&self.0.message));
        s.push_str("</Message>");
        for (name, value) in &self.0.extra {
            s.push('<');
            s.push_str(name);
            s.push('>');
            s.push_str(&xml_escape(value));
            s.push_str("</");
            s.push_str(name);
            s.push('>');
        }
        if let Some(resource) = &self.0.resource {
            s.push_str("<Resource>");
            s.push_str(&xml_escape(resource));
            s.push_str("</Resource>");
        }
        s.push_str("<RequestId>");
        s.push_str(request_id);
        s.push_str("</RequestId></Error>");
        s
    }
}

impl fmt::Debug for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.0.code.as_str(), self.0.message)?;
        if let Some(src) = &self.0.source {
            write!(f, " ({src})")?;
        }
        Ok(())
    }
}

impl fmt::Display for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for S3Error {}

/// Escapes text for an XML element body or attribute.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Builds an [`S3Error`]: `s3_error!(NoSuchKey, "The specified key does not exist.")`.
#[macro_export]
macro_rules! s3_error {
    ($code:ident, $($arg:tt)+) => {
        $crate::error::S3Error::new($crate::error::S3ErrorCode::$code, format!($($arg)+))
    };
}

/// The result type of every handler.
pub type S3Result<T> = Result<T, S3Error>;

impl From<coffer_meta::MetaError> for S3Error {
    fn from(e: coffer_meta::MetaError) -> Self {
        use coffer_meta::MetaError as M;
        match e {
            M::NoSuchBucket(b) => S3Error::new(S3ErrorCode::NoSuchBucket, "The specified bucket does not exist")
                .with_detail("BucketName", b),
            M::BucketAlreadyExists(b) => S3Error::new(
                S3ErrorCode::BucketAlreadyOwnedByYou,
                "Your previous request to create the named bucket succeeded and you already own it.",
            )
            .with_detail("BucketName", b),
            M::BucketNotEmpty(b) => S3Error::new(S3ErrorCode::BucketNotEmpty, "The bucket you tried to delete is not empty")
                .with_detail("BucketName", b),
            M::NoSuchKey(k) => S3Error::new(S3ErrorCode::NoSuchKey, "The specified key does not exist.").with_detail("Key", k),
            M::NoSuchVersion(v) => S3Error::new(
                S3ErrorCode::NoSuchVersion,
                "The specified version does not exist.",
            )
            .with_detail("VersionId", v),
            M::NoSuchUpload(u) => S3Error::new(
                S3ErrorCode::NoSuchUpload,
                "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
            )
            .with_detail("UploadId", u),
            M::PreconditionFailed => S3Error::new(
                S3ErrorCode::PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold",
            ),
            M::GenerationMismatch { .. } | M::RewrapConflict { .. } => S3Error::new(
                S3ErrorCode::ConditionalRequestConflict,
                "The conditional request cannot succeed due to a conflicting operation against this resource.",
            ),
            M::ObjectLocked(_) => S3Error::new(S3ErrorCode::AccessDenied, "Access Denied because object protected by object lock."),
            M::Invalid(m) => S3Error::new(S3ErrorCode::InvalidRequest, m),
            M::Unavailable(m) => {
                let mut e = S3Error::new(S3ErrorCode::ServiceUnavailable, "Please reduce your request rate.");
                e.0.source = Some(m.into());
                e
            }
            M::Storage(m) => S3Error::internal(m),
        }
    }
}

impl From<coffer_kms::KmsError> for S3Error {
    fn from(e: coffer_kms::KmsError) -> Self {
        use coffer_kms::KmsError as K;
        let code = match &e {
            K::NotFound(_) | K::InvalidArn(_) => S3ErrorCode::KMSNotFoundException,
            K::Disabled(_) => S3ErrorCode::KMSDisabledException,
            K::InvalidState(_) => S3ErrorCode::KMSInvalidStateException,
            K::Validation(_) | K::IncorrectKey(_) | K::AlreadyExists(_) | K::InvalidMarker(_) => {
                S3ErrorCode::InvalidArgument
            }
            K::InvalidCiphertext(_) | K::Internal(_) => return S3Error::internal(e),
            K::Unavailable(_) => S3ErrorCode::KMSInternalException,
        };
        S3Error::new(code, e.message().to_string())
    }
}

impl From<coffer_blob::BlobError> for S3Error {
    fn from(e: coffer_blob::BlobError) -> Self {
        match e {
            coffer_blob::BlobError::Unavailable(_) => {
                let mut err = S3Error::new(
                    S3ErrorCode::ServiceUnavailable,
                    "Please reduce your request rate.",
                );
                err.0.source = Some(e.into());
                err
            }
            other => S3Error::internal(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_xml_matches_aws_shape() {
        let e = S3Error::new(S3ErrorCode::NoSuchKey, "The specified key does not exist.")
            .with_detail("Key", "a&b")
            .with_resource("/bucket/a&b");
        assert_eq!(
            e.to_xml("REQ1"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>\
             <Message>The specified key does not exist.</Message><Key>a&amp;b</Key>\
             <Resource>/bucket/a&amp;b</Resource><RequestId>REQ1</RequestId></Error>"
        );
        assert_eq!(e.code().status(), StatusCode::NOT_FOUND);
    }
}
