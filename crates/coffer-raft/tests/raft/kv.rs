//! A small key-value application for the tests: `set KEY VALUE` answers the previous value,
//! `incr KEY` answers the new counter value, so that answers show the order of application.

use std::collections::HashMap;

use coffer_raft::{ApplyError, LogCommand, StateMachineApp};
use rocksdb::{WriteBatch, DB};

pub const KV_CF: &str = "kv";

#[derive(Debug, Default)]
pub struct KvApp;

pub fn set(key: &str, value: &str) -> Vec<u8> {
    format!("set {key} {value}").into_bytes()
}

pub fn incr(key: &str) -> Vec<u8> {
    format!("incr {key}").into_bytes()
}

/// The value of `key` in `db`.
pub fn get(db: &DB, key: &str) -> Option<String> {
    let cf = db.cf_handle(KV_CF).expect("kv column family");
    db.get_cf(cf, key.as_bytes())
        .expect("read")
        .map(|v| String::from_utf8(v).expect("utf-8"))
}

/// Every entry of the kv column family, in key order.
pub fn dump(db: &DB) -> Vec<(Vec<u8>, Vec<u8>)> {
    let cf = db.cf_handle(KV_CF).expect("kv column family");
    db.iterator_cf(cf, rocksdb::IteratorMode::Start)
        .map(|item| {
            let (k, v) = item.expect("iterate");
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

impl StateMachineApp for KvApp {
    const COLUMN_FAMILIES: &'static [&'static str] = &[KV_CF];

    fn apply(
        &self,
        db: &DB,
        batch: &mut WriteBatch,
        commands: &[LogCommand],
    ) -> Result<Vec<Vec<u8>>, ApplyError> {
        let cf = db
            .cf_handle(KV_CF)
            .ok_or_else(|| ApplyError("no kv column family".into()))?;
        // The writes of the earlier commands of this call, which are not in `db` yet.
        let mut overlay: HashMap<String, String> = HashMap::new();
        let mut answers = Vec::with_capacity(commands.len());
        for command in commands {
            let text = String::from_utf8_lossy(&command.data).into_owned();
            let parts: Vec<&str> = text.splitn(3, ' ').collect();
            let current = |key: &str,
                           overlay: &HashMap<String, String>|
             -> Result<Option<String>, ApplyError> {
                if let Some(v) = overlay.get(key) {
                    return Ok(Some(v.clone()));
                }
                Ok(db
                    .get_cf(cf, key.as_bytes())?
                    .map(|v| String::from_utf8_lossy(&v).into_owned()))
            };
            let answer = match parts.as_slice() {
                ["set", key, value] => {
                    let previous = current(key, &overlay)?;
                    overlay.insert((*key).to_owned(), (*value).to_owned());
                    batch.put_cf(cf, key.as_bytes(), value.as_bytes());
                    previous.unwrap_or_default()
                }
                ["incr", key] => {
                    let n: u64 = current(key, &overlay)?
                        .map(|v| v.parse().unwrap_or(0))
                        .unwrap_or(0)
                        + 1;
                    overlay.insert((*key).to_owned(), n.to_string());
                    batch.put_cf(cf, key.as_bytes(), n.to_string().as_bytes());
                    n.to_string()
                }
                // A rejected command is still applied: it answers the rejection.
                _ => format!("error: bad command {text:?}"),
            };
            answers.push(answer.into_bytes());
        }
        Ok(answers)
    }
}
