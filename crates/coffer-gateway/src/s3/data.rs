//! The data path: sealing plaintext into a blob, and streaming a version's plaintext back,
//! opening only the chunks a range needs.

use std::sync::Arc;

use bytes::Bytes;
use coffer_blob::{BlobId, BlobStore, BlobWriter};
use coffer_crypto::{ChunkLayout, ChunkSealer};
use coffer_meta::{MetaError, ObjectVersion, PartRef};
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

/// Deletes the blobs a failed metadata write would have referenced, unless the write may have
/// been applied after all ([`MetaError::outcome_unknown`]): then the metadata may point at them,
/// and they are kept (an orphan for the sweep at worst, never a version whose data is gone).
pub async fn discard_unreferenced(blobs: &Arc<dyn BlobStore>, ids: &[BlobId], error: &MetaError) {
    if error.outcome_unknown() {
        for id in ids {
            tracing::warn!(
                blob = %coffer_blob::blob_name(id),
                error = %error,
                "metadata write of unknown outcome: its blob is kept"
            );
        }
        return;
    }
    delete_blobs(blobs, ids).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use coffer_blob::local::LocalBlobStore;
    use coffer_blob::BlobError;
    use coffer_crypto::DataKey;
    use coffer_meta::{Envelope, ObjectHeaders, SseAlgorithm, FORMAT_VERSION};
    use std::sync::Mutex;

    /// A blob store that records every read (blob, offset, len).
    struct Recording {
        inner: LocalBlobStore,
        reads: Mutex<Vec<(BlobId, u64, u64)>>,
    }

    #[async_trait]
    impl BlobStore for Recording {
        async fn create(&self, id: &BlobId) -> Result<Box<dyn BlobWriter>, BlobError> {
            self.inner.create(id).await
        }
        async fn read(&self, id: &BlobId, offset: u64, len: u64) -> Result<Bytes, BlobError> {
            self.reads.lock().unwrap().push((*id, offset, len));
            self.inner.read(id, offset, len).await
        }
        async fn len(&self, id: &BlobId) -> Result<u64, BlobError> {
            self.inner.len(id).await
        }
        async fn delete(&self, id: &BlobId) -> Result<(), BlobError> {
            self.inner.delete(id).await
        }
    }

    fn key(b: u8) -> DataKey {
        DataKey::from_slice(&[b; 32]).unwrap()
    }

    fn dsse_keys() -> DataKeys {
        DataKeys {
            inner: key(1),
            outer: Some(key(2)),
        }
    }

    fn envelope(algorithm: SseAlgorithm) -> Envelope {
        Envelope {
            v: FORMAT_VERSION,
            algorithm,
            kms_key_arn: None,
            wrapped_dek: Vec::new(),
            context: Default::default(),
            user_context: None,
            bucket_key_id: None,
            second_wrapped_dek: None,
            sse_c_key_hmac: None,
            sse_c_salt: None,
            sse_c_key_md5: None,
            generation: 0,
        }
    }

    /// Seals `parts` (plaintext per part) as BlobSink does, into a version of `algorithm`.
    async fn store(
        blobs: &Recording,
        keys: &DataKeys,
        algorithm: SseAlgorithm,
        parts: &[Vec<u8>],
        chunk_size: u32,
    ) -> ObjectVersion {
        let mut refs = Vec::new();
        for (i, plain) in parts.iter().enumerate() {
            let part_number = i as u32 + 1;
            let blob_id: BlobId = [part_number as u8; 16];
            let mut writer = blobs.create(&blob_id).await.unwrap();
            let mut sealer = ChunkSealer::new(keys.cipher(&blob_id, part_number), chunk_size);
            let mut chunks = sealer.push(plain);
            let (last, size) = sealer.finish();
            chunks.extend(last);
            for c in chunks {
                writer.append(Bytes::from(c)).await.unwrap();
            }
            let written = writer.commit().await.unwrap();
            let layout = ChunkLayout::with_layers(size, chunk_size, keys.layers());
            assert_eq!(written, layout.sealed_len());
            refs.push(PartRef {
                part_number,
                blob_id,
                size,
                chunk_size,
                etag: String::new(),
                checksum: None,
            });
        }
        ObjectVersion {
            v: FORMAT_VERSION,
            key: "k".into(),
            version_id: "null".into(),
            seq: 0,
            delete_marker: false,
            size: parts.iter().map(|p| p.len() as u64).sum(),
            etag: String::new(),
            last_modified_ms: 0,
            headers: ObjectHeaders::default(),
            checksum: None,
            parts: refs,
            envelope: Some(envelope(algorithm)),
            retention: None,
            legal_hold: false,
            multipart_parts: parts.len() as u32,
        }
    }

    fn recording() -> (tempfile::TempDir, Arc<Recording>) {
        let dir = tempfile::tempdir().unwrap();
        let inner = LocalBlobStore::open(dir.path()).unwrap();
        (
            dir,
            Arc::new(Recording {
                inner,
                reads: Mutex::new(Vec::new()),
            }),
        )
    }

    #[test]
    fn layers_follow_the_envelope() {
        assert_eq!(sse::layers(&envelope(SseAlgorithm::AwsKmsDsse)), 2);
        for alg in [
            SseAlgorithm::Aes256,
            SseAlgorithm::AwsKms,
            SseAlgorithm::SseC,
        ] {
            assert_eq!(sse::layers(&envelope(alg)), 1);
        }
        assert_eq!(dsse_keys().layers(), 2);
        assert_eq!(DataKeys::single(key(1)).layers(), 1);
    }

    #[tokio::test]
    async fn dsse_ranges_open_both_layers_and_read_only_the_needed_chunks() {
        let (_dir, rec) = recording();
        let cs = 64u32;
        let parts: Vec<Vec<u8>> = vec![
            (0..300u32).map(|i| i as u8).collect(),
            (0..130u32).map(|i| (i * 7) as u8).collect(),
        ];
        let whole: Vec<u8> = parts.concat();
        let v = store(&rec, &dsse_keys(), SseAlgorithm::AwsKmsDsse, &parts, cs).await;
        let blobs: Arc<dyn BlobStore> = rec.clone();
        // Every blob is the plaintext plus two tags per chunk.
        for p in &v.parts {
            let len = blobs.len(&p.blob_id).await.unwrap();
            assert_eq!(len, p.size + p.size.div_ceil(cs as u64) * 32);
        }
        for (start, end) in [
            (0, 429),
            (0, 0),
            (63, 64),
            (130, 140),
            (250, 310),
            (429, 429),
        ] {
            rec.reads.lock().unwrap().clear();
            let got = read_all(blobs.clone(), &v, dsse_keys(), start, end)
                .await
                .unwrap();
            assert_eq!(got, whole[start as usize..=end as usize], "{start}-{end}");
            // One read per chunk the range touches, each exactly one sealed (two-tag) chunk.
            let mut expected = Vec::new();
            let mut part_start = 0u64;
            for p in &v.parts {
                let part_end = part_start + p.size;
                if start < part_end && end >= part_start {
                    let layout = ChunkLayout::with_layers(p.size, cs, 2);
                    let s = start.max(part_start) - part_start;
                    let e = end.min(part_end - 1) - part_start;
                    for ci in layout.chunks_for_range(s, e) {
                        expected.push((
                            p.blob_id,
                            layout.sealed_offset(ci),
                            u64::from(layout.plain_len(ci)) + 32,
                        ));
                    }
                }
                part_start = part_end;
            }
            assert_eq!(*rec.reads.lock().unwrap(), expected, "{start}-{end}");
        }
    }

    #[tokio::test]
    async fn dsse_needs_both_keys() {
        let (_dir, rec) = recording();
        let data: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
        let v = store(&rec, &dsse_keys(), SseAlgorithm::AwsKmsDsse, &[data], 64).await;
        let blobs: Arc<dyn BlobStore> = rec.clone();
        let wrong = [
            // Only the inner key: refused before any read.
            DataKeys::single(key(1)),
            // A wrong outer or inner key, or the two swapped: the chunk fails authentication.
            DataKeys {
                inner: key(1),
                outer: Some(key(3)),
            },
            DataKeys {
                inner: key(3),
                outer: Some(key(2)),
            },
            DataKeys {
                inner: key(2),
                outer: Some(key(1)),
            },
        ];
        for (i, keys) in wrong.into_iter().enumerate() {
            rec.reads.lock().unwrap().clear();
            assert!(
                read_all(blobs.clone(), &v, keys, 0, 199).await.is_err(),
                "{i}"
            );
            if i == 0 {
                assert!(rec.reads.lock().unwrap().is_empty());
            }
        }
        assert_eq!(
            read_all(blobs, &v, dsse_keys(), 0, 199)
                .await
                .unwrap()
                .len(),
            200
        );
    }

    #[tokio::test]
    async fn single_layer_objects_are_unchanged() {
        let (_dir, rec) = recording();
        let data: Vec<u8> = (0..200u32).map(|i| (i * 3) as u8).collect();
        let keys = DataKeys::single(key(5));
        let v = store(&rec, &keys, SseAlgorithm::AwsKms, &[data.clone()], 64).await;
        let blobs: Arc<dyn BlobStore> = rec.clone();
        assert_eq!(blobs.len(&v.parts[0].blob_id).await.unwrap(), 200 + 4 * 16);
        let got = read_all(blobs.clone(), &v, DataKeys::single(key(5)), 10, 150)
            .await
            .unwrap();
        assert_eq!(got, data[10..=150]);
        // Two keys for a one-layer object are refused.
        assert!(read_all(blobs, &v, dsse_keys(), 0, 10).await.is_err());
    }

    #[tokio::test]
    async fn a_failed_write_keeps_its_blob_only_when_it_may_have_been_applied() {
        let dir = tempfile::tempdir().unwrap();
        let blobs: Arc<dyn BlobStore> = Arc::new(LocalBlobStore::open(dir.path()).unwrap());
        let mut ids = Vec::new();
        for n in 0..2u8 {
            let id = [n; 16];
            let mut w = blobs.create(&id).await.unwrap();
            w.append(Bytes::from_static(b"sealed")).await.unwrap();
            w.commit().await.unwrap();
            ids.push(id);
        }
        // The group answered too late: the version may point at the blob.
        let unknown = MetaError::Unavailable("retries exhausted".into());
        discard_unreferenced(&blobs, &ids[..1], &unknown).await;
        assert_eq!(blobs.len(&ids[0]).await.unwrap(), 6);
        // The state machine refused the write: nothing points at the blob.
        discard_unreferenced(&blobs, &ids[1..], &MetaError::PreconditionFailed).await;
        assert!(matches!(
            blobs.len(&ids[1]).await,
            Err(BlobError::NotFound(_))
        ));
    }
}
