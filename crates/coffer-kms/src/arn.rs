//! Key names as AWS spells them: key ID, key ARN, alias name, alias ARN.

use uuid::Uuid;

use crate::KmsError;

/// A parsed key reference: the four forms every `key_id` argument accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// `1234abcd-12ab-34cd-56ef-1234567890ab`.
    KeyId(Uuid),
    /// `arn:aws:kms:<region>:<account>:key/<id>`.
    KeyArn {
        /// Region.
        region: String,
        /// Account ID.
        account: String,
        /// Key ID.
        id: Uuid,
    },
    /// `alias/<name>`.
    Alias(String),
    /// `arn:aws:kms:<region>:<account>:alias/<name>`; `alias` holds `alias/<name>`.
    AliasArn {
        /// Region.
        region: String,
        /// Account ID.
        account: String,
        /// `alias/<name>`.
        alias: String,
    },
}

impl KeyRef {
    /// Parses any of the four forms; anything else is `NotFoundException` as in AWS
    /// ("Invalid keyId ...").
    pub fn parse(s: &str) -> Result<KeyRef, KmsError> {
        let invalid = || KmsError::NotFound(format!("Invalid keyId '{s}'"));
        if s.starts_with("alias/") {
            return Ok(KeyRef::Alias(s.to_owned()));
        }
        if let Some(rest) = s.strip_prefix("arn:") {
            // arn:<partition>:kms:<region>:<account>:<resource>
            let mut parts = rest.splitn(5, ':');
            let (partition, service, region, account, resource) = (
                parts.next().ok_or_else(invalid)?,
                parts.next().ok_or_else(invalid)?,
                parts.next().ok_or_else(invalid)?,
                parts.next().ok_or_else(invalid)?,
                parts.next().ok_or_else(invalid)?,
            );
            if !partition.starts_with("aws")
                || service != "kms"
                || region.is_empty()
                || !is_account_id(account)
            {
                return Err(invalid());
            }
            let (region, account) = (region.to_owned(), account.to_owned());
            if let Some(id) = resource.strip_prefix("key/") {
                return Ok(KeyRef::KeyArn {
                    region,
                    account,
                    id: parse_key_id(id).ok_or_else(invalid)?,
                });
            }
            if resource.starts_with("alias/") {
                return Ok(KeyRef::AliasArn {
                    region,
                    account,
                    alias: resource.to_owned(),
                });
            }
            return Err(invalid());
        }
        parse_key_id(s).map(KeyRef::KeyId).ok_or_else(invalid)
    }

    /// True for the key ID and key ARN forms (what CreateAlias accepts as a target).
    pub fn is_key(&self) -> bool {
        matches!(self, KeyRef::KeyId(_) | KeyRef::KeyArn { .. })
    }
}

/// Parses a key ID in AWS's form: a lowercase or uppercase hyphenated UUID (36 characters).
pub fn parse_key_id(s: &str) -> Option<Uuid> {
    if s.len() != 36 {
        return None;
    }
    Uuid::parse_str(s).ok()
}

/// True if `s` is a 12-digit AWS account ID.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `arn:aws:kms:<region>:<account>:key/<id>`.
pub fn key_arn(region: &str, account: &str, id: &Uuid) -> String {
    format!("arn:aws:kms:{region}:{account}:key/{}", id.hyphenated())
}

/// `arn:aws:kms:<region>:<account>:<alias_name>` for `alias_name` = `alias/<name>`.
pub fn alias_arn(region: &str, account: &str, alias_name: &str) -> String {
    format!("arn:aws:kms:{region}:{account}:{alias_name}")
}

/// Checks an alias name: `alias/` then 1–250 of `[A-Za-z0-9/_-]`; the `alias/aws/` prefix is
/// reserved for AWS-managed keys unless `allow_reserved`.
pub fn validate_alias_name(name: &str, allow_reserved: bool) -> Result<(), KmsError> {
    let Some(rest) = name.strip_prefix("alias/") else {
        return Err(KmsError::Validation(format!(
            "Alias must start with the prefix \"alias/\": {name}"
        )));
    };
    if rest.is_empty()
        || name.len() > 256
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'/' || b == b'_' || b == b'-')
    {
        return Err(KmsError::Validation(format!(
            "1 validation error detected: Value '{name}' at 'aliasName' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$"
        )));
    }
    if !allow_reserved && name.starts_with("alias/aws/") {
        return Err(KmsError::Validation(format!(
            "Alias {name} must not begin with alias/aws/, which is reserved for AWS managed keys"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn four_forms() {
        let id = Uuid::parse_str(ID).unwrap();
        assert_eq!(KeyRef::parse(ID).unwrap(), KeyRef::KeyId(id));
        let arn = key_arn("us-east-1", "111122223333", &id);
        assert_eq!(arn, format!("arn:aws:kms:us-east-1:111122223333:key/{ID}"));
        assert_eq!(
            KeyRef::parse(&arn).unwrap(),
            KeyRef::KeyArn {
                region: "us-east-1".into(),
                account: "111122223333".into(),
                id
            }
        );
        assert_eq!(
            KeyRef::parse("alias/my-key").unwrap(),
            KeyRef::Alias("alias/my-key".into())
        );
        assert_eq!(
            KeyRef::parse("arn:aws:kms:eu-west-3:111122223333:alias/x/y").unwrap(),
            KeyRef::AliasArn {
                region: "eu-west-3".into(),
                account: "111122223333".into(),
                alias: "alias/x/y".into()
            }
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "not-a-key",
            "1234abcd12ab34cd56ef1234567890ab",
            "arn:aws:kms:us-east-1:1111:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:s3:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-east-1:111122223333:key/nope",
            "arn:aws:kms:us-east-1:111122223333:thing/x",
        ] {
            assert!(
                matches!(KeyRef::parse(bad), Err(KmsError::NotFound(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn alias_names() {
        validate_alias_name("alias/ok_name-1/x", false).unwrap();
        assert!(validate_alias_name("alias/aws/s3", false).is_err());
        validate_alias_name("alias/aws/s3", true).unwrap();
        for bad in ["alias/", "noprefix", "alias/sp ace", "alias/é"] {
            assert!(
                matches!(validate_alias_name(bad, true), Err(KmsError::Validation(_))),
                "{bad}"
            );
        }
    }
}
