//! `coffer admin reencrypt`: bulk re-encryption jobs through a gateway's admin API
//! (`/admin/v1/jobs`, see `coffer_gateway::jobs_api`), authenticated with
//! `Authorization: Bearer <access key id>:<secret access key>`.
//!
//! The admin API is plain HTTP on a loopback listener by default; this client speaks HTTP/1.1
//! over TCP itself (one request per connection), so `--admin-endpoint` is `http://host:port`.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::admin::{credentials, render, Output};
use super::CmdError;
use crate::cli::{AdminArgs, ReencryptArgs, ReencryptCommand, ReencryptStartArgs};

/// Runs `coffer admin reencrypt`.
pub async fn run(admin: &AdminArgs, args: &ReencryptArgs) -> Result<(), CmdError> {
    let creds = credentials(admin)?;
    let api = Api::new(
        &args.admin_endpoint,
        format!("{}:{}", creds.access_key_id, creds.secret_access_key),
    )?;
    let job = match &args.command {
        ReencryptCommand::Start(start) => {
            let job = api
                .call("POST", "/admin/v1/jobs/reencrypt", Some(start_body(start)))
                .await?;
            if start.wait {
                let id = str_of(&job, "id");
                eprintln!("started job {id}");
                return watch(&api, &id, admin.json).await;
            }
            job
        }
        ReencryptCommand::List => {
            let v = api.call("GET", "/admin/v1/jobs", None).await?;
            print!("{}", render(&list_output(v), admin.json)?);
            return Ok(());
        }
        ReencryptCommand::Show { id } => api.call("GET", &job_path(id, None), None).await?,
        ReencryptCommand::Pause { id } => {
            api.call("POST", &job_path(id, Some("pause")), None).await?
        }
        ReencryptCommand::Resume { id } => {
            api.call("POST", &job_path(id, Some("resume")), None)
                .await?
        }
        ReencryptCommand::Cancel { id } => {
            api.call("POST", &job_path(id, Some("cancel")), None)
                .await?
        }
        ReencryptCommand::Watch { id } => return watch(&api, id, admin.json).await,
    };
    print!("{}", render(&job_output(job), admin.json)?);
    Ok(())
}

fn start_body(a: &ReencryptStartArgs) -> Value {
    json!({
        "bucket": a.bucket,
        "prefix": a.prefix,
        "source": a.source,
        "all_versions": a.all_versions,
        "target_key_arn": a.target_key,
        "bucket_key_enabled": a.bucket_key == "on",
    })
}

fn job_path(id: &str, action: Option<&str>) -> String {
    let id: String = id
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    match action {
        Some(a) => format!("/admin/v1/jobs/{id}/{a}"),
        None => format!("/admin/v1/jobs/{id}"),
    }
}

fn str_of(v: &Value, field: &str) -> String {
    match &v[field] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn u64_of(v: &Value, path: &[&str]) -> u64 {
    path.iter().fold(v, |v, f| &v[*f]).as_u64().unwrap_or(0)
}

/// Follows a job until it is completed, cancelled, failed or paused, drawing a progress bar
/// on stderr; then prints its summary.
async fn watch(api: &Api, id: &str, as_json: bool) -> Result<(), CmdError> {
    let path = job_path(id, None);
    let mut bar = Bar::new();
    loop {
        let job = api.call("GET", &path, None).await?;
        let state = str_of(&job, "state");
        bar.draw(&job);
        if matches!(
            state.as_str(),
            "completed" | "cancelled" | "failed" | "paused"
        ) {
            bar.finish();
            print!("{}", render(&job_output(job), as_json)?);
            return match state.as_str() {
                "failed" => Err(format!("job {id} failed").into()),
                _ => Ok(()),
            };
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A one-line progress bar on stderr: done/total, rate, ETA.
struct Bar {
    started: Instant,
    first_done: Option<u64>,
    drawn: bool,
}

impl Bar {
    fn new() -> Self {
        Bar {
            started: Instant::now(),
            first_done: None,
            drawn: false,
        }
    }

    fn draw(&mut self, job: &Value) {
        let done = u64_of(job, &["done"]);
        let total = job["total"].as_u64();
        let first = *self.first_done.get_or_insert(done);
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            (done.saturating_sub(first)) as f64 / secs
        } else {
            0.0
        };
        let (bar, count, eta) = match total {
            Some(t) if t > 0 => {
                let width = 30usize;
                let filled = ((done.min(t) as f64 / t as f64) * width as f64) as usize;
                let eta = if rate > 0.0 {
                    format!("{:.0}s", (t.saturating_sub(done)) as f64 / rate)
                } else {
                    "?".into()
                };
                (
                    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled)),
                    format!("{done}/{t}"),
                    eta,
                )
            }
            _ => ("[counting...]".into(), format!("{done}/?"), "?".into()),
        };
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\r{} {bar} {count} objects  {rate:.1}/s  ETA {eta}   ",
            str_of(job, "state")
        );
        let _ = err.flush();
        self.drawn = true;
    }

    fn finish(&self) {
        if self.drawn {
            eprintln!();
        }
    }
}

/// A job as a FIELD/VALUE table (with the skipped objects' reasons and the first of them).
fn job_output(job: Value) -> Output {
    let spec = &job["kind"]["reencrypt"];
    let source = match &spec["source"] {
        Value::String(s) => s.replace('_', "-"),
        Value::Object(m) => match m.get("sse_kms") {
            Some(Value::String(arn)) => format!("sse-kms:{arn}"),
            _ => "sse-kms".into(),
        },
        _ => String::new(),
    };
    let reasons: Vec<String> = job["skipped_by_reason"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    let mut fields = vec![
        ("ID", str_of(&job, "id")),
        ("STATE", str_of(&job, "state")),
        ("BUCKET", str_of(spec, "bucket")),
        ("PREFIX", str_of(spec, "prefix")),
        ("SOURCE", source),
        (
            "VERSIONS",
            if spec["all_versions"] == json!(true) {
                "all"
            } else {
                "current"
            }
            .into(),
        ),
        ("TARGET KEY", str_of(spec, "target_key_arn")),
        (
            "BUCKET KEY",
            if spec["bucket_key_enabled"] == json!(true) {
                "on"
            } else {
                "off"
            }
            .into(),
        ),
        ("TOTAL", str_of(&job, "total")),
        ("DONE", str_of(&job, "done")),
        (
            "REWRAPPED",
            u64_of(&job, &["counters", "rewrapped"]).to_string(),
        ),
        (
            "ALREADY DONE",
            u64_of(&job, &["counters", "already_done"]).to_string(),
        ),
        (
            "SKIPPED",
            u64_of(&job, &["counters", "skipped"]).to_string(),
        ),
        ("FAILED", u64_of(&job, &["counters", "failed"]).to_string()),
        ("SKIP REASONS", reasons.join(" ")),
    ];
    if let Some(e) = job["error"].as_str() {
        fields.push(("ERROR", e.to_owned()));
    }
    if let Some(list) = job["skipped"].as_array() {
        for s in list.iter().take(20) {
            fields.push((
                "SKIPPED OBJECT",
                format!(
                    "{} ({}): {}{}",
                    str_of(s, "key"),
                    str_of(s, "version_id"),
                    str_of(s, "reason"),
                    s["detail"]
                        .as_str()
                        .map(|d| format!(" — {d}"))
                        .unwrap_or_default()
                ),
            ));
        }
        if list.len() > 20 {
            fields.push((
                "SKIPPED OBJECT",
                format!("... {} more (--json shows them)", list.len() - 20),
            ));
        }
    }
    Output::Record(fields, job)
}

fn list_output(v: Value) -> Output {
    let rows = v["jobs"]
        .as_array()
        .map(|jobs| {
            jobs.iter()
                .map(|j| {
                    let spec = &j["kind"]["reencrypt"];
                    vec![
                        str_of(j, "id"),
                        str_of(j, "state"),
                        str_of(spec, "bucket"),
                        str_of(spec, "prefix"),
                        format!("{}/{}", str_of(j, "done"), str_of(j, "total")),
                        u64_of(j, &["counters", "rewrapped"]).to_string(),
                        u64_of(j, &["counters", "skipped"]).to_string(),
                        u64_of(j, &["counters", "failed"]).to_string(),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    Output::Rows(
        vec![
            "ID",
            "STATE",
            "BUCKET",
            "PREFIX",
            "DONE/TOTAL",
            "REWRAPPED",
            "SKIPPED",
            "FAILED",
        ],
        rows,
        v,
    )
}

/// The admin API: one HTTP/1.1 request per connection.
struct Api {
    host: String,
    port: u16,
    bearer: String,
}

impl Api {
    fn new(endpoint: &str, bearer: String) -> Result<Self, CmdError> {
        let rest = endpoint.strip_prefix("http://").ok_or_else(|| {
            format!("--admin-endpoint {endpoint:?}: expected http://host:port (the admin listener)")
        })?;
        let authority = rest.trim_end_matches('/');
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() => (
                h.trim_start_matches('[').trim_end_matches(']').to_owned(),
                p.parse::<u16>()
                    .map_err(|_| format!("--admin-endpoint {endpoint:?}: bad port"))?,
            ),
            _ => (authority.to_owned(), 80),
        };
        Ok(Api { host, port, bearer })
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, CmdError> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}:{}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.host,
            self.port,
            self.bearer,
            body.len()
        );
        let io = async {
            let mut stream = TcpStream::connect((self.host.as_str(), self.port)).await?;
            stream.write_all(request.as_bytes()).await?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await?;
            Ok::<_, std::io::Error>(raw)
        };
        let raw = tokio::time::timeout(Duration::from_secs(30), io)
            .await
            .map_err(|_| format!("{}:{}: no answer within 30 s", self.host, self.port))?
            .map_err(|e| format!("{}:{}: {e}", self.host, self.port))?;
        let (status, body) = parse_response(&raw)?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("HTTP {status}: the answer is not JSON: {e}"))?;
        if !(200..300).contains(&status) {
            let msg = v["error"].as_str().unwrap_or("unknown error");
            return Err(format!("HTTP {status}: {msg}").into());
        }
        Ok(v)
    }
}

/// The status and body of an HTTP/1.1 response (Content-Length, chunked, or up to the end).
fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), CmdError> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("incomplete HTTP response")?;
    let head = std::str::from_utf8(&raw[..end])?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or("bad HTTP status line")?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let mut body = &raw[end + 4..];
    if !chunked {
        return Ok((status, body.to_vec()));
    }
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunked body")?;
        let size_str = std::str::from_utf8(&body[..line_end])?;
        let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok((status, out));
        }
        out.extend_from_slice(body.get(..size).ok_or("truncated chunk")?);
        body = body.get(size + 2..).ok_or("truncated chunk")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse() {
        let (s, b) = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"{}"[..]));
        let (s, b) = parse_response(
            b"HTTP/1.1 401 Unauthorized\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{\"a\r\n3\r\n\":1\r\n1\r\n}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((s, b.as_slice()), (401, &b"{\"a\":1}"[..]));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert_eq!(job_path("a b", Some("pause")), "/admin/v1/jobs/a%20b/pause");
        assert!(Api::new("https://x:1", String::new()).is_err());
        let api = Api::new("http://127.0.0.1:9001/", String::new()).unwrap();
        assert_eq!((api.host.as_str(), api.port), ("127.0.0.1", 9001));
    }
}
