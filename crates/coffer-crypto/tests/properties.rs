//! Properties of the chunk format: round trips through [`ChunkSealer`] for every geometry, and
//! every kind of tampering (bit flips, reordering, swapping between blobs or parts, truncation,
//! a false last-chunk flag) fails to open.

use coffer_crypto::{
    BlobCipher, ChunkLayout, ChunkSealer, CryptoError, DataKey, LayeredCipher, TAG_LEN,
};
use proptest::prelude::*;
use proptest::sample::Index;

const BLOB_ID: [u8; 16] = *b"blob-id-0123456\0";
const OTHER_BLOB_ID: [u8; 16] = *b"blob-id-0123456\x01";
const PART: u32 = 3;

fn dek() -> DataKey {
    DataKey::from_slice(&[0x5a; 32]).unwrap()
}

fn cipher(blob_id: &[u8; 16], part: u32) -> BlobCipher {
    BlobCipher::new(&dek(), blob_id, part)
}

/// A chunk size, plaintext of 0..=5 full chunks plus a remainder that is often zero (exact
/// multiples), and how to split the plaintext into pushes.
fn blob() -> impl Strategy<Value = (u32, Vec<u8>, Vec<usize>)> {
    blob_with(0)
}

/// Like [`blob`], with at least `min_full` full chunks.
fn blob_with(min_full: u64) -> impl Strategy<Value = (u32, Vec<u8>, Vec<usize>)> {
    (1u32..=40, min_full..=5)
        .prop_flat_map(|(cs, full)| {
            let rem = prop_oneof![Just(0u64), 0..u64::from(cs)];
            (Just(cs), Just(full), rem)
        })
        .prop_flat_map(|(cs, full, rem)| {
            let size = (full * u64::from(cs) + rem) as usize;
            (
                Just(cs),
                proptest::collection::vec(any::<u8>(), size),
                proptest::collection::vec(0usize..=2 * cs as usize + 1, 1..8)
                    .prop_filter("some piece must be non-empty", |v| v.iter().any(|&n| n > 0)),
            )
        })
}

fn dek2() -> DataKey {
    DataKey::from_slice(&[0xa5; 32]).unwrap()
}

/// The two layers of a DSSE-KMS blob.
fn dsse(blob_id: &[u8; 16], part: u32) -> LayeredCipher {
    LayeredCipher::double(
        BlobCipher::new(&dek(), blob_id, part),
        BlobCipher::outer_layer(&dek2(), blob_id, part),
    )
}

/// Seals `data` through a [`ChunkSealer`], pushing it in pieces of the given lengths (cycled).
fn seal_all(
    c: impl Into<LayeredCipher>,
    cs: u32,
    data: &[u8],
    splits: &[usize],
) -> (Vec<Vec<u8>>, u64) {
    let mut sealer = ChunkSealer::new(c, cs);
    let mut chunks = Vec::new();
    let mut rest = data;
    for &n in splits.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        if n == 0 {
            chunks.extend(sealer.push(&[]));
            continue;
        }
        let (piece, tail) = rest.split_at(n.min(rest.len()));
        chunks.extend(sealer.push(piece));
        rest = tail;
    }
    let (last, total) = sealer.finish();
    chunks.extend(last);
    (chunks, total)
}

fn fails(r: Result<Vec<u8>, CryptoError>) -> bool {
    matches!(r, Err(CryptoError::Open))
}

proptest! {
    #[test]
    fn sealer_round_trips((cs, data, splits) in blob()) {
        let (chunks, total) = seal_all(cipher(&BLOB_ID, PART), cs, &data, &splits);
        prop_assert_eq!(total, data.len() as u64);
        let layout = ChunkLayout::new(total, cs);
        prop_assert_eq!(chunks.len() as u64, layout.chunk_count());
        let c = cipher(&BLOB_ID, PART);
        let mut opened = Vec::new();
        let mut offset = 0u64;
        for (i, sealed) in chunks.iter().enumerate() {
            let i = i as u64;
            prop_assert_eq!(layout.sealed_offset(i), offset);
            prop_assert_eq!(sealed.len(), layout.plain_len(i) as usize + TAG_LEN);
            // The streaming sealer and the one-shot API produce the same bytes.
            let start = layout.plain_offset(i) as usize;
            let plain = &data[start..start + layout.plain_len(i) as usize];
            prop_assert_eq!(sealed, &c.seal_chunk(i, layout.is_last(i), plain));
            opened.extend(c.open_chunk(i, layout.is_last(i), sealed).unwrap());
            offset += sealed.len() as u64;
        }
        prop_assert_eq!(offset, layout.sealed_len());
        prop_assert_eq!(opened, data);
    }

    #[test]
    fn any_bit_flip_fails((cs, data, splits) in blob(), chunk in any::<Index>(),
                          byte in any::<Index>(), bit in 0u8..8) {
        let (mut chunks, total) = seal_all(cipher(&BLOB_ID, PART), cs, &data, &splits);
        let layout = ChunkLayout::new(total, cs);
        let i = chunk.index(chunks.len());
        let b = byte.index(chunks[i].len());
        chunks[i][b] ^= 1 << bit;
        let i = i as u64;
        prop_assert!(fails(cipher(&BLOB_ID, PART).open_chunk(i, layout.is_last(i), &chunks[i as usize])));
    }

    #[test]
    fn reordered_chunks_fail((cs, data, splits) in blob_with(2), a in any::<Index>(), b in any::<Index>()) {
        let (chunks, total) = seal_all(cipher(&BLOB_ID, PART), cs, &data, &splits);
        let layout = ChunkLayout::new(total, cs);
        let n = chunks.len();
        let i = a.index(n);
        let j = (i + 1 + b.index(n - 1)) % n;
        // Chunk j stored where chunk i belongs, and the other way round.
        let c = cipher(&BLOB_ID, PART);
        prop_assert!(fails(c.open_chunk(i as u64, layout.is_last(i as u64), &chunks[j])));
        prop_assert!(fails(c.open_chunk(j as u64, layout.is_last(j as u64), &chunks[i])));
    }

    #[test]
    fn chunks_from_another_blob_part_or_key_fail((cs, data, splits) in blob(), chunk in any::<Index>()) {
        let layout = ChunkLayout::new(data.len() as u64, cs);
        let i = chunk.index(layout.chunk_count() as usize) as u64;
        let last = layout.is_last(i);
        // The same plaintext sealed at the same position of another blob, part, or under another DEK.
        let (other_blob, _) = seal_all(cipher(&OTHER_BLOB_ID, PART), cs, &data, &splits);
        let (other_part, _) = seal_all(cipher(&BLOB_ID, PART + 1), cs, &data, &splits);
        let other_dek = DataKey::from_slice(&[0x5b; 32]).unwrap();
        let (other_key, _) = seal_all(BlobCipher::new(&other_dek, &BLOB_ID, PART), cs, &data, &splits);
        let c = cipher(&BLOB_ID, PART);
        for foreign in [&other_blob, &other_part, &other_key] {
            prop_assert!(fails(c.open_chunk(i, last, &foreign[i as usize])));
        }
    }

    #[test]
    fn truncation_fails((cs, data, splits) in blob(), cut in 1usize..=TAG_LEN + 4) {
        let (chunks, total) = seal_all(cipher(&BLOB_ID, PART), cs, &data, &splits);
        let layout = ChunkLayout::new(total, cs);
        let c = cipher(&BLOB_ID, PART);
        let n = chunks.len();
        // Dropping the last chunk makes the previous one last, which it was not sealed as.
        if n >= 2 {
            prop_assert!(fails(c.open_chunk(n as u64 - 2, true, &chunks[n - 2])));
        }
        // Cutting bytes off the end of the last chunk.
        let last = &chunks[n - 1];
        let kept = last.len().saturating_sub(cut);
        prop_assert!(fails(c.open_chunk(n as u64 - 1, true, &last[..kept])));
        // Truncation to nothing: there is always a last chunk to find.
        prop_assert!(layout.sealed_len() >= TAG_LEN as u64);
        prop_assert!(fails(c.open_chunk(0, true, &[])));
    }

    #[test]
    fn false_last_flag_fails((cs, data, splits) in blob()) {
        let (chunks, total) = seal_all(cipher(&BLOB_ID, PART), cs, &data, &splits);
        let layout = ChunkLayout::new(total, cs);
        let c = cipher(&BLOB_ID, PART);
        for (i, sealed) in chunks.iter().enumerate() {
            let i = i as u64;
            prop_assert!(fails(c.open_chunk(i, !layout.is_last(i), sealed)));
        }
    }

    #[test]
    fn chunks_for_range_exactly_covers((size, cs) in (1u64..=3000, 1u32..=300),
                                       a in any::<Index>(), b in any::<Index>()) {
        let layout = ChunkLayout::new(size, cs);
        let (x, y) = (a.index(size as usize) as u64, b.index(size as usize) as u64);
        let (start, end) = (x.min(y), x.max(y));
        let r = layout.chunks_for_range(start, end);
        let (first, last) = (*r.start(), *r.end());
        prop_assert!(first <= last && last < layout.chunk_count());
        // The first chunk holds `start`, the last holds `end`; chunks are contiguous, so the
        // range covers start..=end with no chunk to spare.
        let first_off = layout.plain_offset(first);
        prop_assert!(first_off <= start && start < first_off + u64::from(layout.plain_len(first)));
        let last_off = layout.plain_offset(last);
        prop_assert!(last_off <= end && end < last_off + u64::from(layout.plain_len(last)));
    }

    #[test]
    fn layout_is_consistent(size in prop_oneof![0u64..=5000, any::<u64>().prop_map(|s| s >> 22)],
                            cs in prop_oneof![1u32..=64, any::<u32>().prop_map(|c| c.max(1))],
                            idx in any::<Index>()) {
        let layout = ChunkLayout::new(size, cs);
        let count = layout.chunk_count();
        prop_assert!(count >= 1);
        prop_assert_eq!(layout.sealed_offset(count), layout.sealed_len());
        prop_assert_eq!(layout.plain_offset(count), size);
        // Every chunk but the last is full; the last is non-empty unless the blob is empty.
        let last = count - 1;
        prop_assert!(layout.is_last(last));
        prop_assert_eq!(layout.plain_offset(last) + u64::from(layout.plain_len(last)), size);
        prop_assert_eq!(layout.plain_len(last) == 0, size == 0);
        let i = idx.index(count.min(usize::MAX as u64) as usize) as u64;
        prop_assert_eq!(layout.is_last(i), i == last);
        prop_assert_eq!(
            layout.sealed_offset(i + 1) - layout.sealed_offset(i),
            u64::from(layout.plain_len(i)) + TAG_LEN as u64
        );
        if i < last {
            prop_assert_eq!(layout.plain_len(i), cs);
        }
    }
}

proptest! {
    /// DSSE-KMS: two layers round trip; every chunk carries two tags; neither data key alone,
    /// nor the keys swapped between layers, nor a single-layer cipher opens a chunk.
    #[test]
    fn two_layers_round_trip_and_need_both_keys((cs, data, splits) in blob()) {
        let (chunks, total) = seal_all(dsse(&BLOB_ID, PART), cs, &data, &splits);
        prop_assert_eq!(total, data.len() as u64);
        let layout = ChunkLayout::with_layers(total, cs, 2);
        let c = dsse(&BLOB_ID, PART);
        let inner_only = cipher(&BLOB_ID, PART);
        let swapped = LayeredCipher::double(
            BlobCipher::new(&dek2(), &BLOB_ID, PART),
            BlobCipher::outer_layer(&dek(), &BLOB_ID, PART),
        );
        let mut opened = Vec::new();
        let mut offset = 0u64;
        for (i, sealed) in chunks.iter().enumerate() {
            let i = i as u64;
            let last = layout.is_last(i);
            prop_assert_eq!(layout.sealed_offset(i), offset);
            prop_assert_eq!(sealed.len() as u64, layout.sealed_chunk_len(i));
            prop_assert_eq!(sealed.len(), layout.plain_len(i) as usize + 2 * TAG_LEN);
            prop_assert!(fails(inner_only.open_chunk(i, last, sealed)));
            prop_assert!(fails(swapped.open_chunk(i, last, sealed)));
            prop_assert!(fails(dsse(&OTHER_BLOB_ID, PART).open_chunk(i, last, sealed)));
            opened.extend(c.open_chunk(i, last, sealed).unwrap());
            offset += sealed.len() as u64;
        }
        prop_assert_eq!(offset, layout.sealed_len());
        prop_assert_eq!(opened, data);
    }
}
