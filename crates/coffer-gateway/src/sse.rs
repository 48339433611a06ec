//! Server-side encryption: choosing the envelope of a new object version, unwrapping the data
//! key of an existing one, and the response headers that describe it.

use std::collections::BTreeMap;

use coffer_crypto::{BlobCipher, DataKey, LayeredCipher};
use coffer_meta::{BucketRecord, Envelope, SseAlgorithm, FORMAT_VERSION};
use http::HeaderMap;
use zeroize::Zeroizing;

use crate::error::{S3Error, S3Result};
use crate::s3_error;
use crate::state::{AppState, ReqCtx};

/// The encryption context key S3 binds every SSE-KMS data key to.
pub const S3_ARN_CONTEXT: &str = "aws:s3:arn";

/// The encryption context key that tells the two data keys of a DSSE-KMS object apart: the
/// second (outer) layer's data key is generated under the object's context plus
/// `"aws:s3:dsse-layer": "2"`, so the two wrapped keys are not interchangeable (KMS refuses to
/// decrypt one under the other's context). The first layer's context is SSE-KMS's, without this
/// key (a caller-supplied pair of this name is dropped from it).
pub const DSSE_LAYER_CONTEXT: &str = "aws:s3:dsse-layer";

/// The plaintext data keys of an object version: one, or two for DSSE-KMS (one per layer).
/// Zeroized on drop.
pub struct DataKeys {
    /// The only key, or the inner layer's (sealing the plaintext) for DSSE-KMS.
    pub inner: DataKey,
    /// DSSE-KMS: the outer layer's key (sealing the inner layer's output).
    pub outer: Option<DataKey>,
}

impl DataKeys {
    /// One layer under `dek`.
    pub fn single(dek: DataKey) -> Self {
        Self {
            inner: dek,
            outer: None,
        }
    }

    /// Encryption layers these keys seal: 1, or 2 for DSSE-KMS.
    pub fn layers(&self) -> u8 {
        1 + u8::from(self.outer.is_some())
    }

    /// The cipher of part `part_number`'s blob `blob_id`.
    pub fn cipher(&self, blob_id: &[u8; 16], part_number: u32) -> LayeredCipher {
        let inner = BlobCipher::new(&self.inner, blob_id, part_number);
        match &self.outer {
            None => LayeredCipher::single(inner),
            Some(outer) => {
                LayeredCipher::double(inner, BlobCipher::outer_layer(outer, blob_id, part_number))
            }
        }
    }
}

impl std::fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataKeys(layers={})", self.layers())
    }
}

/// Encryption layers of the blobs of a version (or upload) with this envelope: 2 for DSSE-KMS,
/// 1 otherwise. The one place the layer count is decided.
pub fn layers(envelope: &Envelope) -> u8 {
    if envelope.algorithm == SseAlgorithm::AwsKmsDsse {
        2
    } else {
        1
    }
}

/// A new object version's data keys and the envelope that stores them wrapped.
pub struct ObjectKey {
    /// The plaintext data keys; zeroized on drop.
    pub keys: DataKeys,
    /// What is stored in meta.
    pub envelope: Envelope,
}

/// The encryption a request asked for (or the bucket default supplies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseRequest {
    /// Algorithm.
    pub algorithm: SseAlgorithm,
    /// KMS key as the user named it (ID, ARN or alias), for SSE-KMS.
    pub kms_key_id: Option<String>,
    /// Extra encryption context (SSE-KMS).
    pub context: Option<BTreeMap<String, String>>,
    /// Wrap the data key with an S3 Bucket Key instead of a KMS call per object.
    pub bucket_key: bool,
    /// SSE-C: the customer's key.
    pub customer_key: Option<CustomerKey>,
}

/// A customer-provided key (SSE-C), zeroized on drop.
#[derive(Clone)]
pub struct CustomerKey {
    key: Zeroizing<[u8; 32]>,
    /// Base64 MD5 of the key, as sent and returned.
    pub md5_b64: String,
}

impl std::fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CustomerKey(md5={})", self.md5_b64)
    }
}

impl PartialEq for CustomerKey {
    fn eq(&self, other: &Self) -> bool {
        self.md5_b64 == other.md5_b64
    }
}

impl Eq for CustomerKey {}

/// Which header names carry an SSE-C key: the object's own, or a copy source's.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum CustomerKeyHeaders {
    /// `x-amz-server-side-encryption-customer-*`.
    Object,
    /// `x-amz-copy-source-server-side-encryption-customer-*`.
    CopySource,
}

/// Reads an SSE-C key from request headers; `None` when no SSE-C header is present.
pub fn customer_key(
    headers: &HeaderMap,
    which: CustomerKeyHeaders,
) -> S3Result<Option<CustomerKey>> {
    use base64::Engine;
    use md5::Digest;
    let prefix = match which {
        CustomerKeyHeaders::Object => "x-amz-server-side-encryption-customer-",
        CustomerKeyHeaders::CopySource => "x-amz-copy-source-server-side-encryption-customer-",
    };
    let h = |n: &str| {
        headers
            .get(format!("{prefix}{n}"))
            .and_then(|v| v.to_str().ok())
    };
    let (alg, key, md5) = (h("algorithm"), h("key"), h("key-md5"));
    if alg.is_none() && key.is_none() && md5.is_none() {
        return Ok(None);
    }
    match alg {
        Some("AES256") => {}
        Some(_) => {
            return Err(S3Error::new(
                crate::error::S3ErrorCode::InvalidEncryptionAlgorithmError,
                "The Encryption request you specified is not valid. Supported value: AES256.",
            ))
        }
        None => {
            return Err(s3_error!(
                InvalidArgument,
                "Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm."
            ))
        }
    }
    let key = key.ok_or_else(|| {
        s3_error!(
            InvalidArgument,
            "Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key."
        )
    })?;
    let raw = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(key)
            .unwrap_or_default(),
    );
    if raw.len() != 32 {
        return Err(s3_error!(
            InvalidArgument,
            "The secret key was invalid for the specified algorithm."
        ));
    }
    let computed =
        base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(raw.as_slice()));
    let md5 = md5.ok_or_else(|| {
        s3_error!(
            InvalidArgument,
            "Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key."
        )
    })?;
    if md5 != computed {
        return Err(s3_error!(
            InvalidArgument,
            "The calculated MD5 hash of the key did not match the hash that was provided."
        ));
    }
    let mut k = Zeroizing::new([0u8; 32]);
    k.copy_from_slice(&raw);
    Ok(Some(CustomerKey {
        key: k,
        md5_b64: computed,
    }))
}

const SSE_C_AAD: &str = "coffer/sse-c/v1|";

/// Whether a request carries an `x-amz-server-side-encryption-customer-*` header: it asks for
/// an SSE-C write, whether or not its key is well formed. The copy-source headers are not
/// counted: reading an SSE-C source is a read.
pub fn asks_sse_c(headers: &HeaderMap) -> bool {
    headers.keys().any(|k| {
        k.as_str()
            .starts_with("x-amz-server-side-encryption-customer-")
    })
}

/// Refuses an SSE-C write (PutObject, CopyObject, CreateMultipartUpload, UploadPart,
/// UploadPartCopy) to a bucket whose `BlockedEncryptionTypes` is `SSE-C`: 403 AccessDenied
/// ("any PutObject, CopyObject, PostObject, or Multipart Upload ... requests that specify SSE-C
/// encryption will be rejected with an HTTP 403 AccessDenied error", S3 user guide, Blocking or
/// unblocking SSE-C for a general purpose bucket). Called before the key is parsed, any byte
/// is stored or an upload is created: a blocked bucket answers the same with a right or wrong
/// key. The message follows S3's access denied messages for this case ("... because this
/// bucket has blocked upload requests that specify Server Side Encryption with Customer
/// provided keys (SSE-C)"); SSE-C writes need `s3:PutObject`.
pub fn refuse_blocked_sse_c(ctx: &ReqCtx, bucket: &BucketRecord) -> S3Result<()> {
    if !asks_sse_c(&ctx.parts.headers) || !crate::s3::bucket_encryption::sse_c_blocked(bucket) {
        return Ok(());
    }
    Err(s3_error!(
        AccessDenied,
        "User: arn:aws:iam::{}:root is not authorized to perform: s3:PutObject on resource: \"{}\" because this bucket has blocked upload requests that specify Server Side Encryption with Customer provided keys (SSE-C)",
        ctx.state.config.account_id,
        object_arn(&bucket.name, ctx.key())
    ))
}

/// Reads `x-amz-server-side-encryption*` headers of a write, falling back to the bucket default.
pub fn requested(headers: &HeaderMap, bucket: &BucketRecord) -> S3Result<SseRequest> {
    if bucket.directory {
        return crate::directory::requested(headers, bucket);
    }
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if let Some(ck) = customer_key(headers, CustomerKeyHeaders::Object)? {
        if h("x-amz-server-side-encryption").is_some() {
            return Err(s3_error!(
                InvalidArgument,
                "Server Side Encryption with Customer provided key is incompatible with the encryption method specified"
            ));
        }
        return Ok(SseRequest {
            algorithm: SseAlgorithm::SseC,
            kms_key_id: None,
            context: None,
            bucket_key: false,
            customer_key: Some(ck),
        });
    }
    let algorithm = match h("x-amz-server-side-encryption") {
        Some("AES256") => SseAlgorithm::Aes256,
        Some("aws:kms") => SseAlgorithm::AwsKms,
        Some("aws:kms:dsse") => SseAlgorithm::AwsKmsDsse,
        Some(other) => {
            return Err(s3_error!(
                InvalidArgument,
                "The encryption method specified is not supported"
            )
            .with_detail("ArgumentName", "x-amz-server-side-encryption")
            .with_detail("ArgumentValue", other))
        }
        None if h("x-amz-server-side-encryption-aws-kms-key-id").is_some() => {
            return Err(kms_key_id_requires_kms())
        }
        None => {
            let default = bucket.encryption.as_ref();
            let algorithm = default
                .map(|d| d.sse_algorithm)
                .unwrap_or(SseAlgorithm::Aes256);
            let kms_key_id = default.and_then(|d| d.kms_master_key_id.clone());
            let bucket_key =
                algorithm == SseAlgorithm::AwsKms && default.is_some_and(|d| d.bucket_key_enabled);
            return Ok(SseRequest {
                algorithm,
                kms_key_id,
                context: None,
                bucket_key,
                customer_key: None,
            });
        }
    };
    let kms_key_id = h("x-amz-server-side-encryption-aws-kms-key-id").map(str::to_string);
    if kms_key_id.is_some() && algorithm == SseAlgorithm::Aes256 {
        return Err(kms_key_id_requires_kms());
    }
    let context = match h("x-amz-server-side-encryption-context") {
        None => None,
        Some(b64) => Some(parse_context(b64)?),
    };
    let bucket_key = match h("x-amz-server-side-encryption-bucket-key-enabled") {
        Some(v) => v.eq_ignore_ascii_case("true"),
        None => bucket
            .encryption
            .as_ref()
            .is_some_and(|d| d.bucket_key_enabled && d.sse_algorithm == algorithm),
    } && algorithm == SseAlgorithm::AwsKms;
    Ok(SseRequest {
        algorithm,
        kms_key_id,
        context,
        bucket_key,
        customer_key: None,
    })
}

fn kms_key_id_requires_kms() -> S3Error {
    s3_error!(
        InvalidArgument,
        "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms"
    )
}

fn parse_context(b64: &str) -> S3Result<BTreeMap<String, String>> {
    use base64::Engine;
    let bad = || {
        s3_error!(
            InvalidArgument,
            "The header 'x-amz-server-side-encryption-context' shall be Base64-encoded UTF-8 string holding JSON which represents a string-string map"
        )
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| bad())?;
    serde_json::from_slice(&raw).map_err(|_| bad())
}

/// The S3 ARN of an object, bound as encryption context.
pub fn object_arn(bucket: &str, key: &str) -> String {
    format!("arn:aws:s3:::{bucket}/{key}")
}

/// The generation of a new version's envelope: random, not 0. UpdateObjectEncryption replaces an
/// envelope by compare-and-set on (version, generation); in an unversioned (or suspended) bucket
/// every write reuses version `null`, so a PUT racing a rewrap would otherwise present the same
/// generation as the version it replaced, and the rewrapped data key of the old version would be
/// attached to the new version's data. A random start (below 2^53, so bumps never overflow) makes
/// a replaced version's generation differ from the one read.
fn initial_generation() -> S3Result<u64> {
    let raw: [u8; 8] = coffer_crypto::random_bytes().map_err(S3Error::internal)?;
    Ok(u64::from_le_bytes(raw) >> 11)
}

/// Generates the data key of a new object version and wraps it as `req` says.
pub async fn new_object_key(
    state: &AppState,
    bucket: &str,
    key: &str,
    req: &SseRequest,
) -> S3Result<ObjectKey> {
    let mut context = BTreeMap::new();
    if let Some(user) = &req.context {
        context.extend(user.clone());
    }
    context.insert(S3_ARN_CONTEXT.to_string(), object_arn(bucket, key));
    if let Some(ck) = &req.customer_key {
        let dek = DataKey::generate().map_err(crate::error::S3Error::internal)?;
        let salt: [u8; 16] =
            coffer_crypto::random_bytes().map_err(crate::error::S3Error::internal)?;
        let aad = format!("{SSE_C_AAD}{}", object_arn(bucket, key));
        let wrapped_dek = coffer_crypto::wrap::seal(&ck.key, dek.as_bytes(), aad.as_bytes())
            .map_err(crate::error::S3Error::internal)?;
        let envelope = Envelope {
            v: FORMAT_VERSION,
            algorithm: SseAlgorithm::SseC,
            kms_key_arn: None,
            wrapped_dek,
            context,
            user_context: None,
            bucket_key_id: None,
            second_wrapped_dek: None,
            sse_c_key_hmac: Some(coffer_crypto::hmac_sha256(&salt, ck.key.as_ref()).to_vec()),
            sse_c_salt: Some(salt.to_vec()),
            sse_c_key_md5: Some(ck.md5_b64.clone()),
            generation: initial_generation()?,
        };
        return Ok(ObjectKey {
            keys: DataKeys::single(dek),
            envelope,
        });
    }
    let key_id = match req.algorithm {
        SseAlgorithm::Aes256 => state.config.sse_s3_key_arn.clone(),
        SseAlgorithm::AwsKms | SseAlgorithm::AwsKmsDsse => match &req.kms_key_id {
            Some(k) => k.clone(),
            None => aws_managed_s3_key(state).await?,
        },
        SseAlgorithm::SseC => {
            return Err(crate::error::S3Error::internal(
                "SSE-C request without a customer key",
            ))
        }
    };
    if req.algorithm == SseAlgorithm::AwsKmsDsse {
        // Two independent GenerateDataKey calls on the same KMS key, one per layer. S3 Bucket
        // Keys are not used with DSSE-KMS.
        context.remove(DSSE_LAYER_CONTEXT);
        let first = state
            .kms
            .generate_data_key(&key_id, &context, coffer_crypto::DEK_LEN)
            .await?;
        let inner = DataKey::from_slice(first.plaintext.as_deref().ok_or_else(|| {
            crate::error::S3Error::internal("KMS returned no plaintext data key")
        })?)
        .map_err(crate::error::S3Error::internal)?;
        // The second key under the same KMS key the first one resolved to.
        let second = state
            .kms
            .generate_data_key(
                &first.key_id,
                &outer_layer_context(&context),
                coffer_crypto::DEK_LEN,
            )
            .await?;
        let outer = DataKey::from_slice(second.plaintext.as_deref().ok_or_else(|| {
            crate::error::S3Error::internal("KMS returned no plaintext data key")
        })?)
        .map_err(crate::error::S3Error::internal)?;
        let envelope = Envelope {
            v: FORMAT_VERSION,
            algorithm: SseAlgorithm::AwsKmsDsse,
            kms_key_arn: Some(first.key_id),
            wrapped_dek: first.ciphertext_blob,
            context,
            user_context: req.context.clone(),
            bucket_key_id: None,
            second_wrapped_dek: Some(second.ciphertext_blob),
            sse_c_key_hmac: None,
            sse_c_salt: None,
            sse_c_key_md5: None,
            generation: initial_generation()?,
        };
        return Ok(ObjectKey {
            keys: DataKeys {
                inner,
                outer: Some(outer),
            },
            envelope,
        });
    }
    if req.bucket_key {
        let bk = crate::bucket_keys::active(state, bucket, &key_id).await?;
        let dek = DataKey::generate().map_err(crate::error::S3Error::internal)?;
        let wrapped_dek = bk.seal_dek(&dek, &object_arn(bucket, key))?;
        let envelope = Envelope {
            v: FORMAT_VERSION,
            algorithm: req.algorithm,
            kms_key_arn: Some(bk.kms_key_arn.clone()),
            wrapped_dek,
            context,
            user_context: req.context.clone(),
            bucket_key_id: Some(bk.id.clone()),
            second_wrapped_dek: None,
            sse_c_key_hmac: None,
            sse_c_salt: None,
            sse_c_key_md5: None,
            generation: initial_generation()?,
        };
        return Ok(ObjectKey {
            keys: DataKeys::single(dek),
            envelope,
        });
    }
    let generated = state
        .kms
        .generate_data_key(&key_id, &context, coffer_crypto::DEK_LEN)
        .await?;
    let plaintext = generated
        .plaintext
        .ok_or_else(|| crate::error::S3Error::internal("KMS returned no plaintext data key"))?;
    let dek = DataKey::from_slice(&plaintext).map_err(crate::error::S3Error::internal)?;
    let envelope = Envelope {
        v: FORMAT_VERSION,
        algorithm: req.algorithm,
        kms_key_arn: Some(generated.key_id),
        wrapped_dek: generated.ciphertext_blob,
        context,
        user_context: req.context.clone(),
        bucket_key_id: None,
        second_wrapped_dek: None,
        sse_c_key_hmac: None,
        sse_c_salt: None,
        sse_c_key_md5: None,
        generation: initial_generation()?,
    };
    Ok(ObjectKey {
        keys: DataKeys::single(dek),
        envelope,
    })
}

/// The encryption context of a DSSE-KMS object's second (outer) data key: the first one's plus
/// [`DSSE_LAYER_CONTEXT`] = `2`.
pub fn outer_layer_context(context: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut c = context.clone();
    c.insert(DSSE_LAYER_CONTEXT.to_string(), "2".to_string());
    c
}

/// The account's AWS-managed-style key for S3 (`alias/aws/s3`), created on first use.
pub async fn aws_managed_s3_key(state: &AppState) -> S3Result<String> {
    state
        .aws_managed_s3_key
        .get_or_try_init(|| resolve_aws_managed_s3_key(state))
        .await
        .cloned()
}

async fn resolve_aws_managed_s3_key(state: &AppState) -> S3Result<String> {
    const ALIAS: &str = "alias/aws/s3";
    match state.kms.describe_key(ALIAS).await {
        Ok(meta) => Ok(meta.arn),
        Err(coffer_kms::KmsError::NotFound(_)) => {
            let meta = state
                .kms
                .create_key(coffer_kms::CreateKeyRequest {
                    description:
                        "Default key that protects my S3 objects when no other key is defined"
                            .into(),
                    aws_managed: true,
                    tags: BTreeMap::new(),
                })
                .await?;
            match state.kms.create_reserved_alias(ALIAS, &meta.key_id).await {
                Ok(()) => Ok(meta.arn),
                // Another request created it first: use theirs, and retire the spare key.
                Err(coffer_kms::KmsError::AlreadyExists(_)) => {
                    if let Err(e) = state.kms.schedule_key_deletion(&meta.key_id, Some(7)).await {
                        tracing::warn!(key = %meta.arn, error = %e, "could not retire a spare alias/aws/s3 key");
                    }
                    Ok(state.kms.describe_key(ALIAS).await?.arn)
                }
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Unwraps the data key of a version for a read: SSE-C objects need the customer's key in
/// `headers` (400 when missing, 403 when wrong — checked before any data is read); for others
/// SSE-C headers are refused.
pub async fn open_for_read(
    state: &AppState,
    envelope: &Envelope,
    headers: &HeaderMap,
    which: CustomerKeyHeaders,
) -> S3Result<DataKeys> {
    let ck = customer_key(headers, which)?;
    if envelope.algorithm != SseAlgorithm::SseC {
        if ck.is_some() {
            return Err(s3_error!(
                InvalidRequest,
                "The encryption parameters are not applicable to this object."
            ));
        }
        return open_object_key(state, envelope).await;
    }
    let ck = ck.ok_or_else(|| {
        s3_error!(
            InvalidRequest,
            "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object."
        )
    })?;
    check_customer_key(envelope, &ck)?;
    let arn = envelope
        .context
        .get(S3_ARN_CONTEXT)
        .cloned()
        .unwrap_or_default();
    let plain = coffer_crypto::wrap::open(
        &ck.key,
        &envelope.wrapped_dek,
        format!("{SSE_C_AAD}{arn}").as_bytes(),
    )
    .map_err(|_| s3_error!(AccessDenied, "Access Denied"))?;
    Ok(DataKeys::single(
        DataKey::from_slice(&plain).map_err(crate::error::S3Error::internal)?,
    ))
}

/// Rejects a wrong SSE-C key with 403 by its salted HMAC (constant-time), before any data is read.
pub fn check_customer_key(envelope: &Envelope, ck: &CustomerKey) -> S3Result<()> {
    let (Some(salt), Some(tag)) = (&envelope.sse_c_salt, &envelope.sse_c_key_hmac) else {
        return Err(crate::error::S3Error::internal(
            "SSE-C envelope without key fingerprint",
        ));
    };
    if !coffer_crypto::hmac_sha256_verify(salt, ck.key.as_ref(), tag) {
        return Err(s3_error!(AccessDenied, "Access Denied"));
    }
    Ok(())
}

/// Unwraps an existing version's data keys (SSE-S3 / SSE-KMS / DSSE-KMS; SSE-C needs
/// [`open_for_read`]).
pub async fn open_object_key(state: &AppState, envelope: &Envelope) -> S3Result<DataKeys> {
    if let Some(id) = &envelope.bucket_key_id {
        if envelope.algorithm == SseAlgorithm::AwsKmsDsse {
            return Err(crate::error::S3Error::internal(
                "DSSE-KMS envelope with a bucket key",
            ));
        }
        let bk = crate::bucket_keys::by_id(state, id).await?;
        let arn = envelope
            .context
            .get(S3_ARN_CONTEXT)
            .cloned()
            .unwrap_or_default();
        return Ok(DataKeys::single(bk.open_dek(&envelope.wrapped_dek, &arn)?));
    }
    let key_arn = envelope.kms_key_arn.as_deref();
    match envelope.algorithm {
        SseAlgorithm::Aes256 | SseAlgorithm::AwsKms => Ok(DataKeys::single(
            unwrap_with_kms(state, &envelope.wrapped_dek, &envelope.context, key_arn).await?,
        )),
        SseAlgorithm::AwsKmsDsse => {
            let second = envelope.second_wrapped_dek.as_deref().ok_or_else(|| {
                crate::error::S3Error::internal("DSSE-KMS envelope without a second data key")
            })?;
            let inner =
                unwrap_with_kms(state, &envelope.wrapped_dek, &envelope.context, key_arn).await?;
            let outer_context = outer_layer_context(&envelope.context);
            let outer = unwrap_with_kms(state, second, &outer_context, key_arn).await?;
            Ok(DataKeys {
                inner,
                outer: Some(outer),
            })
        }
        SseAlgorithm::SseC => Err(crate::error::S3Error::internal(
            "SSE-C data key opened without the customer key",
        )),
    }
}

/// One KMS Decrypt of a wrapped data key.
async fn unwrap_with_kms(
    state: &AppState,
    wrapped: &[u8],
    context: &BTreeMap<String, String>,
    key_arn: Option<&str>,
) -> S3Result<DataKey> {
    let d = state.kms.decrypt(wrapped, context, key_arn).await?;
    DataKey::from_slice(&d.plaintext).map_err(crate::error::S3Error::internal)
}

/// The `x-amz-server-side-encryption*` response headers for an envelope.
pub fn response_headers(envelope: &Envelope) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    match envelope.algorithm {
        SseAlgorithm::Aes256 => out.push(("x-amz-server-side-encryption", "AES256".to_string())),
        SseAlgorithm::AwsKms | SseAlgorithm::AwsKmsDsse => {
            let alg = if envelope.algorithm == SseAlgorithm::AwsKms {
                "aws:kms"
            } else {
                "aws:kms:dsse"
            };
            out.push(("x-amz-server-side-encryption", alg.to_string()));
            if let Some(arn) = &envelope.kms_key_arn {
                out.push(("x-amz-server-side-encryption-aws-kms-key-id", arn.clone()));
            }
            if envelope.bucket_key_id.is_some() {
                out.push((
                    "x-amz-server-side-encryption-bucket-key-enabled",
                    "true".to_string(),
                ));
            }
        }
        SseAlgorithm::SseC => {
            out.push((
                "x-amz-server-side-encryption-customer-algorithm",
                "AES256".to_string(),
            ));
            if let Some(md5) = &envelope.sse_c_key_md5 {
                out.push(("x-amz-server-side-encryption-customer-key-MD5", md5.clone()));
            }
        }
    }
    out
}

/// `x-amz-server-side-encryption-context` for the responses that carry it (PutObject, CopyObject,
/// CreateMultipartUpload) when the request supplied a context: base64 of the JSON of the whole
/// context the data key is bound to — the caller's pairs merged with `aws:s3:arn` (the object's
/// ARN, or the bucket's when an S3 Bucket Key wraps the data key).
pub fn context_header(envelope: &Envelope, bucket: &str) -> Option<(&'static str, String)> {
    use base64::Engine;
    let user = envelope.user_context.as_ref()?;
    let mut merged = user.clone();
    let arn = if envelope.bucket_key_id.is_some() {
        format!("arn:aws:s3:::{bucket}")
    } else {
        envelope.context.get(S3_ARN_CONTEXT).cloned()?
    };
    merged.insert(S3_ARN_CONTEXT.to_string(), arn);
    let json = serde_json::to_vec(&merged).ok()?;
    Some((
        "x-amz-server-side-encryption-context",
        base64::engine::general_purpose::STANDARD.encode(json),
    ))
}

/// A new envelope for the same data key under `target_arn` (SSE-KMS), for UpdateObjectEncryption
/// and re-encryption jobs. Without Bucket Keys on either side this is one KMS ReEncrypt and the
/// plaintext data key never leaves the KMS. The caller sets the generation.
pub async fn rewrap(
    state: &AppState,
    bucket: &str,
    key: &str,
    env: &Envelope,
    target_arn: &str,
    bucket_key: bool,
) -> S3Result<Envelope> {
    if !matches!(env.algorithm, SseAlgorithm::Aes256 | SseAlgorithm::AwsKms) {
        return Err(crate::error::S3Error::internal(
            "only SSE-S3 and SSE-KMS data keys are rewrapped",
        ));
    }
    let context = env.context.clone();
    let (kms_key_arn, wrapped_dek, bucket_key_id) = match (&env.bucket_key_id, bucket_key) {
        (None, false) => {
            let r = state
                .kms
                .re_encrypt(
                    &env.wrapped_dek,
                    &env.context,
                    env.kms_key_arn.as_deref(),
                    target_arn,
                    &context,
                )
                .await?;
            (r.key_id, r.ciphertext_blob, None)
        }
        (_, true) => {
            let dek = open_object_key(state, env).await?.inner;
            let bk = crate::bucket_keys::active(state, bucket, target_arn).await?;
            let wrapped = bk.seal_dek(&dek, &object_arn(bucket, key))?;
            (bk.kms_key_arn.clone(), wrapped, Some(bk.id.clone()))
        }
        (Some(_), false) => {
            let dek = open_object_key(state, env).await?.inner;
            let e = state
                .kms
                .encrypt(target_arn, dek.as_bytes(), &context)
                .await?;
            (e.key_id, e.ciphertext_blob, None)
        }
    };
    Ok(Envelope {
        v: FORMAT_VERSION,
        algorithm: SseAlgorithm::AwsKms,
        kms_key_arn: Some(kms_key_arn),
        wrapped_dek,
        context,
        user_context: env.user_context.clone(),
        bucket_key_id,
        second_wrapped_dek: None,
        sse_c_key_hmac: None,
        sse_c_salt: None,
        sse_c_key_md5: None,
        generation: env.generation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_meta::{BucketEncryption, Versioning};

    fn bucket(encryption: Option<BucketEncryption>) -> BucketRecord {
        BucketRecord {
            v: 1,
            name: "b".into(),
            created_ms: 0,
            region: "us-east-1".into(),
            owner_id: "o".into(),
            versioning: Versioning::Unversioned,
            object_lock_enabled: false,
            default_retention: None,
            encryption,
            directory: false,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn kms_key_id_needs_a_kms_algorithm() {
        let kms_default = bucket(Some(BucketEncryption {
            sse_algorithm: SseAlgorithm::AwsKms,
            kms_master_key_id: Some("alias/k".into()),
            bucket_key_enabled: true,
            blocked_encryption_types: Vec::new(),
        }));
        for h in [
            headers(&[("x-amz-server-side-encryption-aws-kms-key-id", "alias/k")]),
            headers(&[
                ("x-amz-server-side-encryption", "AES256"),
                ("x-amz-server-side-encryption-aws-kms-key-id", "alias/k"),
            ]),
        ] {
            let e = requested(&h, &kms_default).unwrap_err();
            assert_eq!(e.code().as_str(), "InvalidArgument");
            assert_eq!(e.message(), "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms");
        }
        // DSSE-KMS is a valid request algorithm, with a key ID.
        let r = requested(
            &headers(&[
                ("x-amz-server-side-encryption", "aws:kms:dsse"),
                ("x-amz-server-side-encryption-aws-kms-key-id", "alias/k"),
            ]),
            &bucket(None),
        )
        .unwrap();
        assert_eq!(
            (r.algorithm, r.kms_key_id.as_deref(), r.bucket_key),
            (SseAlgorithm::AwsKmsDsse, Some("alias/k"), false)
        );
        // No headers: the bucket default, Bucket Key included.
        let r = requested(&HeaderMap::new(), &kms_default).unwrap();
        assert_eq!(
            (r.algorithm, r.kms_key_id.as_deref(), r.bucket_key),
            (SseAlgorithm::AwsKms, Some("alias/k"), true)
        );
    }

    #[test]
    fn context_header_merges_the_s3_arn() {
        use base64::Engine;
        let mut env = Envelope {
            v: FORMAT_VERSION,
            algorithm: SseAlgorithm::AwsKms,
            kms_key_arn: Some("arn:aws:kms:us-east-1:000000000000:key/k".into()),
            wrapped_dek: Vec::new(),
            context: BTreeMap::from([
                (S3_ARN_CONTEXT.to_string(), object_arn("b", "k")),
                ("a".to_string(), "1".to_string()),
            ]),
            user_context: None,
            bucket_key_id: None,
            second_wrapped_dek: None,
            sse_c_key_hmac: None,
            sse_c_salt: None,
            sse_c_key_md5: None,
            generation: 7,
        };
        assert_eq!(context_header(&env, "b"), None);
        env.user_context = Some(BTreeMap::from([("a".to_string(), "1".to_string())]));
        let decode = |env: &Envelope| {
            let (name, v) = context_header(env, "b").unwrap();
            assert_eq!(name, "x-amz-server-side-encryption-context");
            let raw = base64::engine::general_purpose::STANDARD.decode(v).unwrap();
            serde_json::from_slice::<BTreeMap<String, String>>(&raw).unwrap()
        };
        assert_eq!(
            decode(&env),
            BTreeMap::from([
                ("a".to_string(), "1".to_string()),
                ("aws:s3:arn".to_string(), "arn:aws:s3:::b/k".to_string()),
            ])
        );
        env.bucket_key_id = Some("bk".into());
        assert_eq!(decode(&env)["aws:s3:arn"], "arn:aws:s3:::b");
    }

    #[test]
    fn dsse_ignores_bucket_keys_and_marks_the_second_layer() {
        // AWS: "S3 Bucket Keys aren't supported for DSSE-KMS" — neither from the request nor
        // from a bucket default.
        let r = requested(
            &headers(&[
                ("x-amz-server-side-encryption", "aws:kms:dsse"),
                ("x-amz-server-side-encryption-bucket-key-enabled", "true"),
            ]),
            &bucket(None),
        )
        .unwrap();
        assert_eq!(
            (r.algorithm, r.bucket_key),
            (SseAlgorithm::AwsKmsDsse, false)
        );
        let dsse_default = bucket(Some(BucketEncryption {
            sse_algorithm: SseAlgorithm::AwsKmsDsse,
            kms_master_key_id: Some("alias/k".into()),
            bucket_key_enabled: true,
            blocked_encryption_types: Vec::new(),
        }));
        let r = requested(&HeaderMap::new(), &dsse_default).unwrap();
        assert_eq!(
            (r.algorithm, r.kms_key_id.as_deref(), r.bucket_key),
            (SseAlgorithm::AwsKmsDsse, Some("alias/k"), false)
        );
        // The second data key's context is the first's plus the layer marker.
        let first = BTreeMap::from([(S3_ARN_CONTEXT.to_string(), object_arn("b", "k"))]);
        let second = outer_layer_context(&first);
        assert_ne!(first, second);
        assert_eq!(second[DSSE_LAYER_CONTEXT], "2");
        assert_eq!(second[S3_ARN_CONTEXT], "arn:aws:s3:::b/k");
        assert_eq!(second.len(), 2);
        // No Bucket Key header for a DSSE-KMS envelope.
        let env = Envelope {
            v: FORMAT_VERSION,
            algorithm: SseAlgorithm::AwsKmsDsse,
            kms_key_arn: Some("arn:aws:kms:us-east-1:000000000000:key/k".into()),
            wrapped_dek: vec![1],
            context: first,
            user_context: None,
            bucket_key_id: None,
            second_wrapped_dek: Some(vec![2]),
            sse_c_key_hmac: None,
            sse_c_salt: None,
            sse_c_key_md5: None,
            generation: 1,
        };
        assert_eq!(
            response_headers(&env),
            vec![
                ("x-amz-server-side-encryption", "aws:kms:dsse".to_string()),
                (
                    "x-amz-server-side-encryption-aws-kms-key-id",
                    "arn:aws:kms:us-east-1:000000000000:key/k".to_string()
                ),
            ]
        );
        assert_eq!(layers(&env), 2);
    }

    #[test]
    fn initial_generations_differ() {
        let a = initial_generation().unwrap();
        let b = initial_generation().unwrap();
        assert_ne!(a, b);
        assert!(a < 1 << 53 && b < 1 << 53);
    }
}
