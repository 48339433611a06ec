//! `local`: Coffer's own keystore in RocksDB.
//!
//! Each key has one or more 32-byte key material versions (1 at creation, +1 per rotation),
//! stored only sealed under the root key (AES-256-GCM, AAD = the key ID and version). Ciphertext
//! blobs follow [`crate::ciphertext`]. Key states follow AWS: `Disabled` keys refuse
//! cryptographic operations with `DisabledException`, `PendingDeletion` keys with
//! `KMSInvalidStateException`; a key whose deletion window has passed is deleted the next time
//! it is touched, or by [`LocalKms::purge_expired`]. Every write is synced.
//!
//! Writes take one mutex (read-modify-write of a key record); cryptographic operations only
//! read. Mutating calls run on the blocking pool since a synced write waits for the disk, and so
//! does a ReEncrypt batch, which looks up each key and material it meets once (`Lookups`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::arn::{self, KeyRef};
use crate::ciphertext::{self, BlobHeader};
use crate::clock::{Clock, SystemClock};
use crate::context::canonical_context;
use crate::kms::*;
use crate::secrets::RootKey;
use crate::validate;
use crate::wrap;
use crate::KmsError;

/// The keyspace of the keystore DB, in one place. Ids are raw UUID bytes, versions big-endian,
/// so prefix scans return keys in ID order and materials in version order.
mod keys {
    use uuid::Uuid;

    /// `k ‖ key id` → [`super::KeyRecord`].
    pub const KEY: u8 = b'k';
    /// `m ‖ key id ‖ version u32 BE` → the sealed key material.
    pub const MATERIAL: u8 = b'm';
    /// `a ‖ alias name` → [`super::AliasRecord`].
    pub const ALIAS: u8 = b'a';
    /// `c` → a value sealed under the root key, to detect a wrong root key at open.
    pub const ROOT_CHECK: &[u8] = b"c";

    pub fn key(id: &Uuid) -> Vec<u8> {
        let mut k = vec![KEY];
        k.extend_from_slice(id.as_bytes());
        k
    }

    pub fn material(id: &Uuid, version: u32) -> Vec<u8> {
        let mut k = vec![MATERIAL];
        k.extend_from_slice(id.as_bytes());
        k.extend_from_slice(&version.to_be_bytes());
        k
    }

    pub fn alias(name: &str) -> Vec<u8> {
        let mut k = vec![ALIAS];
        k.extend_from_slice(name.as_bytes());
        k
    }
}

/// Version marker prefixed to every record value.
const RECORD_V1: u8 = 1;
/// Version marker of a sealed material value (`v ‖ nonce ‖ ct ‖ tag`).
const MATERIAL_V1: u8 = 1;
const ROOT_CHECK_PLAINTEXT: &[u8] = b"coffer-kms root key check v1";
const DAY: i64 = 86_400;

/// A key, as stored (v1).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyRecord {
    description: String,
    creation_date: i64,
    state: KeyState,
    key_manager: KeyManager,
    deletion_date: Option<i64>,
    pending_window_days: Option<u32>,
    /// `Some(period)` while automatic rotation is on.
    rotation_period_days: Option<u32>,
    next_rotation_date: Option<i64>,
    current_version: u32,
    rotations: Vec<RotationRecord>,
    tags: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RotationRecord {
    version: u32,
    date: i64,
    on_demand: bool,
}

/// An alias, as stored (v1).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AliasRecord {
    target: Uuid,
    creation_date: i64,
    last_updated_date: i64,
}

impl KeyRecord {
    fn expired(&self, now: i64) -> bool {
        self.state == KeyState::PendingDeletion && self.deletion_date.is_some_and(|d| d <= now)
    }

    /// The error a cryptographic operation on this key gets, if any.
    fn check_usable(&self, arn: &str) -> Result<(), KmsError> {
        match self.state {
            KeyState::Enabled => Ok(()),
            KeyState::Disabled => Err(KmsError::Disabled(format!("{arn} is disabled."))),
            KeyState::PendingDeletion => Err(KmsError::InvalidState(format!(
                "{arn} is pending deletion."
            ))),
        }
    }
}

fn encode_record<T: Serialize>(rec: &T) -> Result<Vec<u8>, KmsError> {
    let mut out = vec![RECORD_V1];
    rmp_serde::encode::write_named(&mut out, rec)
        .map_err(|e| KmsError::Internal(format!("encoding record: {e}")))?;
    Ok(out)
}

fn decode_record<T: for<'de> Deserialize<'de>>(v: &[u8]) -> Result<T, KmsError> {
    match v.split_first() {
        Some((&RECORD_V1, rest)) => rmp_serde::from_slice(rest)
            .map_err(|e| KmsError::Internal(format!("decoding record: {e}"))),
        _ => Err(KmsError::Internal("unknown keystore record version".into())),
    }
}

fn db_err(e: rocksdb::Error) -> KmsError {
    KmsError::Internal(format!("keystore: {e}"))
}

fn material_aad(id: &Uuid, version: u32) -> Vec<u8> {
    let mut aad = b"coffer-kms material v1".to_vec();
    aad.extend_from_slice(id.as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

/// Coffer's RocksDB keystore. Cheap to clone.
#[derive(Clone)]
pub struct LocalKms {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LocalKms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKms")
            .field("region", &self.inner.region)
            .field("account", &self.inner.account)
            .finish()
    }
}

struct Inner {
    db: DB,
    root: RootKey,
    region: String,
    account: String,
    clock: Arc<dyn Clock>,
    write_lock: Mutex<()>,
}

impl LocalKms {
    /// Opens (creating if needed) the keystore at `path` with the system clock. Fails if the
    /// keystore was created under a different root key.
    pub fn open(
        path: &Path,
        root_key: RootKey,
        region: &str,
        account_id: &str,
    ) -> Result<Self, KmsError> {
        Self::open_with_clock(path, root_key, region, account_id, Arc::new(SystemClock))
    }

    /// [`LocalKms::open`] with an injected clock.
    pub fn open_with_clock(
        path: &Path,
        root_key: RootKey,
        region: &str,
        account_id: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, KmsError> {
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(KmsError::Validation(format!("invalid region '{region}'")));
        }
        if !arn::is_account_id(account_id) {
            return Err(KmsError::Validation(format!(
                "account_id must be 12 digits, got '{account_id}'"
            )));
        }
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        let db = DB::open(&opts, path).map_err(db_err)?;
        let inner = Inner {
            db,
            root: root_key,
            region: region.to_owned(),
            account: account_id.to_owned(),
            clock,
            write_lock: Mutex::new(()),
        };
        match inner.db.get(keys::ROOT_CHECK).map_err(db_err)? {
            Some(sealed) => {
                wrap::open(&inner.root, &sealed, keys::ROOT_CHECK).map_err(|_| {
                    KmsError::Validation(format!(
                        "keystore {} was created under a different root key",
                        path.display()
                    ))
                })?;
            }
            None => {
                let sealed = wrap::seal(&inner.root, ROOT_CHECK_PLAINTEXT, keys::ROOT_CHECK)?;
                inner
                    .db
                    .put_opt(keys::ROOT_CHECK, sealed, &synced())
                    .map_err(db_err)?;
            }
        }
        Ok(LocalKms {
            inner: Arc::new(inner),
        })
    }

    /// CreateAlias that may use the reserved `alias/aws/` prefix (for Coffer's own managed keys,
    /// e.g. `alias/aws/s3`).
    pub async fn create_reserved_alias(
        &self,
        alias_name: &str,
        target_key_id: &str,
    ) -> Result<(), KmsError> {
        let (a, t) = (alias_name.to_owned(), target_key_id.to_owned());
        self.blocking(move |i| i.create_alias(&a, &t, true)).await
    }

    /// Deletes every key whose deletion window ended at or before `now`, with its material and
    /// aliases. Returns how many were deleted.
    pub fn purge_expired(&self, now: i64) -> Result<usize, KmsError> {
        self.inner.purge_expired(now)
    }

    /// Rotates every enabled key whose automatic rotation is due at `now`. Returns how many.
    pub fn rotate_due(&self, now: i64) -> Result<usize, KmsError> {
        self.inner.rotate_due(now)
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, KmsError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, KmsError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| KmsError::Internal(format!("keystore task failed: {e}")))?
    }
}

fn synced() -> WriteOptions {
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    wo
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, ()> {
        // A panic while holding the lock leaves no partial state (writes are batches).
        self.write_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn arn(&self, id: &Uuid) -> String {
        arn::key_arn(&self.region, &self.account, id)
    }

    fn write(&self, batch: WriteBatch) -> Result<(), KmsError> {
        self.db.write_opt(batch, &synced()).map_err(db_err)
    }

    fn check_home(&self, region: &str, account: &str, s: &str) -> Result<(), KmsError> {
        if region != self.region || account != self.account {
            return Err(KmsError::NotFound(format!("Key '{s}' does not exist")));
        }
        Ok(())
    }

    /// Resolves any of the four forms to a key ID (the key itself may not exist).
    fn resolve(&self, s: &str) -> Result<Uuid, KmsError> {
        match KeyRef::parse(s)? {
            KeyRef::KeyId(id) => Ok(id),
            KeyRef::KeyArn {
                region,
                account,
                id,
            } => {
                self.check_home(&region, &account, s)?;
                Ok(id)
            }
            KeyRef::Alias(alias) => self.alias_target(&alias, s),
            KeyRef::AliasArn {
                region,
                account,
                alias,
            } => {
                self.check_home(&region, &account, s)?;
                self.alias_target(&alias, s)
            }
        }
    }

    /// Resolves a key ID or key ARN only (CreateAlias/UpdateAlias targets).
    fn resolve_key_only(&self, s: &str) -> Result<Uuid, KmsError> {
        let r = KeyRef::parse(s)?;
        if !r.is_key() {
            return Err(KmsError::Validation(format!(
                "{s} is an alias; the target must be a key ID or key ARN"
            )));
        }
        self.resolve(s)
    }

    fn alias_target(&self, alias: &str, s: &str) -> Result<Uuid, KmsError> {
        self.read_alias(alias)?
            .map(|a| a.target)
            .ok_or_else(|| KmsError::NotFound(format!("Alias {s} is not found.")))
    }

    fn read_alias(&self, alias: &str) -> Result<Option<AliasRecord>, KmsError> {
        self.db
            .get(keys::alias(alias))
            .map_err(db_err)?
            .map(|v| decode_record(&v))
            .transpose()
    }

    fn read_key(&self, id: &Uuid) -> Result<Option<KeyRecord>, KmsError> {
        self.db
            .get(keys::key(id))
            .map_err(db_err)?
            .map(|v| decode_record(&v))
            .transpose()
    }

    /// Loads a live key: a key past its deletion window is deleted here and reported as not
    /// found. `held` is the write lock when the caller already holds it.
    fn load(&self, id: &Uuid, held: Option<&MutexGuard<'_, ()>>) -> Result<KeyRecord, KmsError> {
        let not_found = || KmsError::NotFound(format!("Key '{}' does not exist", self.arn(id)));
        let rec = self.read_key(id)?.ok_or_else(not_found)?;
        let now = self.clock.now();
        if rec.expired(now) {
            match held {
                Some(_) => self.delete_key(id)?,
                None => {
                    let _g = self.lock();
                    if self.read_key(id)?.is_some_and(|r| r.expired(now)) {
                        self.delete_key(id)?;
                    }
                }
            }
            return Err(not_found());
        }
        Ok(rec)
    }

    /// Removes a key, all its material versions and the aliases pointing at it. Caller holds
    /// the write lock.
    fn delete_key(&self, id: &Uuid) -> Result<(), KmsError> {
        let mut batch = WriteBatch::default();
        batch.delete(keys::key(id));
        let mut prefix = vec![keys::MATERIAL];
        prefix.extend_from_slice(id.as_bytes());
        for item in self
            .db
            .iterator(IteratorMode::From(&prefix, Direction::Forward))
        {
            let (k, _) = item.map_err(db_err)?;
            if !k.starts_with(&prefix) {
                break;
            }
            batch.delete(k);
        }
        for (name, a) in self.aliases()? {
            if a.target == *id {
                batch.delete(keys::alias(&name));
            }
        }
        self.write(batch)?;
        tracing::info!(key = %self.arn(id), "deleted key after its deletion window");
        Ok(())
    }

    fn aliases(&self) -> Result<Vec<(String, AliasRecord)>, KmsError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(&[keys::ALIAS], Direction::Forward))
        {
            let (k, v) = item.map_err(db_err)?;
            if k.first() != Some(&keys::ALIAS) {
                break;
            }
            let name = String::from_utf8(k[1..].to_vec())
                .map_err(|_| KmsError::Internal("bad alias key".into()))?;
            out.push((name, decode_record(&v)?));
        }
        Ok(out)
    }

    fn put_key(&self, batch: &mut WriteBatch, id: &Uuid, rec: &KeyRecord) -> Result<(), KmsError> {
        batch.put(keys::key(id), encode_record(rec)?);
        Ok(())
    }

    /// Seals fresh key material `version` of `id` into `batch`.
    fn new_material(
        &self,
        batch: &mut WriteBatch,
        id: &Uuid,
        version: u32,
    ) -> Result<(), KmsError> {
        let material = Zeroizing::new(wrap::random_bytes::<32>()?);
        let mut value = vec![MATERIAL_V1];
        value.extend_from_slice(&wrap::seal(
            &self.root,
            &material[..],
            &material_aad(id, version),
        )?);
        batch.put(keys::material(id, version), value);
        Ok(())
    }

    /// Unseals material `version` of `id`; `None` if there is no such version.
    fn material(&self, id: &Uuid, version: u32) -> Result<Option<Zeroizing<[u8; 32]>>, KmsError> {
        let Some(v) = self.db.get(keys::material(id, version)).map_err(db_err)? else {
            return Ok(None);
        };
        let corrupt =
            || KmsError::Internal(format!("key material {version} of {id} does not unseal"));
        let sealed = match v.split_first() {
            Some((&MATERIAL_V1, rest)) => rest,
            _ => return Err(corrupt()),
        };
        let pt =
            wrap::open(&self.root, sealed, &material_aad(id, version)).map_err(|_| corrupt())?;
        let mut out = Zeroizing::new([0u8; 32]);
        if pt.len() != 32 {
            return Err(corrupt());
        }
        out.copy_from_slice(&pt);
        Ok(Some(out))
    }

    fn metadata(&self, id: &Uuid, rec: &KeyRecord) -> KeyMetadata {
        KeyMetadata {
            key_id: id.hyphenated().to_string(),
            arn: self.arn(id),
            aws_account_id: self.account.clone(),
            creation_date: rec.creation_date,
            enabled: rec.state == KeyState::Enabled,
            description: rec.description.clone(),
            key_state: rec.state,
            key_manager: rec.key_manager,
            deletion_date: rec.deletion_date,
            pending_deletion_window_in_days: rec.pending_window_days,
            rotation_enabled: rec.rotation_period_days.is_some(),
            rotation_period_in_days: rec.rotation_period_days,
            current_material_version: rec.current_version,
        }
    }

    fn create_key(&self, req: CreateKeyRequest) -> Result<KeyMetadata, KmsError> {
        if req.description.len() > 8192 {
            return Err(KmsError::Validation(
                "Description must be at most 8192 characters".into(),
            ));
        }
        let id = Uuid::new_v4();
        let now = self.clock.now();
        let rec = KeyRecord {
            description: req.description,
            creation_date: now,
            state: KeyState::Enabled,
            key_manager: if req.aws_managed {
                KeyManager::Aws
            } else {
                KeyManager::Customer
            },
            deletion_date: None,
            pending_window_days: None,
            // AWS managed keys rotate every year, always.
            rotation_period_days: req.aws_managed.then_some(365),
            next_rotation_date: req.aws_managed.then_some(now + 365 * DAY),
            current_version: 1,
            rotations: Vec::new(),
            tags: req.tags,
        };
        let mut batch = WriteBatch::default();
        self.new_material(&mut batch, &id, 1)?;
        self.put_key(&mut batch, &id, &rec)?;
        self.write(batch)?;
        tracing::info!(key = %self.arn(&id), "created key");
        Ok(self.metadata(&id, &rec))
    }

    /// Read-modify-write of one key under the write lock.
    fn update<T>(
        &self,
        key_id: &str,
        f: impl FnOnce(&Self, &Uuid, &mut KeyRecord, &mut WriteBatch) -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        let g = self.lock();
        let id = self.resolve(key_id)?;
        let mut rec = self.load(&id, Some(&g))?;
        let mut batch = WriteBatch::default();
        let out = f(self, &id, &mut rec, &mut batch)?;
        self.put_key(&mut batch, &id, &rec)?;
        self.write(batch)?;
        Ok(out)
    }

    fn not_aws_managed(&self, id: &Uuid, rec: &KeyRecord, op: &str) -> Result<(), KmsError> {
        if rec.key_manager == KeyManager::Aws {
            return Err(KmsError::Validation(format!(
                "{op} is not allowed on AWS managed key {}",
                self.arn(id)
            )));
        }
        Ok(())
    }

    fn pending_deletion(&self, id: &Uuid) -> KmsError {
        KmsError::InvalidState(format!("{} is pending deletion.", self.arn(id)))
    }

    fn set_enabled(&self, key_id: &str, enabled: bool) -> Result<(), KmsError> {
        self.update(key_id, |s, id, rec, _| {
            s.not_aws_managed(id, rec, if enabled { "EnableKey" } else { "DisableKey" })?;
            if rec.state == KeyState::PendingDeletion {
                return Err(s.pending_deletion(id));
            }
            rec.state = if enabled {
                KeyState::Enabled
            } else {
                KeyState::Disabled
            };
            Ok(())
        })
    }

    fn schedule_deletion(&self, key_id: &str, days: Option<u32>) -> Result<KeyMetadata, KmsError> {
        let days = validate::pending_window(days)?;
        let now = self.clock.now();
        self.update(key_id, |s, id, rec, _| {
            s.not_aws_managed(id, rec, "ScheduleKeyDeletion")?;
            if rec.state == KeyState::PendingDeletion {
                return Err(s.pending_deletion(id));
            }
            rec.state = KeyState::PendingDeletion;
            rec.deletion_date = Some(now + i64::from(days) * DAY);
            rec.pending_window_days = Some(days);
            Ok(s.metadata(id, rec))
        })
    }

    fn cancel_deletion(&self, key_id: &str) -> Result<KeyMetadata, KmsError> {
        self.update(key_id, |s, id, rec, _| {
            if rec.state != KeyState::PendingDeletion {
                return Err(KmsError::InvalidState(format!(
                    "{} is not pending deletion.",
                    s.arn(id)
                )));
            }
            rec.state = KeyState::Disabled;
            rec.deletion_date = None;
            rec.pending_window_days = None;
            Ok(s.metadata(id, rec))
        })
    }

    fn set_rotation(&self, key_id: &str, period: Option<Option<u32>>) -> Result<(), KmsError> {
        let now = self.clock.now();
        self.update(key_id, |s, id, rec, _| {
            s.not_aws_managed(id, rec, "Changing key rotation")?;
            rec.check_usable(&s.arn(id))?;
            match period {
                Some(p) => {
                    let p = validate::rotation_period(p)?;
                    rec.rotation_period_days = Some(p);
                    rec.next_rotation_date = Some(now + i64::from(p) * DAY);
                }
                None => {
                    rec.rotation_period_days = None;
                    rec.next_rotation_date = None;
                }
            }
            Ok(())
        })
    }

    /// Adds key material to `rec` (in `batch`).
    fn rotate(
        &self,
        id: &Uuid,
        rec: &mut KeyRecord,
        batch: &mut WriteBatch,
        now: i64,
        on_demand: bool,
    ) -> Result<(), KmsError> {
        let version = rec.current_version + 1;
        self.new_material(batch, id, version)?;
        rec.current_version = version;
        rec.rotations.push(RotationRecord {
            version,
            date: now,
            on_demand,
        });
        if !on_demand {
            rec.next_rotation_date = rec.rotation_period_days.map(|p| now + i64::from(p) * DAY);
        }
        tracing::info!(key = %self.arn(id), version, on_demand, "rotated key material");
        Ok(())
    }

    fn rotate_on_demand(&self, key_id: &str) -> Result<String, KmsError> {
        let now = self.clock.now();
        self.update(key_id, |s, id, rec, batch| {
            s.not_aws_managed(id, rec, "RotateKeyOnDemand")?;
            rec.check_usable(&s.arn(id))?;
            s.rotate(id, rec, batch, now, true)?;
            Ok(id.hyphenated().to_string())
        })
    }

    fn rotate_due(&self, now: i64) -> Result<usize, KmsError> {
        let _g = self.lock();
        let mut n = 0;
        for (id, mut rec) in self.all_keys()? {
            let due =
                rec.state == KeyState::Enabled && rec.next_rotation_date.is_some_and(|d| d <= now);
            if due {
                let mut batch = WriteBatch::default();
                self.rotate(&id, &mut rec, &mut batch, now, false)?;
                self.put_key(&mut batch, &id, &rec)?;
                self.write(batch)?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn purge_expired(&self, now: i64) -> Result<usize, KmsError> {
        let _g = self.lock();
        let mut n = 0;
        for (id, rec) in self.all_keys()? {
            if rec.expired(now) {
                self.delete_key(&id)?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn all_keys(&self) -> Result<Vec<(Uuid, KeyRecord)>, KmsError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(&[keys::KEY], Direction::Forward))
        {
            let (k, v) = item.map_err(db_err)?;
            if k.first() != Some(&keys::KEY) {
                break;
            }
            let id = Uuid::from_slice(&k[1..])
                .map_err(|_| KmsError::Internal("bad key record".into()))?;
            out.push((id, decode_record(&v)?));
        }
        Ok(out)
    }

    fn list_keys(
        &self,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<KeyListEntry>, KmsError> {
        let limit = validate::limit(limit)?;
        // The marker is the ID of the first key of the next page.
        let start = match marker {
            Some(m) => keys::key(
                &arn::parse_key_id(m)
                    .ok_or_else(|| KmsError::InvalidMarker(format!("Invalid marker '{m}'")))?,
            ),
            None => vec![keys::KEY],
        };
        let now = self.clock.now();
        let mut items = Vec::new();
        let mut next_marker = None;
        for item in self
            .db
            .iterator(IteratorMode::From(&start, Direction::Forward))
        {
            let (k, v) = item.map_err(db_err)?;
            if k.first() != Some(&keys::KEY) {
                break;
            }
            let id = Uuid::from_slice(&k[1..])
                .map_err(|_| KmsError::Internal("bad key record".into()))?;
            if decode_record::<KeyRecord>(&v)?.expired(now) {
                continue;
            }
            if items.len() == limit {
                next_marker = Some(id.hyphenated().to_string());
                break;
            }
            items.push(KeyListEntry {
                key_id: id.hyphenated().to_string(),
                key_arn: self.arn(&id),
            });
        }
        Ok(Page { items, next_marker })
    }

    fn create_alias(
        &self,
        alias: &str,
        target: &str,
        allow_reserved: bool,
    ) -> Result<(), KmsError> {
        arn::validate_alias_name(alias, allow_reserved)?;
        let g = self.lock();
        let id = self.resolve_key_only(target)?;
        let rec = self.load(&id, Some(&g))?;
        if rec.state == KeyState::PendingDeletion {
            return Err(self.pending_deletion(&id));
        }
        if self.read_alias(alias)?.is_some() {
            return Err(KmsError::AlreadyExists(format!(
                "An alias with the name {} already exists",
                arn::alias_arn(&self.region, &self.account, alias)
            )));
        }
        let now = self.clock.now();
        let rec = AliasRecord {
            target: id,
            creation_date: now,
            last_updated_date: now,
        };
        self.db
            .put_opt(keys::alias(alias), encode_record(&rec)?, &synced())
            .map_err(db_err)
    }

    fn update_alias(&self, alias: &str, target: &str) -> Result<(), KmsError> {
        arn::validate_alias_name(alias, true)?;
        let g = self.lock();
        let mut a = self
            .read_alias(alias)?
            .ok_or_else(|| KmsError::NotFound(format!("Alias {alias} is not found.")))?;
        if alias.starts_with("alias/aws/") {
            return Err(KmsError::Validation(format!(
                "{alias} is reserved for an AWS managed key"
            )));
        }
        let id = self.resolve_key_only(target)?;
        let rec = self.load(&id, Some(&g))?;
        if rec.state == KeyState::PendingDeletion {
            return Err(self.pending_deletion(&id));
        }
        a.target = id;
        a.last_updated_date = self.clock.now();
        self.db
            .put_opt(keys::alias(alias), encode_record(&a)?, &synced())
            .map_err(db_err)
    }

    fn delete_alias(&self, alias: &str) -> Result<(), KmsError> {
        arn::validate_alias_name(alias, true)?;
        let _g = self.lock();
        if self.read_alias(alias)?.is_none() {
            return Err(KmsError::NotFound(format!("Alias {alias} is not found.")));
        }
        if alias.starts_with("alias/aws/") {
            return Err(KmsError::Validation(format!(
                "{alias} is reserved for an AWS managed key"
            )));
        }
        let mut batch = WriteBatch::default();
        batch.delete(keys::alias(alias));
        self.write(batch)
    }

    fn list_aliases(
        &self,
        key_id: Option<&str>,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<AliasEntry>, KmsError> {
        let limit = validate::limit(limit)?;
        let filter = match key_id {
            Some(k) => {
                let id = self.resolve_key_only(k)?;
                self.load(&id, None)?;
                Some(id)
            }
            None => None,
        };
        if let Some(m) = marker {
            if !m.starts_with("alias/") {
                return Err(KmsError::InvalidMarker(format!("Invalid marker '{m}'")));
            }
        }
        let now = self.clock.now();
        let mut items = Vec::new();
        let mut next_marker = None;
        for (name, a) in self.aliases()? {
            if marker.is_some_and(|m| name.as_str() < m) || filter.is_some_and(|f| f != a.target) {
                continue;
            }
            // An alias of a key past its deletion window is gone with the key.
            if self.read_key(&a.target)?.is_none_or(|r| r.expired(now)) {
                continue;
            }
            if items.len() == limit {
                next_marker = Some(name);
                break;
            }
            items.push(AliasEntry {
                alias_arn: arn::alias_arn(&self.region, &self.account, &name),
                alias_name: name,
                target_key_id: a.target.hyphenated().to_string(),
                creation_date: a.creation_date,
            });
        }
        Ok(Page { items, next_marker })
    }

    fn rotation_status(&self, key_id: &str) -> Result<RotationStatus, KmsError> {
        let id = self.resolve(key_id)?;
        let rec = self.load(&id, None)?;
        Ok(RotationStatus {
            key_id: self.arn(&id),
            enabled: rec.rotation_period_days.is_some(),
            rotation_period_in_days: rec.rotation_period_days,
            next_rotation_date: rec.next_rotation_date,
            on_demand_rotation_start_date: None,
        })
    }

    fn list_rotations(
        &self,
        key_id: &str,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<RotationEntry>, KmsError> {
        let limit = validate::limit(limit)?;
        let id = self.resolve(key_id)?;
        let rec = self.load(&id, None)?;
        let from = marker
            .map(|m| {
                m.parse::<u32>()
                    .map_err(|_| KmsError::InvalidMarker(format!("Invalid marker '{m}'")))
            })
            .transpose()?
            .unwrap_or(0);
        let mut it = rec.rotations.iter().filter(|r| r.version >= from);
        let items: Vec<RotationEntry> = it
            .by_ref()
            .take(limit)
            .map(|r| RotationEntry {
                key_id: self.arn(&id),
                material_version: r.version,
                rotation_date: r.date,
                rotation_type: if r.on_demand {
                    "ON_DEMAND"
                } else {
                    "AUTOMATIC"
                }
                .to_owned(),
            })
            .collect();
        Ok(Page {
            items,
            next_marker: it.next().map(|r| r.version.to_string()),
        })
    }

    /// Fresh memoized key lookups, for one cryptographic call.
    fn lookups(&self) -> Lookups<'_> {
        Lookups {
            inner: self,
            refs: HashMap::new(),
            keys: HashMap::new(),
            materials: HashMap::new(),
        }
    }

    fn generate_data_key(
        &self,
        key_id: &str,
        ctx: &EncryptionContext,
        n: usize,
        with_plaintext: bool,
    ) -> Result<GeneratedDataKey, KmsError> {
        validate::data_key_bytes(n)?;
        let mut dk = Zeroizing::new(vec![0u8; n]);
        wrap::fill_random(&mut dk)?;
        let enc = self.lookups().encrypt(key_id, &dk, ctx)?;
        Ok(GeneratedDataKey {
            key_id: enc.key_id,
            plaintext: with_plaintext.then_some(dk),
            ciphertext_blob: enc.ciphertext_blob,
        })
    }
}

/// The key lookups of cryptographic calls, each done once per call: a ReEncrypt batch resolves
/// every key reference, key record and key material it meets once however many items share it
/// (unsealing a material under the root key is the costly part). Single calls use a fresh one,
/// so both run the same code. Failed lookups are remembered too, and fail every item needing them.
struct Lookups<'a> {
    inner: &'a Inner,
    /// Key reference (any of the four forms) → key ID.
    refs: HashMap<String, Result<Uuid, KmsError>>,
    /// Key ID → its current material version, if the key exists and is usable.
    keys: HashMap<Uuid, Result<u32, KmsError>>,
    /// (key ID, version) → the unsealed material, `None` if there is no such version.
    materials: HashMap<(Uuid, u32), Result<Option<Zeroizing<[u8; 32]>>, KmsError>>,
}

impl Lookups<'_> {
    fn resolve(&mut self, s: &str) -> Result<Uuid, KmsError> {
        if let Some(r) = self.refs.get(s) {
            return r.clone();
        }
        let r = self.inner.resolve(s);
        self.refs.insert(s.to_owned(), r.clone());
        r
    }

    /// The current material version of key `id`, if it exists and may be used.
    fn usable(&mut self, id: &Uuid) -> Result<u32, KmsError> {
        let inner = self.inner;
        self.keys
            .entry(*id)
            .or_insert_with(|| {
                let rec = inner.load(id, None)?;
                rec.check_usable(&inner.arn(id))?;
                Ok(rec.current_version)
            })
            .clone()
    }

    fn material(
        &mut self,
        id: &Uuid,
        version: u32,
    ) -> Result<Option<Zeroizing<[u8; 32]>>, KmsError> {
        let inner = self.inner;
        self.materials
            .entry((*id, version))
            .or_insert_with(|| inner.material(id, version))
            .clone()
    }

    /// Encrypts under the current material of an enabled key.
    fn encrypt(
        &mut self,
        key_id: &str,
        pt: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<Encrypted, KmsError> {
        let id = self.resolve(key_id)?;
        let version = self.usable(&id)?;
        let arn = self.inner.arn(&id);
        let material = self.material(&id, version)?.ok_or_else(|| {
            KmsError::Internal(format!("current key material of {arn} is missing"))
        })?;
        let header = BlobHeader {
            key_id: id,
            material_version: version,
        }
        .encode();
        let mut aad = header.to_vec();
        aad.extend_from_slice(&canonical_context(ctx));
        let sealed = wrap::seal(&material, pt, &aad)?;
        let mut blob = Vec::with_capacity(header.len() + sealed.len());
        blob.extend_from_slice(&header);
        blob.extend_from_slice(&sealed);
        Ok(Encrypted {
            key_id: arn,
            ciphertext_blob: blob,
        })
    }

    fn decrypt(
        &mut self,
        blob: &[u8],
        ctx: &EncryptionContext,
        key_id: Option<&str>,
    ) -> Result<Decrypted, KmsError> {
        let (h, header, sealed) = ciphertext::parse(blob)?;
        if let Some(k) = key_id {
            if self.resolve(k)? != h.key_id {
                return Err(KmsError::IncorrectKey(
                    "The key ID in the request does not identify a CMK that can perform this operation.".into(),
                ));
            }
        }
        self.usable(&h.key_id)?;
        let invalid = || {
            KmsError::InvalidCiphertext(
                "The ciphertext is invalid or does not match the encryption context".into(),
            )
        };
        let material = self
            .material(&h.key_id, h.material_version)?
            .ok_or_else(invalid)?;
        let mut aad = header.to_vec();
        aad.extend_from_slice(&canonical_context(ctx));
        let plaintext = wrap::open(&material, sealed, &aad).map_err(|_| invalid())?;
        Ok(Decrypted {
            key_id: self.inner.arn(&h.key_id),
            plaintext,
        })
    }

    /// ReEncrypt: decrypt then encrypt in memory, the plaintext zeroized on drop.
    fn re_encrypt(
        &mut self,
        blob: &[u8],
        source_ctx: &EncryptionContext,
        source_key_id: Option<&str>,
        destination_key_id: &str,
        destination_ctx: &EncryptionContext,
    ) -> Result<ReEncrypted, KmsError> {
        validate::ciphertext(blob)?;
        let src = self.decrypt(blob, source_ctx, source_key_id)?;
        let enc = self.encrypt(destination_key_id, &src.plaintext, destination_ctx)?;
        Ok(ReEncrypted {
            source_key_id: src.key_id,
            key_id: enc.key_id,
            ciphertext_blob: enc.ciphertext_blob,
        })
    }
}

#[async_trait]
impl Kms for LocalKms {
    async fn create_key(&self, req: CreateKeyRequest) -> Result<KeyMetadata, KmsError> {
        self.blocking(move |i| i.create_key(req)).await
    }

    async fn describe_key(&self, key_id: &str) -> Result<KeyMetadata, KmsError> {
        let id = self.inner.resolve(key_id)?;
        let rec = self.inner.load(&id, None)?;
        Ok(self.inner.metadata(&id, &rec))
    }

    async fn list_keys(
        &self,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<KeyListEntry>, KmsError> {
        self.inner.list_keys(limit, marker)
    }

    async fn create_alias(&self, alias_name: &str, target_key_id: &str) -> Result<(), KmsError> {
        let (a, t) = (alias_name.to_owned(), target_key_id.to_owned());
        self.blocking(move |i| i.create_alias(&a, &t, false)).await
    }

    async fn update_alias(&self, alias_name: &str, target_key_id: &str) -> Result<(), KmsError> {
        let (a, t) = (alias_name.to_owned(), target_key_id.to_owned());
        self.blocking(move |i| i.update_alias(&a, &t)).await
    }

    async fn delete_alias(&self, alias_name: &str) -> Result<(), KmsError> {
        let a = alias_name.to_owned();
        self.blocking(move |i| i.delete_alias(&a)).await
    }

    async fn list_aliases(
        &self,
        key_id: Option<&str>,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<AliasEntry>, KmsError> {
        self.inner.list_aliases(key_id, limit, marker)
    }

    async fn enable_key(&self, key_id: &str) -> Result<(), KmsError> {
        let k = key_id.to_owned();
        self.blocking(move |i| i.set_enabled(&k, true)).await
    }

    async fn disable_key(&self, key_id: &str) -> Result<(), KmsError> {
        let k = key_id.to_owned();
        self.blocking(move |i| i.set_enabled(&k, false)).await
    }

    async fn schedule_key_deletion(
        &self,
        key_id: &str,
        pending_window_in_days: Option<u32>,
    ) -> Result<KeyMetadata, KmsError> {
        let k = key_id.to_owned();
        self.blocking(move |i| i.schedule_deletion(&k, pending_window_in_days))
            .await
    }

    async fn cancel_key_deletion(&self, key_id: &str) -> Result<KeyMetadata, KmsError> {
        let k = key_id.to_owned();
        self.blocking(move |i| i.cancel_deletion(&k)).await
    }

    async fn enable_key_rotation(
        &self,
        key_id: &str,
        rotation_period_in_days: Option<u32>,
    ) -> Result<(), KmsError> {
        let k = key_id.to_owned();
        self.blocking(move |i| i.set_rotation(&k, Some(rotation_period_in_days)))
            .await
    }

    async fn disable_key_rotation(&self, key_id: &str) -> Result<(), KmsError> {
        let k = key_id.to_owned();
        self.blocking(move |i| i.set_rotation(&k, None)).await
    }

    async fn get_key_rotation_status(&self, key_id: &str) -> Result<RotationStatus, KmsError> {
        self.inner.rotation_status(key_id)
    }

    async fn rotate_key_on_demand(&self, key_id: &str) -> Result<String, KmsError> {
        let k = key_id.to_owned();
        self.blocking(move |i| i.rotate_on_demand(&k)).await
    }

    async fn list_key_rotations(
        &self,
        key_id: &str,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<RotationEntry>, KmsError> {
        self.inner.list_rotations(key_id, limit, marker)
    }

    async fn encrypt(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Encrypted, KmsError> {
        validate::plaintext(plaintext)?;
        self.inner.lookups().encrypt(key_id, plaintext, context)
    }

    async fn decrypt(
        &self,
        ciphertext_blob: &[u8],
        context: &EncryptionContext,
        key_id: Option<&str>,
    ) -> Result<Decrypted, KmsError> {
        validate::ciphertext(ciphertext_blob)?;
        self.inner
            .lookups()
            .decrypt(ciphertext_blob, context, key_id)
    }

    async fn re_encrypt(
        &self,
        ciphertext_blob: &[u8],
        source_context: &EncryptionContext,
        source_key_id: Option<&str>,
        destination_key_id: &str,
        destination_context: &EncryptionContext,
    ) -> Result<ReEncrypted, KmsError> {
        self.inner.lookups().re_encrypt(
            ciphertext_blob,
            source_context,
            source_key_id,
            destination_key_id,
            destination_context,
        )
    }

    async fn re_encrypt_batch(
        &self,
        items: Vec<ReEncryptItem>,
    ) -> Result<Vec<Result<ReEncrypted, KmsError>>, KmsError> {
        validate::re_encrypt_batch(items.len())?;
        // Up to a thousand unseals and seals: on the blocking pool, not an async worker.
        self.blocking(move |i| {
            let mut lookups = i.lookups();
            Ok(items
                .iter()
                .map(|it| {
                    lookups.re_encrypt(
                        &it.ciphertext_blob,
                        &it.source_context,
                        it.source_key_id.as_deref(),
                        &it.destination_key_id,
                        &it.destination_context,
                    )
                })
                .collect())
        })
        .await
    }

    async fn generate_data_key(
        &self,
        key_id: &str,
        context: &EncryptionContext,
        number_of_bytes: usize,
    ) -> Result<GeneratedDataKey, KmsError> {
        self.inner
            .generate_data_key(key_id, context, number_of_bytes, true)
    }

    async fn generate_data_key_without_plaintext(
        &self,
        key_id: &str,
        context: &EncryptionContext,
        number_of_bytes: usize,
    ) -> Result<GeneratedDataKey, KmsError> {
        self.inner
            .generate_data_key(key_id, context, number_of_bytes, false)
    }

    async fn generate_random(&self, number_of_bytes: usize) -> Result<Vec<u8>, KmsError> {
        validate::random_bytes(number_of_bytes)?;
        let mut out = vec![0u8; number_of_bytes];
        wrap::fill_random(&mut out)?;
        Ok(out)
    }

    async fn create_reserved_alias(
        &self,
        alias_name: &str,
        target_key_id: &str,
    ) -> Result<(), KmsError> {
        LocalKms::create_reserved_alias(self, alias_name, target_key_id).await
    }

    async fn run_maintenance(&self) -> Result<MaintenanceReport, KmsError> {
        let now = self.inner.clock.now();
        self.blocking(move |i| {
            Ok(MaintenanceReport {
                keys_deleted: i.purge_expired(now)?,
                keys_rotated: i.rotate_due(now)?,
            })
        })
        .await
    }
}

#[cfg(test)]
#[path = "local_tests.rs"]
mod tests;
