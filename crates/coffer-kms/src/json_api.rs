//! The AWS KMS JSON 1.1 API (`X-Amz-Target: TrentService.<Op>`) over any [`Kms`], with no
//! HTTP and no authentication: the caller verifies SigV4 (service `kms`) and passes the
//! operation name and body; [`dispatch`] returns the status and JSON body to send with
//! `Content-Type: application/x-amz-json-1.1`.
//!
//! Field names are AWS's. Blobs (`Plaintext`, `CiphertextBlob`) are base64; dates are epoch
//! seconds as JSON numbers. Errors are `{"__type": "<Exception>", "message": "..."}`, status 400
//! except `KMSInternalException` (500) and `DependencyTimeoutException` (503).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use crate::kms::*;
use crate::KmsError;

/// `Content-Type` of requests and responses.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// The `X-Amz-Target` prefix of KMS operations.
pub const TARGET_PREFIX: &str = "TrentService.";

/// Runs one KMS operation. `target_op` is the operation (`GenerateDataKey`) or the whole
/// `X-Amz-Target` value (`TrentService.GenerateDataKey`). Returns the HTTP status and JSON body.
pub async fn dispatch(kms: &dyn Kms, target_op: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let op = target_op.strip_prefix(TARGET_PREFIX).unwrap_or(target_op);
    match run(kms, op, body).await {
        Ok(v) => (200, serde_json::to_vec(&v).expect("JSON value serializes")),
        Err(e) => error_response(&e),
    }
}

/// An error of the JSON API: a KMS error or a protocol-level one.
#[derive(Debug)]
enum ApiError {
    Kms(KmsError),
    /// `(__type, message)` of errors `KmsError` has no variant for.
    Other(&'static str, String),
}

impl From<KmsError> for ApiError {
    fn from(e: KmsError) -> Self {
        ApiError::Kms(e)
    }
}

fn validation(msg: impl Into<String>) -> ApiError {
    ApiError::Kms(KmsError::Validation(msg.into()))
}

fn error_response(e: &ApiError) -> (u16, Vec<u8>) {
    let (status, name, msg) = match e {
        ApiError::Kms(k) => {
            let status = match k {
                KmsError::Internal(_) => 500,
                KmsError::Unavailable(_) => 503,
                _ => 400,
            };
            (status, k.aws_name(), k.message().to_owned())
        }
        ApiError::Other(name, msg) => (400, *name, msg.clone()),
    };
    (
        status,
        serde_json::to_vec(&json!({"__type": name, "message": msg}))
            .expect("JSON value serializes"),
    )
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| ApiError::Other("SerializationException", format!("Malformed request: {e}")))
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn unb64(field: &str, s: &str) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    B64.decode(s)
        .map(Zeroizing::new)
        .map_err(|_| validation(format!("{field} is not valid base64")))
}

fn required<T>(field: &str, v: Option<T>) -> Result<T, ApiError> {
    v.ok_or_else(|| {
        validation(format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
            lower_first(field)
        ))
    })
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_lowercase().to_string() + c.as_str())
        .unwrap_or_default()
}

fn page_json<T>(field: &str, p: Page<T>, item: impl Fn(T) -> Value) -> Value {
    let mut m = Map::new();
    m.insert(
        field.into(),
        Value::Array(p.items.into_iter().map(item).collect()),
    );
    m.insert("Truncated".into(), Value::Bool(p.next_marker.is_some()));
    if let Some(nm) = p.next_marker {
        m.insert("NextMarker".into(), Value::String(nm));
    }
    Value::Object(m)
}

/// `KeyMetadata` as AWS returns it.
pub fn key_metadata_json(m: &KeyMetadata) -> Value {
    let mut v = json!({
        "AWSAccountId": m.aws_account_id,
        "KeyId": m.key_id,
        "Arn": m.arn,
        "CreationDate": m.creation_date,
        "Enabled": m.enabled,
        "Description": m.description,
        "KeyUsage": "ENCRYPT_DECRYPT",
        "KeyState": m.key_state.as_str(),
        "KeyManager": match m.key_manager { KeyManager::Aws => "AWS", KeyManager::Customer => "CUSTOMER" },
        "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
        "KeySpec": "SYMMETRIC_DEFAULT",
        "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
        "Origin": "AWS_KMS",
        "MultiRegion": false,
    });
    let o = v.as_object_mut().expect("object");
    if let Some(d) = m.deletion_date {
        o.insert("DeletionDate".into(), json!(d));
    }
    if let Some(w) = m.pending_deletion_window_in_days {
        o.insert("PendingDeletionWindowInDays".into(), json!(w));
    }
    v
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyIdReq {
    key_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    tag_key: String,
    tag_value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateKeyReq {
    description: Option<String>,
    key_usage: Option<String>,
    key_spec: Option<String>,
    customer_master_key_spec: Option<String>,
    origin: Option<String>,
    multi_region: Option<bool>,
    tags: Option<Vec<Tag>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListReq {
    key_id: Option<String>,
    limit: Option<u32>,
    marker: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AliasReq {
    alias_name: Option<String>,
    target_key_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ScheduleReq {
    key_id: Option<String>,
    pending_window_in_days: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RotationReq {
    key_id: Option<String>,
    rotation_period_in_days: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptReq {
    key_id: Option<String>,
    plaintext: Option<String>,
    #[serde(default)]
    encryption_context: EncryptionContext,
    encryption_algorithm: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptReq {
    ciphertext_blob: Option<String>,
    #[serde(default)]
    encryption_context: EncryptionContext,
    key_id: Option<String>,
    encryption_algorithm: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReEncryptReq {
    ciphertext_blob: Option<String>,
    #[serde(default)]
    source_encryption_context: EncryptionContext,
    source_key_id: Option<String>,
    destination_key_id: Option<String>,
    #[serde(default)]
    destination_encryption_context: EncryptionContext,
    source_encryption_algorithm: Option<String>,
    destination_encryption_algorithm: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DataKeyReq {
    key_id: Option<String>,
    #[serde(default)]
    encryption_context: EncryptionContext,
    number_of_bytes: Option<usize>,
    key_spec: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RandomReq {
    number_of_bytes: Option<usize>,
}

fn check_algorithm(field: &str, a: Option<&str>) -> Result<(), ApiError> {
    match a {
        None | Some("SYMMETRIC_DEFAULT") => Ok(()),
        Some(other) => Err(validation(format!(
            "{field} {other} is not supported; only SYMMETRIC_DEFAULT"
        ))),
    }
}

fn data_key_len(r: &DataKeyReq) -> Result<usize, ApiError> {
    match (r.number_of_bytes, r.key_spec.as_deref()) {
        (Some(_), Some(_)) => Err(validation(
            "Specify either KeySpec or NumberOfBytes, not both",
        )),
        (None, None) => Err(validation("Specify either KeySpec or NumberOfBytes")),
        (Some(n), None) => Ok(n),
        (None, Some("AES_256")) => Ok(32),
        (None, Some("AES_128")) => Ok(16),
        (None, Some(s)) => Err(validation(format!(
            "1 validation error detected: Value '{s}' at 'keySpec' failed to satisfy constraint: \
             Member must satisfy enum value set: [AES_256, AES_128]"
        ))),
    }
}

async fn run(kms: &dyn Kms, op: &str, body: &[u8]) -> Result<Value, ApiError> {
    Ok(match op {
        "CreateKey" => {
            let r: CreateKeyReq = parse(body)?;
            if r.key_usage
                .as_deref()
                .is_some_and(|u| u != "ENCRYPT_DECRYPT")
            {
                return Err(validation("Only KeyUsage ENCRYPT_DECRYPT is supported"));
            }
            for spec in [r.key_spec.as_deref(), r.customer_master_key_spec.as_deref()]
                .into_iter()
                .flatten()
            {
                if spec != "SYMMETRIC_DEFAULT" {
                    return Err(validation(format!(
                        "KeySpec {spec} is not supported; only SYMMETRIC_DEFAULT"
                    )));
                }
            }
            if r.origin.as_deref().is_some_and(|o| o != "AWS_KMS") {
                return Err(ApiError::Other(
                    "UnsupportedOperationException",
                    "Only Origin AWS_KMS is supported".into(),
                ));
            }
            if r.multi_region == Some(true) {
                return Err(ApiError::Other(
                    "UnsupportedOperationException",
                    "Multi-Region keys are not supported".into(),
                ));
            }
            let tags = r
                .tags
                .unwrap_or_default()
                .into_iter()
                .map(|t| (t.tag_key, t.tag_value))
                .collect();
            let req = CreateKeyRequest {
                description: r.description.unwrap_or_default(),
                aws_managed: false,
                tags,
            };
            json!({ "KeyMetadata": key_metadata_json(&kms.create_key(req).await?) })
        }
        "DescribeKey" => {
            let r: KeyIdReq = parse(body)?;
            json!({ "KeyMetadata": key_metadata_json(&kms.describe_key(&required("KeyId", r.key_id)?).await?) })
        }
        "ListKeys" => {
            let r: ListReq = parse(body)?;
            let p = kms.list_keys(r.limit, r.marker.as_deref()).await?;
            page_json(
                "Keys",
                p,
                |k| json!({ "KeyId": k.key_id, "KeyArn": k.key_arn }),
            )
        }
        "CreateAlias" | "UpdateAlias" => {
            let r: AliasReq = parse(body)?;
            let (a, t) = (
                required("AliasName", r.alias_name)?,
                required("TargetKeyId", r.target_key_id)?,
            );
            if op == "CreateAlias" {
                kms.create_alias(&a, &t).await?;
            } else {
                kms.update_alias(&a, &t).await?;
            }
            json!({})
        }
        "DeleteAlias" => {
            let r: AliasReq = parse(body)?;
            kms.delete_alias(&required("AliasName", r.alias_name)?)
                .await?;
            json!({})
        }
        "ListAliases" => {
            let r: ListReq = parse(body)?;
            let p = kms
                .list_aliases(r.key_id.as_deref(), r.limit, r.marker.as_deref())
                .await?;
            page_json("Aliases", p, |a| {
                json!({
                    "AliasName": a.alias_name,
                    "AliasArn": a.alias_arn,
                    "TargetKeyId": a.target_key_id,
                    "CreationDate": a.creation_date,
                    "LastUpdatedDate": a.creation_date,
                })
            })
        }
        "EnableKey" | "DisableKey" | "DisableKeyRotation" => {
            let r: KeyIdReq = parse(body)?;
            let k = required("KeyId", r.key_id)?;
            match op {
                "EnableKey" => kms.enable_key(&k).await?,
                "DisableKey" => kms.disable_key(&k).await?,
                _ => kms.disable_key_rotation(&k).await?,
            }
            json!({})
        }
        "ScheduleKeyDeletion" => {
            let r: ScheduleReq = parse(body)?;
            let m = kms
                .schedule_key_deletion(&required("KeyId", r.key_id)?, r.pending_window_in_days)
                .await?;
            json!({
                "KeyId": m.arn,
                "DeletionDate": m.deletion_date,
                "KeyState": m.key_state.as_str(),
                "PendingWindowInDays": m.pending_deletion_window_in_days,
            })
        }
        "CancelKeyDeletion" => {
            let r: KeyIdReq = parse(body)?;
            json!({ "KeyId": kms.cancel_key_deletion(&required("KeyId", r.key_id)?).await?.arn })
        }
        "EnableKeyRotation" => {
            let r: RotationReq = parse(body)?;
            kms.enable_key_rotation(&required("KeyId", r.key_id)?, r.rotation_period_in_days)
                .await?;
            json!({})
        }
        "GetKeyRotationStatus" => {
            let r: KeyIdReq = parse(body)?;
            let s = kms
                .get_key_rotation_status(&required("KeyId", r.key_id)?)
                .await?;
            let mut v = json!({ "KeyId": s.key_id, "KeyRotationEnabled": s.enabled });
            let o = v.as_object_mut().expect("object");
            if let Some(p) = s.rotation_period_in_days {
                o.insert("RotationPeriodInDays".into(), json!(p));
            }
            if let Some(d) = s.next_rotation_date {
                o.insert("NextRotationDate".into(), json!(d));
            }
            if let Some(d) = s.on_demand_rotation_start_date {
                o.insert("OnDemandRotationStartDate".into(), json!(d));
            }
            v
        }
        "RotateKeyOnDemand" => {
            let r: KeyIdReq = parse(body)?;
            json!({ "KeyId": kms.rotate_key_on_demand(&required("KeyId", r.key_id)?).await? })
        }
        "ListKeyRotations" => {
            let r: ListReq = parse(body)?;
            let p = kms
                .list_key_rotations(&required("KeyId", r.key_id)?, r.limit, r.marker.as_deref())
                .await?;
            page_json(
                "Rotations",
                p,
                |e| json!({ "KeyId": e.key_id, "RotationDate": e.rotation_date, "RotationType": e.rotation_type }),
            )
        }
        "Encrypt" => {
            let r: EncryptReq = parse(body)?;
            check_algorithm("EncryptionAlgorithm", r.encryption_algorithm.as_deref())?;
            let pt = unb64("Plaintext", &required("Plaintext", r.plaintext)?)?;
            let e = kms
                .encrypt(&required("KeyId", r.key_id)?, &pt, &r.encryption_context)
                .await?;
            json!({
                "CiphertextBlob": b64(&e.ciphertext_blob),
                "KeyId": e.key_id,
                "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
            })
        }
        "Decrypt" => {
            let r: DecryptReq = parse(body)?;
            check_algorithm("EncryptionAlgorithm", r.encryption_algorithm.as_deref())?;
            let blob = unb64(
                "CiphertextBlob",
                &required("CiphertextBlob", r.ciphertext_blob)?,
            )?;
            let d = kms
                .decrypt(&blob, &r.encryption_context, r.key_id.as_deref())
                .await?;
            let pt = Zeroizing::new(b64(&d.plaintext));
            json!({ "KeyId": d.key_id, "Plaintext": *pt, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT" })
        }
        "ReEncrypt" => {
            let r: ReEncryptReq = parse(body)?;
            check_algorithm(
                "SourceEncryptionAlgorithm",
                r.source_encryption_algorithm.as_deref(),
            )?;
            check_algorithm(
                "DestinationEncryptionAlgorithm",
                r.destination_encryption_algorithm.as_deref(),
            )?;
            let blob = unb64(
                "CiphertextBlob",
                &required("CiphertextBlob", r.ciphertext_blob)?,
            )?;
            let e = kms
                .re_encrypt(
                    &blob,
                    &r.source_encryption_context,
                    r.source_key_id.as_deref(),
                    &required("DestinationKeyId", r.destination_key_id)?,
                    &r.destination_encryption_context,
                )
                .await?;
            json!({
                "CiphertextBlob": b64(&e.ciphertext_blob),
                "SourceKeyId": e.source_key_id,
                "KeyId": e.key_id,
                "SourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
                "DestinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
            })
        }
        "GenerateDataKey" | "GenerateDataKeyWithoutPlaintext" => {
            let r: DataKeyReq = parse(body)?;
            let n = data_key_len(&r)?;
            let k = required("KeyId", r.key_id)?;
            if op == "GenerateDataKey" {
                let g = kms.generate_data_key(&k, &r.encryption_context, n).await?;
                let pt = Zeroizing::new(b64(g
                    .plaintext
                    .as_deref()
                    .map(Vec::as_slice)
                    .unwrap_or_default()));
                json!({ "CiphertextBlob": b64(&g.ciphertext_blob), "Plaintext": *pt, "KeyId": g.key_id })
            } else {
                let g = kms
                    .generate_data_key_without_plaintext(&k, &r.encryption_context, n)
                    .await?;
                json!({ "CiphertextBlob": b64(&g.ciphertext_blob), "KeyId": g.key_id })
            }
        }
        "GenerateRandom" => {
            let r: RandomReq = parse(body)?;
            let bytes = Zeroizing::new(
                kms.generate_random(required("NumberOfBytes", r.number_of_bytes)?)
                    .await?,
            );
            json!({ "Plaintext": b64(&bytes) })
        }
        other => {
            return Err(ApiError::Other(
                "UnknownOperationException",
                format!("Operation {other} is not supported by this KMS"),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::LocalKms;

    fn kms() -> (tempfile::TempDir, LocalKms) {
        let dir = tempfile::tempdir().unwrap();
        let k = LocalKms::open(
            dir.path(),
            Zeroizing::new([4u8; 32]),
            "eu-west-1",
            "123456789012",
        )
        .unwrap();
        (dir, k)
    }

    async fn call(k: &LocalKms, op: &str, body: Value) -> (u16, Value) {
        let (s, b) = dispatch(
            k,
            &format!("TrentService.{op}"),
            body.to_string().as_bytes(),
        )
        .await;
        (s, serde_json::from_slice(&b).expect("response is JSON"))
    }

    async fn ok(k: &LocalKms, op: &str, body: Value) -> Value {
        let (s, v) = call(k, op, body).await;
        assert_eq!(s, 200, "{op}: {v}");
        v
    }

    fn keys_of(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort();
        k
    }

    #[tokio::test]
    async fn create_and_describe_key_shape() {
        let (_d, k) = kms();
        let v = ok(
            &k,
            "CreateKey",
            json!({"Description": "d", "KeyUsage": "ENCRYPT_DECRYPT",
            "Tags": [{"TagKey": "a", "TagValue": "b"}]}),
        )
        .await;
        let m = &v["KeyMetadata"];
        assert_eq!(
            keys_of(m),
            vec![
                "AWSAccountId",
                "Arn",
                "CreationDate",
                "CustomerMasterKeySpec",
                "Description",
                "Enabled",
                "EncryptionAlgorithms",
                "KeyId",
                "KeyManager",
                "KeySpec",
                "KeyState",
                "KeyUsage",
                "MultiRegion",
                "Origin"
            ]
        );
        let id = m["KeyId"].as_str().unwrap();
        assert_eq!(
            m["Arn"],
            format!("arn:aws:kms:eu-west-1:123456789012:key/{id}")
        );
        assert_eq!(m["AWSAccountId"], "123456789012");
        assert!(m["CreationDate"].is_i64());
        assert_eq!(m["Enabled"], true);
        assert_eq!(m["KeyState"], "Enabled");
        assert_eq!(m["KeyManager"], "CUSTOMER");
        assert_eq!(m["KeyUsage"], "ENCRYPT_DECRYPT");
        assert_eq!(m["KeySpec"], "SYMMETRIC_DEFAULT");
        assert_eq!(m["EncryptionAlgorithms"], json!(["SYMMETRIC_DEFAULT"]));
        assert_eq!(m["Origin"], "AWS_KMS");
        assert_eq!(m["MultiRegion"], false);
        let d = ok(&k, "DescribeKey", json!({"KeyId": id})).await;
        assert_eq!(d["KeyMetadata"], *m);

        let s = ok(
            &k,
            "ScheduleKeyDeletion",
            json!({"KeyId": id, "PendingWindowInDays": 7}),
        )
        .await;
        assert_eq!(
            keys_of(&s),
            vec!["DeletionDate", "KeyId", "KeyState", "PendingWindowInDays"]
        );
        assert_eq!(s["KeyId"], m["Arn"]);
        assert_eq!(s["KeyState"], "PendingDeletion");
        assert_eq!(s["PendingWindowInDays"], 7);
        assert_eq!(
            s["DeletionDate"].as_i64().unwrap(),
            m["CreationDate"].as_i64().unwrap() + 7 * 86400
        );
        let d = ok(&k, "DescribeKey", json!({"KeyId": id})).await;
        assert_eq!(d["KeyMetadata"]["PendingDeletionWindowInDays"], 7);
        assert_eq!(d["KeyMetadata"]["DeletionDate"], s["DeletionDate"]);
        assert_eq!(d["KeyMetadata"]["Enabled"], false);
        assert_eq!(
            ok(&k, "CancelKeyDeletion", json!({"KeyId": id})).await,
            json!({"KeyId": m["Arn"]})
        );
    }

    #[tokio::test]
    async fn crypto_round_trip_shapes() {
        let (_d, k) = kms();
        let id = ok(&k, "CreateKey", json!({})).await["KeyMetadata"]["KeyId"]
            .as_str()
            .unwrap()
            .to_owned();
        let arn = format!("arn:aws:kms:eu-west-1:123456789012:key/{id}");
        let ctx = json!({"aws:s3:arn": "arn:aws:s3:::b/k"});
        let e = ok(
            &k,
            "Encrypt",
            json!({"KeyId": id, "Plaintext": B64.encode(b"hello"), "EncryptionContext": ctx}),
        )
        .await;
        assert_eq!(
            keys_of(&e),
            vec!["CiphertextBlob", "EncryptionAlgorithm", "KeyId"]
        );
        assert_eq!(e["KeyId"], arn);
        let d = ok(
            &k,
            "Decrypt",
            json!({"CiphertextBlob": e["CiphertextBlob"], "EncryptionContext": ctx}),
        )
        .await;
        assert_eq!(
            keys_of(&d),
            vec!["EncryptionAlgorithm", "KeyId", "Plaintext"]
        );
        assert_eq!(d["Plaintext"], B64.encode(b"hello"));
        assert_eq!(d["KeyId"], arn);

        let g = ok(
            &k,
            "GenerateDataKey",
            json!({"KeyId": id, "KeySpec": "AES_256", "EncryptionContext": ctx}),
        )
        .await;
        assert_eq!(keys_of(&g), vec!["CiphertextBlob", "KeyId", "Plaintext"]);
        assert_eq!(
            B64.decode(g["Plaintext"].as_str().unwrap()).unwrap().len(),
            32
        );
        let g16 = ok(
            &k,
            "GenerateDataKey",
            json!({"KeyId": id, "KeySpec": "AES_128"}),
        )
        .await;
        assert_eq!(
            B64.decode(g16["Plaintext"].as_str().unwrap())
                .unwrap()
                .len(),
            16
        );
        let g7 = ok(
            &k,
            "GenerateDataKey",
            json!({"KeyId": id, "NumberOfBytes": 7}),
        )
        .await;
        assert_eq!(
            B64.decode(g7["Plaintext"].as_str().unwrap()).unwrap().len(),
            7
        );
        let w = ok(
            &k,
            "GenerateDataKeyWithoutPlaintext",
            json!({"KeyId": id, "KeySpec": "AES_256"}),
        )
        .await;
        assert_eq!(keys_of(&w), vec!["CiphertextBlob", "KeyId"]);

        let id2 = ok(&k, "CreateKey", json!({})).await["KeyMetadata"]["KeyId"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = ok(
            &k,
            "ReEncrypt",
            json!({"CiphertextBlob": g["CiphertextBlob"], "SourceEncryptionContext": ctx,
            "DestinationKeyId": id2, "DestinationEncryptionContext": {"x": "y"}}),
        )
        .await;
        assert_eq!(
            keys_of(&r),
            vec![
                "CiphertextBlob",
                "DestinationEncryptionAlgorithm",
                "KeyId",
                "SourceEncryptionAlgorithm",
                "SourceKeyId"
            ]
        );
        assert_eq!(r["SourceKeyId"], arn);
        let d = ok(
            &k,
            "Decrypt",
            json!({"CiphertextBlob": r["CiphertextBlob"], "EncryptionContext": {"x": "y"}}),
        )
        .await;
        assert_eq!(d["Plaintext"], g["Plaintext"]);

        let rnd = ok(&k, "GenerateRandom", json!({"NumberOfBytes": 24})).await;
        assert_eq!(
            B64.decode(rnd["Plaintext"].as_str().unwrap())
                .unwrap()
                .len(),
            24
        );
    }

    #[tokio::test]
    async fn lists_aliases_and_rotation_shapes() {
        let (_d, k) = kms();
        let id = ok(&k, "CreateKey", json!({})).await["KeyMetadata"]["KeyId"]
            .as_str()
            .unwrap()
            .to_owned();
        ok(&k, "CreateKey", json!({})).await;
        assert_eq!(
            ok(
                &k,
                "CreateAlias",
                json!({"AliasName": "alias/app", "TargetKeyId": id})
            )
            .await,
            json!({})
        );
        let l = ok(&k, "ListKeys", json!({"Limit": 1})).await;
        assert_eq!(l["Truncated"], true);
        assert_eq!(l["Keys"].as_array().unwrap().len(), 1);
        assert_eq!(keys_of(&l["Keys"][0]), vec!["KeyArn", "KeyId"]);
        let l2 = ok(
            &k,
            "ListKeys",
            json!({"Limit": 1, "Marker": l["NextMarker"]}),
        )
        .await;
        assert_eq!(l2["Truncated"], false);
        assert!(l2.get("NextMarker").is_none());
        assert_ne!(l2["Keys"][0]["KeyId"], l["Keys"][0]["KeyId"]);

        let a = ok(&k, "ListAliases", json!({"KeyId": id})).await;
        assert_eq!(a["Truncated"], false);
        let e = &a["Aliases"][0];
        assert_eq!(
            keys_of(e),
            vec![
                "AliasArn",
                "AliasName",
                "CreationDate",
                "LastUpdatedDate",
                "TargetKeyId"
            ]
        );
        assert_eq!(
            e["AliasArn"],
            "arn:aws:kms:eu-west-1:123456789012:alias/app"
        );
        assert_eq!(e["TargetKeyId"], id);

        assert_eq!(
            ok(
                &k,
                "EnableKeyRotation",
                json!({"KeyId": "alias/app", "RotationPeriodInDays": 180})
            )
            .await,
            json!({})
        );
        let s = ok(&k, "GetKeyRotationStatus", json!({"KeyId": id})).await;
        assert_eq!(
            keys_of(&s),
            vec![
                "KeyId",
                "KeyRotationEnabled",
                "NextRotationDate",
                "RotationPeriodInDays"
            ]
        );
        assert_eq!(s["KeyRotationEnabled"], true);
        assert_eq!(s["RotationPeriodInDays"], 180);
        assert_eq!(
            ok(&k, "RotateKeyOnDemand", json!({"KeyId": id})).await,
            json!({"KeyId": id})
        );
        let r = ok(&k, "ListKeyRotations", json!({"KeyId": id})).await;
        assert_eq!(r["Truncated"], false);
        assert_eq!(
            keys_of(&r["Rotations"][0]),
            vec!["KeyId", "RotationDate", "RotationType"]
        );
        assert_eq!(r["Rotations"][0]["RotationType"], "ON_DEMAND");
        assert_eq!(ok(&k, "DisableKey", json!({"KeyId": id})).await, json!({}));
        assert_eq!(ok(&k, "EnableKey", json!({"KeyId": id})).await, json!({}));
        assert_eq!(
            ok(&k, "DeleteAlias", json!({"AliasName": "alias/app"})).await,
            json!({})
        );
    }

    #[tokio::test]
    async fn errors_are_aws_shaped() {
        let (_d, k) = kms();
        let absent = uuid::Uuid::new_v4().to_string();
        let (s, v) = call(&k, "DescribeKey", json!({"KeyId": absent})).await;
        assert_eq!(s, 400);
        assert_eq!(keys_of(&v), vec!["__type", "message"]);
        assert_eq!(v["__type"], "NotFoundException");

        let (s, v) = call(&k, "DescribeKey", json!({})).await;
        assert_eq!(
            (s, v["__type"].as_str().unwrap()),
            (400, "ValidationException")
        );
        assert!(v["message"].as_str().unwrap().contains("'keyId'"), "{v}");

        let (s, b) = dispatch(&k, "TrentService.DescribeKey", b"{not json").await;
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(
            (s, v["__type"].as_str().unwrap()),
            (400, "SerializationException")
        );

        let (s, v) = call(&k, "PutKeyPolicy", json!({})).await;
        assert_eq!(
            (s, v["__type"].as_str().unwrap()),
            (400, "UnknownOperationException")
        );

        let id = ok(&k, "CreateKey", json!({})).await["KeyMetadata"]["KeyId"]
            .as_str()
            .unwrap()
            .to_owned();
        for body in [
            json!({"KeyId": id}),
            json!({"KeyId": id, "KeySpec": "AES_256", "NumberOfBytes": 32}),
            json!({"KeyId": id, "KeySpec": "AES_512"}),
            json!({"KeyId": id, "NumberOfBytes": 2000}),
        ] {
            let (s, v) = call(&k, "GenerateDataKey", body.clone()).await;
            assert_eq!(
                (s, v["__type"].as_str().unwrap()),
                (400, "ValidationException"),
                "{body}"
            );
        }
        let e = ok(
            &k,
            "Encrypt",
            json!({"KeyId": id, "Plaintext": "aGk=", "EncryptionContext": {"a": "b"}}),
        )
        .await;
        let (s, v) = call(
            &k,
            "Decrypt",
            json!({"CiphertextBlob": e["CiphertextBlob"], "EncryptionContext": {"a": "c"}}),
        )
        .await;
        assert_eq!(
            (s, v["__type"].as_str().unwrap()),
            (400, "InvalidCiphertextException")
        );
        let (s, v) = call(&k, "Encrypt", json!({"KeyId": id, "Plaintext": "!!"})).await;
        assert_eq!(
            (s, v["__type"].as_str().unwrap()),
            (400, "ValidationException")
        );
        let (s, v) = call(&k, "CreateKey", json!({"KeySpec": "RSA_2048"})).await;
        assert_eq!(
            (s, v["__type"].as_str().unwrap()),
            (400, "ValidationException")
        );
        ok(&k, "DisableKey", json!({"KeyId": id})).await;
        let (s, v) = call(&k, "Encrypt", json!({"KeyId": id, "Plaintext": "aGk="})).await;
        assert_eq!(
            (s, v["__type"].as_str().unwrap()),
            (400, "DisabledException")
        );
    }

    #[test]
    fn status_of_server_side_errors() {
        let (s, b) = error_response(&ApiError::Kms(KmsError::Unavailable("down".into())));
        assert_eq!(s, 503);
        assert_eq!(
            serde_json::from_slice::<Value>(&b).unwrap(),
            json!({"__type": "DependencyTimeoutException", "message": "down"})
        );
        assert_eq!(
            error_response(&ApiError::Kms(KmsError::Internal("x".into()))).0,
            500
        );
    }
}
