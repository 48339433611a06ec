//! `coffer admin`: manage KMS keys and aliases through the AWS KMS JSON API (aws-sdk-kms, SigV4
//! with service `kms`) of a `coffer dev` S3 port or a `coffer kms --listen` port; `coffer admin
//! cluster` (the metadata Raft group) is in `cluster.rs`, `coffer admin reencrypt` (bulk
//! re-encryption jobs) in `reencrypt.rs`, which also serves `key rotate --rewrap` and `key
//! materials` through the gateway's admin API.
//!
//! Each command builds one [`Output`]: a JSON value for `--json` and the same data as an aligned
//! table. Service errors end the command with `<AWS exception name>: <message>`.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_kms::config::retry::RetryConfig;
use aws_sdk_kms::config::timeout::TimeoutConfig;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::{DateTime, DateTimeFormat};
use aws_sdk_kms::types::KeyMetadata;
use aws_sdk_kms::Client;
use serde_json::{json, Value};

use super::common::{env_credentials, stored_credentials, StoredCredentials};
use super::CmdError;
use crate::cli::{AdminArgs, AdminCommand, AliasCommand, KeyCommand};

/// The page size of the List* calls.
const PAGE: i32 = 100;

/// What a command prints.
pub(super) enum Output {
    /// One record: a `FIELD  VALUE` table.
    Record(Vec<(&'static str, String)>, Value),
    /// Rows under a header line.
    Rows(Vec<&'static str>, Vec<Vec<String>>, Value),
    /// Several tables, a blank line apart; one JSON value for all.
    Sections(Vec<Output>, Value),
}

impl Output {
    /// What `--json` prints.
    pub(super) fn json(&self) -> &Value {
        match self {
            Output::Record(_, v) | Output::Rows(_, _, v) | Output::Sections(_, v) => v,
        }
    }
}

/// Runs `coffer admin`.
pub async fn run(args: AdminArgs) -> Result<(), CmdError> {
    let out = match &args.command {
        // The metadata group needs no KMS credentials.
        AdminCommand::Cluster(cluster) => return super::cluster::run(cluster, args.json).await,
        AdminCommand::Key(KeyCommand::Rotate {
            key,
            rewrap: true,
            buckets,
            no_wait,
        }) => {
            let (rotated, key_id) = rotate(&client(&args)?, key).await?;
            return super::reencrypt::rewrap_rotated(&args, rotated, &key_id, buckets, !no_wait)
                .await;
        }
        AdminCommand::Key(cmd) => key_command(&args, &client(&args)?, cmd).await?,
        AdminCommand::Alias(cmd) => alias_command(&client(&args)?, cmd).await?,
        AdminCommand::Reencrypt(re) => return super::reencrypt::run(&args, re).await,
    };
    print!("{}", render(&out, args.json)?);
    Ok(())
}

/// An aws-sdk-kms client for `--endpoint`, signing with the first key pair found in
/// `COFFER_ACCESS_KEY_ID`/`COFFER_SECRET_ACCESS_KEY`, `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`,
/// or `--data-dir`'s `credentials.json`.
fn client(args: &AdminArgs) -> Result<Client, CmdError> {
    let creds = credentials(args)?;
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(args.region.clone()))
        .endpoint_url(&args.endpoint)
        .credentials_provider(Credentials::new(
            creds.access_key_id,
            creds.secret_access_key,
            None,
            None,
            "coffer-admin",
        ))
        .retry_config(RetryConfig::standard().with_max_attempts(2))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(60))
                .build(),
        )
        .build();
    Ok(Client::from_conf(conf))
}

/// The first key pair found in `COFFER_ACCESS_KEY_ID`/`COFFER_SECRET_ACCESS_KEY`,
/// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, or `--data-dir`'s `credentials.json`.
pub(super) fn credentials(args: &AdminArgs) -> Result<StoredCredentials, CmdError> {
    match env_credentials().or_else(aws_env_credentials) {
        Some(c) => Ok(c),
        None => Ok(stored_credentials(&args.data_dir)?.ok_or_else(|| {
            format!(
                "no credentials: set COFFER_ACCESS_KEY_ID and COFFER_SECRET_ACCESS_KEY (or \
                 AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or pass the --data-dir holding \
                 credentials.json (now {})",
                args.data_dir.display()
            )
        })?),
    }
}

/// The pair in `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, when both are set.
fn aws_env_credentials() -> Option<StoredCredentials> {
    match (
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Ok(access_key_id), Ok(secret_access_key)) => Some(StoredCredentials {
            access_key_id,
            secret_access_key,
        }),
        _ => None,
    }
}

/// `<AWS exception name>: <message>` for a service error, else what went wrong on the way.
fn api_error<E, R>(e: SdkError<E, R>) -> CmdError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match (e.code(), e.message()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}").into(),
        (Some(code), None) => code.to_string().into(),
        _ => format!("the KMS API call failed: {}", DisplayErrorContext(&e)).into(),
    }
}

async fn key_command(args: &AdminArgs, kms: &Client, cmd: &KeyCommand) -> Result<Output, CmdError> {
    Ok(match cmd {
        KeyCommand::Create { description } => {
            let out = kms
                .create_key()
                .set_description(description.clone())
                .send()
                .await
                .map_err(api_error)?;
            let m = out
                .key_metadata()
                .ok_or("CreateKey returned no KeyMetadata")?;
            key_record(m, &[])
        }
        KeyCommand::List => list_keys(kms).await?,
        KeyCommand::Describe { key } => describe(kms, key).await?,
        KeyCommand::Enable { key } => {
            kms.enable_key()
                .key_id(key)
                .send()
                .await
                .map_err(api_error)?;
            describe(kms, key).await?
        }
        KeyCommand::Disable { key } => {
            kms.disable_key()
                .key_id(key)
                .send()
                .await
                .map_err(api_error)?;
            describe(kms, key).await?
        }
        // With --rewrap: `run`.
        KeyCommand::Rotate { key, .. } => rotate(kms, key).await?.0,
        KeyCommand::Materials { key } => super::reencrypt::key_materials(args, key).await?,
        KeyCommand::ScheduleDeletion { key, days } => {
            let out = kms
                .schedule_key_deletion()
                .key_id(key)
                .set_pending_window_in_days(*days)
                .send()
                .await
                .map_err(api_error)?;
            let key_id = out.key_id().unwrap_or(key).to_string();
            let state = out.key_state().map(|s| s.as_str().to_string());
            let deletion = out.deletion_date().map(date);
            let window = out.pending_window_in_days();
            Output::Record(
                vec![
                    ("KeyId", key_id.clone()),
                    ("KeyState", state.clone().unwrap_or_default()),
                    ("DeletionDate", deletion.clone().unwrap_or_default()),
                    (
                        "PendingWindowInDays",
                        window.map(|d| d.to_string()).unwrap_or_default(),
                    ),
                ],
                json!({
                    "KeyId": key_id,
                    "KeyState": state,
                    "DeletionDate": deletion,
                    "PendingWindowInDays": window,
                }),
            )
        }
        KeyCommand::CancelDeletion { key } => {
            kms.cancel_key_deletion()
                .key_id(key)
                .send()
                .await
                .map_err(api_error)?;
            describe(kms, key).await?
        }
    })
}

/// RotateKeyOnDemand, then the key's rotations; returns them and the key's ID.
async fn rotate(kms: &Client, key: &str) -> Result<(Output, String), CmdError> {
    let out = kms
        .rotate_key_on_demand()
        .key_id(key)
        .send()
        .await
        .map_err(api_error)?;
    let key_id = out.key_id().unwrap_or(key).to_string();
    let mut rotations = Vec::new();
    let mut marker = None;
    loop {
        let page = kms
            .list_key_rotations()
            .key_id(&key_id)
            .limit(PAGE)
            .set_marker(marker)
            .send()
            .await
            .map_err(api_error)?;
        for r in page.rotations() {
            rotations.push(json!({
                "RotationDate": r.rotation_date().map(date),
                "RotationType": r.rotation_type().map(|t| t.as_str()),
            }));
        }
        match (page.truncated(), page.next_marker()) {
            (true, Some(m)) => marker = Some(m.to_string()),
            _ => break,
        }
    }
    let last = rotations
        .last()
        .and_then(|r| r["RotationDate"].as_str())
        .unwrap_or("-")
        .to_string();
    let fields = vec![
        ("KeyId", key_id.clone()),
        ("Rotations", rotations.len().to_string()),
        ("LastRotation", last),
    ];
    let json = json!({ "KeyId": key_id, "Rotations": rotations });
    Ok((Output::Record(fields, json), key_id))
}

async fn alias_command(kms: &Client, cmd: &AliasCommand) -> Result<Output, CmdError> {
    Ok(match cmd {
        AliasCommand::Create { name, key } => {
            let name = alias_name(name);
            kms.create_alias()
                .alias_name(&name)
                .target_key_id(key)
                .send()
                .await
                .map_err(api_error)?;
            let m = describe_key(kms, &name).await?;
            let arn = m.arn().unwrap_or_default().to_string();
            Output::Record(
                vec![
                    ("AliasName", name.clone()),
                    ("TargetKeyId", m.key_id().to_string()),
                    ("TargetKeyArn", arn.clone()),
                ],
                json!({ "AliasName": name, "TargetKeyId": m.key_id(), "TargetKeyArn": arn }),
            )
        }
        AliasCommand::List { key } => {
            let aliases = list_aliases(kms, key.as_deref()).await?;
            let rows = aliases
                .iter()
                .map(|a| {
                    vec![
                        a.name.clone(),
                        a.target.clone().unwrap_or_else(|| "-".into()),
                        a.arn.clone(),
                    ]
                })
                .collect();
            let json = aliases
                .iter()
                .map(|a| {
                    json!({
                        "AliasName": a.name,
                        "AliasArn": a.arn,
                        "TargetKeyId": a.target,
                        "CreationDate": a.created,
                    })
                })
                .collect();
            Output::Rows(
                vec!["ALIAS NAME", "TARGET KEY ID", "ALIAS ARN"],
                rows,
                Value::Array(json),
            )
        }
        AliasCommand::Delete { name } => {
            let name = alias_name(name);
            kms.delete_alias()
                .alias_name(&name)
                .send()
                .await
                .map_err(api_error)?;
            Output::Record(
                vec![("AliasName", name.clone()), ("Deleted", "true".into())],
                json!({ "AliasName": name, "Deleted": true }),
            )
        }
    })
}

/// `alias/` prepended when missing.
fn alias_name(name: &str) -> String {
    if name.starts_with("alias/") {
        name.to_string()
    } else {
        format!("alias/{name}")
    }
}

/// An alias as listed.
struct Alias {
    name: String,
    arn: String,
    target: Option<String>,
    created: Option<String>,
}

async fn list_aliases(kms: &Client, key: Option<&str>) -> Result<Vec<Alias>, CmdError> {
    let mut all = Vec::new();
    let mut marker = None;
    loop {
        let page = kms
            .list_aliases()
            .set_key_id(key.map(str::to_string))
            .limit(PAGE)
            .set_marker(marker)
            .send()
            .await
            .map_err(api_error)?;
        all.extend(page.aliases().iter().map(|a| Alias {
            name: a.alias_name().unwrap_or_default().to_string(),
            arn: a.alias_arn().unwrap_or_default().to_string(),
            target: a.target_key_id().map(str::to_string),
            created: a.creation_date().map(date),
        }));
        match (page.truncated(), page.next_marker()) {
            (true, Some(m)) => marker = Some(m.to_string()),
            _ => return Ok(all),
        }
    }
}

async fn describe_key(kms: &Client, key: &str) -> Result<KeyMetadata, CmdError> {
    let out = kms
        .describe_key()
        .key_id(key)
        .send()
        .await
        .map_err(api_error)?;
    Ok(out
        .key_metadata()
        .ok_or("DescribeKey returned no KeyMetadata")?
        .clone())
}

/// DescribeKey plus the key's aliases.
async fn describe(kms: &Client, key: &str) -> Result<Output, CmdError> {
    let m = describe_key(kms, key).await?;
    let aliases: Vec<String> = list_aliases(kms, Some(m.key_id()))
        .await?
        .into_iter()
        .map(|a| a.name)
        .collect();
    Ok(key_record(&m, &aliases))
}

/// Every key (ListKeys), each described, with its aliases.
async fn list_keys(kms: &Client) -> Result<Output, CmdError> {
    let mut ids = Vec::new();
    let mut marker = None;
    loop {
        let page = kms
            .list_keys()
            .limit(PAGE)
            .set_marker(marker)
            .send()
            .await
            .map_err(api_error)?;
        ids.extend(
            page.keys()
                .iter()
                .filter_map(|k| k.key_id().map(str::to_string)),
        );
        match (page.truncated(), page.next_marker()) {
            (true, Some(m)) => marker = Some(m.to_string()),
            _ => break,
        }
    }
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for a in list_aliases(kms, None).await? {
        if let Some(t) = a.target {
            by_key.entry(t).or_default().push(a.name);
        }
    }
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for id in ids {
        let m = describe_key(kms, &id).await?;
        let aliases = by_key.get(m.key_id()).cloned().unwrap_or_default();
        rows.push(vec![
            m.key_id().to_string(),
            state(&m),
            m.key_manager()
                .map(|k| k.as_str().to_string())
                .unwrap_or_default(),
            if aliases.is_empty() {
                "-".into()
            } else {
                aliases.join(",")
            },
            m.description().unwrap_or_default().to_string(),
        ]);
        json.push(key_json(&m, &aliases));
    }
    Ok(Output::Rows(
        vec!["KEY ID", "STATE", "MANAGER", "ALIASES", "DESCRIPTION"],
        rows,
        Value::Array(json),
    ))
}

fn state(m: &KeyMetadata) -> String {
    m.key_state()
        .map(|s| s.as_str().to_string())
        .unwrap_or_default()
}

fn key_json(m: &KeyMetadata, aliases: &[String]) -> Value {
    json!({
        "KeyId": m.key_id(),
        "Arn": m.arn(),
        "KeyState": m.key_state().map(|s| s.as_str()),
        "Enabled": m.enabled(),
        "KeyManager": m.key_manager().map(|k| k.as_str()),
        "Description": m.description().unwrap_or_default(),
        "CreationDate": m.creation_date().map(date),
        "DeletionDate": m.deletion_date().map(date),
        "PendingDeletionWindowInDays": m.pending_deletion_window_in_days(),
        "Aliases": aliases,
    })
}

fn key_record(m: &KeyMetadata, aliases: &[String]) -> Output {
    let mut fields = vec![
        ("KeyId", m.key_id().to_string()),
        ("Arn", m.arn().unwrap_or_default().to_string()),
        ("KeyState", state(m)),
        ("Enabled", m.enabled().to_string()),
        (
            "KeyManager",
            m.key_manager()
                .map(|k| k.as_str().to_string())
                .unwrap_or_default(),
        ),
        (
            "Description",
            m.description().unwrap_or_default().to_string(),
        ),
        (
            "CreationDate",
            m.creation_date().map(date).unwrap_or_default(),
        ),
    ];
    if let Some(d) = m.deletion_date() {
        fields.push(("DeletionDate", date(d)));
    }
    if let Some(w) = m.pending_deletion_window_in_days() {
        fields.push(("PendingDeletionWindowInDays", w.to_string()));
    }
    fields.push((
        "Aliases",
        if aliases.is_empty() {
            "-".into()
        } else {
            aliases.join(",")
        },
    ));
    Output::Record(fields, key_json(m, aliases))
}

/// RFC 3339 (`2024-05-01T12:00:00Z`).
fn date(d: &DateTime) -> String {
    d.fmt(DateTimeFormat::DateTime)
        .unwrap_or_else(|_| d.secs().to_string())
}

/// The text printed for `out`: pretty JSON, or an aligned table.
pub(super) fn render(out: &Output, as_json: bool) -> Result<String, CmdError> {
    if as_json {
        return Ok(format!("{}\n", serde_json::to_string_pretty(out.json())?));
    }
    Ok(match out {
        Output::Sections(sections, _) => {
            let texts = sections
                .iter()
                .map(|o| render(o, false))
                .collect::<Result<Vec<_>, _>>()?;
            texts.join("\n")
        }
        Output::Record(fields, _) => {
            let rows: Vec<Vec<String>> = fields
                .iter()
                .map(|(k, v)| vec![k.to_string(), v.clone()])
                .collect();
            table(None, &rows)
        }
        Output::Rows(headers, rows, _) => table(Some(headers), rows),
    })
}

/// Columns padded to their widest cell, two spaces apart; the last column is not padded. An
/// empty cell is shown as `-`, so every row has every column.
fn table(headers: Option<&[&str]>, rows: &[Vec<String>]) -> String {
    let head: Option<Vec<String>> = headers.map(|h| h.iter().map(|s| s.to_string()).collect());
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| if c.is_empty() { "-".into() } else { c.clone() })
                .collect()
        })
        .collect();
    let all: Vec<&Vec<String>> = head.iter().chain(body.iter()).collect();
    let cols = all.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            all.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut s = String::new();
    for r in all {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(widths[c] - cell.chars().count() + 2));
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["a".to_string(), "Enabled".to_string(), "x".to_string()],
            vec![
                "long-id".to_string(),
                "Disabled".to_string(),
                "".to_string(),
            ],
        ];
        assert_eq!(
            table(Some(&["ID", "STATE", "DESC"]), &rows),
            "ID       STATE     DESC\na        Enabled   x\nlong-id  Disabled  -\n"
        );
    }

    #[test]
    fn alias_prefix_is_added_once() {
        assert_eq!(alias_name("x"), "alias/x");
        assert_eq!(alias_name("alias/x"), "alias/x");
    }
}
