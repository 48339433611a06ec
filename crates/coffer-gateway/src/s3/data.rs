//! The data path: sealing plaintext into a blob, and streaming a version's plaintext back,
//! opening only the chunks a range needs.

use std::sync::Arc;

use bytes::Bytes;
use coffer_blob::{BlobId, BlobStore, BlobWriter};
use coffer_crypto::{ChunkLayout, ChunkSealer};
use coffer_meta::{ObjectVersion, PartRef};
use futures::{Stream, StreamExt};

use crate::error::{S3Error, S3Result};
use crate::sse::{self, DataKeys};
use crate::state::AppState;

/// Writes one part's plaintext as sealed chunks to a new blob.
pub struct BlobSink {
    writer: Option<Box<dyn BlobWriter>>,
    sealer: Option<ChunkSealer>,
    blob_id: BlobId,
    part_number: u32,
    chunk_size: u32,
}

impl BlobSink {
    /// Starts a new blob for `part_number` of an object whose data keys are `keys`: sealed in
    /// one layer, or two (inner, then outer) when `keys` has an outer key (DSSE-KMS).
    pub async fn create(state: &AppState, keys: &DataKeys, part_number: u32) -> S3Result<Self> {
        let blob_id: BlobId = coffer_crypto::random_bytes().map_err(S3Error::internal)?;
        let chunk_size = state.config.chunk_size;
        let writer = state.blobs.create(&blob_id).await?;
        let sealer = ChunkSealer::new(keys.cipher(&blob_id, part_number), chunk_size);
        Ok(BlobSink {
            writer: Some(writer),
            sealer: Some(sealer),
            blob_id,
            part_number,
            chunk_size,
        })
    }

    /// Seals and writes plaintext.
    pub async fn write(&mut self, data: &[u8]) -> S3Result<()> {
        let (Some(sealer), Some(writer)) = (self.sealer.as_mut(), self.writer.as_mut()) else {
            return Err(S3Error::internal("blob sink used after finish"));
        };
        for chunk in sealer.push(data) {
            writer.append(Bytes::from(chunk)).await?;
        }
        Ok(())
    }

    /// Writes the last chunk and makes the blob durable. The returned part has no ETag yet.
    pub async fn finish(mut self) -> S3Result<PartRef> {
        let (Some(sealer), Some(mut writer)) = (self.sealer.take(), self.writer.take()) else {
            return Err(S3Error::internal("blob sink finished twice"));
        };
        let (chunks, size) = sealer.finish();
        for chunk in chunks {
            if let Err(e) = writer.append(Bytes::from(chunk)).await {
                writer.abort().await;
                return Err(e.into());
            }
        }
        writer.commit().await?;
        Ok(PartRef {
            part_number: self.part_number,
            blob_id: self.blob_id,
            size,
            chunk_size: self.chunk_size,
            etag: String::new(),
            checksum: None,
        })
    }

    /// Discards the blob.
    pub async fn abort(mut self) {
        if let Some(w) = self.writer.take() {
            w.abort().await;
        }
    }
}

/// Deletes blobs freed by a metadata change. Failures only leave orphans for the sweep.
pub async fn delete_blobs(blobs: &Arc<dyn BlobStore>, ids: &[BlobId]) {
    for id in ids {
        if let Err(e) = blobs.delete(id).await {
            tracing::warn!(blob = %coffer_blob::blob_name(id), error = %e, "could not delete freed blob");
        }
    }
}

/// Streams plaintext bytes `[start, end]` (inclusive) of a version, opened with `keys`. The
/// version's envelope says how many layers its blobs have ([`sse::layers`]); keys that do not
/// match it yield an error before any blob is read.
pub fn read_range(
    blobs: Arc<dyn BlobStore>,
    version: &ObjectVersion,
    keys: DataKeys,
    start: u64,
    end: u64,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let layers = version.envelope.as_ref().map_or(1, sse::layers);
    if keys.layers() != layers {
        tracing::error!(
            key = %version.key,
            envelope_layers = layers,
            key_layers = keys.layers(),
            "data keys do not match the version's encryption layers"
        );
        let err = std::io::Error::other("data keys do not match the version's encryption layers");
        return futures::stream::once(async move { Err(err) }).left_stream();
    }
    // Plan the chunk reads up front: (part index, chunk index, slice within the chunk).
    // One cipher (one HKDF per layer) per part the range touches, shared by that part's chunks.
    let mut plan = Vec::new();
    let mut ciphers = std::collections::HashMap::new();
    let mut part_start = 0u64;
    for (pi, part) in version.parts.iter().enumerate() {
        let part_end = part_start + part.size; // exclusive
        if part.size > 0 && start < part_end && end >= part_start {
            ciphers.insert(pi, keys.cipher(&part.blob_id, part.part_number));
            let s = start.max(part_start) - part_start;
            let e = end.min(part_end - 1) - part_start;
            let layout = ChunkLayout::with_layers(part.size, part.chunk_size, layers);
            for ci in layout.chunks_for_range(s, e) {
                let chunk_start = ci * part.chunk_size as u64;
                let from = s.saturating_sub(chunk_start) as usize;
                let to = (e - chunk_start).min(layout.plain_len(ci) as u64 - 1) as usize;
                plan.push((pi, ci, from, to));
            }
        }
        part_start = part_end;
    }
    drop(keys);
    let parts: Arc<Vec<PartRef>> = Arc::new(version.parts.clone());
    let ciphers = Arc::new(ciphers);
    futures::stream::iter(plan)
        .map(move |(pi, ci, from, to)| {
            let blobs = blobs.clone();
            let parts = parts.clone();
            let ciphers = ciphers.clone();
            async move {
                let part = &parts[pi];
                let layout = ChunkLayout::with_layers(part.size, part.chunk_size, layers);
                let mut sealed = blobs
                    .read(&part.blob_id, layout.sealed_offset(ci), layout.sealed_chunk_len(ci))
                    .await
                    .map_err(std::io::Error::other)?
                    .to_vec();
                let cipher = &ciphers[&pi];
                cipher.open_chunk_in_place(ci, layout.is_last(ci), &mut sealed).map_err(|e| {
                    tracing::error!(blob = %coffer_blob::blob_name(&part.blob_id), chunk = ci, "chunk failed authentication");
                    std::io::Error::other(e)
                })?;
                Ok(Bytes::from(sealed).slice(from..=to))
            }
        })
        .buffered(2)
        .right_stream()
}

/// Reads a whole range into memory (for copies of small ranges and tests).
pub async fn read_all(
    blobs: Arc<dyn BlobStore>,
    version: &ObjectVersion,
    keys: DataKeys,
    start: u64,
    end: u64,
) -> S3Result<Vec<u8>> {
    let mut out = Vec::with_capacity((end + 1 - start) as usize);
    let mut s = std::pin::pin!(read_range(blobs, version, keys, start, end));
    while let Some(b) = s.next().await {
        out.extend_from_slice(&b.map_err(S3Error::internal)?);
    }
    Ok(out)
}
