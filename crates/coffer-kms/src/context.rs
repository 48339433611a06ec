//! The canonical byte encoding of an encryption context, bound as AAD.
//!
//! Entries in key order (a `BTreeMap` sorts `String`s by their UTF-8 bytes), each key and value
//! length-prefixed, so `{"a":"bc"}` and `{"ab":"c"}` encode differently:
//! `count u32 BE ‖ (len u32 BE ‖ key ‖ len u32 BE ‖ value)*`.

use crate::EncryptionContext;

/// Encodes `ctx` canonically (see the module doc).
pub fn canonical_context(ctx: &EncryptionContext) -> Vec<u8> {
    let size = 4 + ctx
        .iter()
        .map(|(k, v)| 8 + k.len() + v.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(ctx.len() as u32).to_be_bytes());
    for (k, v) in ctx {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn boundaries_are_unambiguous() {
        assert_ne!(
            canonical_context(&ctx(&[("a", "bc")])),
            canonical_context(&ctx(&[("ab", "c")]))
        );
        assert_ne!(
            canonical_context(&ctx(&[("a", "b"), ("c", "d")])),
            canonical_context(&ctx(&[("a", "b\0\0\0\x01cd")]))
        );
        assert_eq!(
            canonical_context(&EncryptionContext::new()),
            vec![0, 0, 0, 0]
        );
    }

    #[test]
    fn order_independent_and_exact() {
        let a = ctx(&[("z", "1"), ("a", "2")]);
        let b = ctx(&[("a", "2"), ("z", "1")]);
        assert_eq!(canonical_context(&a), canonical_context(&b));
        assert_eq!(
            canonical_context(&ctx(&[("k", "vv")])),
            vec![0, 0, 0, 1, 0, 0, 0, 1, b'k', 0, 0, 0, 2, b'v', b'v']
        );
    }
}
