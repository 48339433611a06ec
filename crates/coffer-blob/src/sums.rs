//! Per-block checksums of a stored blob, kept in a sidecar file next to it.
//!
//! # Why a CRC over the ciphertext, and not the GCM tag
//! Every chunk of a blob is sealed with AES-GCM, and its tag would prove the chunk intact.
//! But checking a tag needs the object's data key, and a blob node never holds one (it only
//! ever sees ciphertext, DESIGN.md §5): it does not even know where one chunk ends and the
//! next begins. So the node records, when it writes a blob, a CRC32C of each [`SUM_BLOCK`] of
//! the bytes it stores, and the scrub checks the stored bytes against those. That catches what
//! a scrub is for — bits rotting on disk, torn or truncated files, a file overwritten by
//! mistake — at disk speed and without any key. It does not prove the ciphertext authentic
//! (a CRC is no MAC): tampering is still caught by the GCM tag when a gateway opens the chunk.
//! Replicas hold the same bytes, so the same sums verify a block fetched from a peer before it
//! replaces a bad one.
//!
//! # Sidecar format (`<hex id>.sum`, little-endian)
//! ```text
//! "CFBLSUM1" | block size u32 | blob length u64 | count u32 | count × CRC32C u32 | CRC32C u32
//! ```
//! The last field covers everything before it, so a damaged sidecar is told from a damaged
//! blob.

use crc_fast::{CrcAlgorithm, Digest};

/// Bytes covered by one checksum (the last block of a blob may be shorter).
pub const SUM_BLOCK: u64 = 1 << 20;

const MAGIC: &[u8; 8] = b"CFBLSUM1";
const HEADER: usize = 8 + 4 + 8 + 4;

/// CRC32C (Castagnoli) of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    crc_fast::crc32_iscsi(data)
}

/// The checksums of one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSums {
    /// Bytes per block.
    pub block: u64,
    /// The blob's length.
    pub length: u64,
    /// CRC32C of each block, in order.
    pub crcs: Vec<u32>,
}

impl BlockSums {
    /// The sums of `data`, in blocks of `block` bytes.
    pub fn of(data: &[u8], block: u64) -> Self {
        let mut s = Summer::new(block);
        s.update(data);
        s.finish()
    }

    /// Offset and length of block `i`.
    pub fn range(&self, i: usize) -> (u64, u64) {
        let offset = i as u64 * self.block;
        (offset, (self.length - offset).min(self.block))
    }

    /// The sidecar bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + 4 * self.crcs.len() + 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.block as u32).to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        out.extend_from_slice(&(self.crcs.len() as u32).to_le_bytes());
        for c in &self.crcs {
            out.extend_from_slice(&c.to_le_bytes());
        }
        let own = crc32c(&out);
        out.extend_from_slice(&own.to_le_bytes());
        out
    }

    /// Parses a sidecar; says why it is not one.
    pub fn decode(raw: &[u8]) -> Result<Self, String> {
        if raw.len() < HEADER + 4 || &raw[..8] != MAGIC {
            return Err("not a checksum sidecar".into());
        }
        let (body, own) = raw.split_at(raw.len() - 4);
        if crc32c(body).to_le_bytes() != own {
            return Err("the sidecar's own checksum does not match".into());
        }
        let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().expect("4"));
        let block = u64::from(u32_at(8));
        let length = u64::from_le_bytes(body[12..20].try_into().expect("8"));
        let count = u32_at(20) as usize;
        if block == 0 || body.len() != HEADER + 4 * count || count as u64 != length.div_ceil(block)
        {
            return Err("inconsistent sidecar header".into());
        }
        let crcs = (0..count).map(|i| u32_at(HEADER + 4 * i)).collect();
        Ok(BlockSums {
            block,
            length,
            crcs,
        })
    }
}

/// Computes [`BlockSums`] over bytes given in pieces of any size.
pub struct Summer {
    block: u64,
    digest: Digest,
    in_block: u64,
    length: u64,
    crcs: Vec<u32>,
}

impl Summer {
    /// Sums in blocks of `block` bytes.
    pub fn new(block: u64) -> Self {
        assert!(block > 0 && block <= u64::from(u32::MAX));
        Summer {
            block,
            digest: Digest::new(CrcAlgorithm::Crc32Iscsi),
            in_block: 0,
            length: 0,
            crcs: Vec::new(),
        }
    }

    /// Adds the next bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = ((self.block - self.in_block) as usize).min(data.len());
            self.digest.update(&data[..take]);
            self.in_block += take as u64;
            self.length += take as u64;
            data = &data[take..];
            if self.in_block == self.block {
                self.crcs.push(self.digest.finalize_reset() as u32);
                self.in_block = 0;
            }
        }
    }

    /// The sums of everything added.
    pub fn finish(mut self) -> BlockSums {
        if self.in_block > 0 {
            self.crcs.push(self.digest.finalize() as u32);
        }
        BlockSums {
            block: self.block,
            length: self.length,
            crcs: self.crcs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_sum_like_the_whole() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let whole = BlockSums::of(&data, 1000);
        assert_eq!(whole.crcs.len(), 10);
        assert_eq!(whole.crcs[3], crc32c(&data[3000..4000]));
        let mut s = Summer::new(1000);
        for piece in data.chunks(333) {
            s.update(piece);
        }
        assert_eq!(s.finish(), whole);
        let odd = BlockSums::of(&data[..2500], 1000);
        assert_eq!(odd.crcs.len(), 3);
        assert_eq!(odd.range(2), (2000, 500));
        assert_eq!(BlockSums::of(&[], 1000).crcs.len(), 0);
    }

    #[test]
    fn sidecar_round_trips_and_detects_damage() {
        let sums = BlockSums::of(b"hello world, some ciphertext", 8);
        let mut raw = sums.encode();
        assert_eq!(BlockSums::decode(&raw).unwrap(), sums);
        raw[HEADER] ^= 1;
        assert!(BlockSums::decode(&raw)
            .unwrap_err()
            .contains("own checksum"));
        assert!(BlockSums::decode(b"nope").is_err());
    }
}
