//! The `Range` header of GET and HEAD, as S3 reads it: one range of bytes, or none.

use crate::error::S3Error;
use crate::s3_error;

/// Parses `Range` against an object of `size` bytes and returns the inclusive `(first, last)`
/// byte positions to send.
///
/// `bytes=a-b` (`b` past the end is clamped), `bytes=a-` and `bytes=-n` (the last `n` bytes).
/// A range that starts past the end, a suffix of zero bytes, or any range of an empty object
/// is `InvalidRange` (416; the caller adds `Content-Range: bytes */size`). Like S3, a header
/// that does not parse, `a-b` with `a > b`, and several ranges are ignored: `Ok(None)`, and
/// the whole object is sent.
pub fn parse_range(header: &str, size: u64) -> Result<Option<(u64, u64)>, S3Error> {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let unsatisfiable = || {
        Err(
            s3_error!(InvalidRange, "The requested range is not satisfiable")
                .with_detail("RangeRequested", header.trim())
                .with_detail("ActualObjectSize", size.to_string()),
        )
    };
    match (first, last) {
        ("", suffix) => {
            let Some(n) = number(suffix) else {
                return Ok(None);
            };
            if n == 0 || size == 0 {
                return unsatisfiable();
            }
            Ok(Some((size.saturating_sub(n), size - 1)))
        }
        (first, "") => {
            let Some(first) = number(first) else {
                return Ok(None);
            };
            if first >= size {
                return unsatisfiable();
            }
            Ok(Some((first, size - 1)))
        }
        (first, last) => {
            let (Some(first), Some(last)) = (number(first), number(last)) else {
                return Ok(None);
            };
            if first > last {
                return Ok(None);
            }
            if first >= size {
                return unsatisfiable();
            }
            Ok(Some((first, last.min(size - 1))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::S3ErrorCode;

    fn unsatisfiable(header: &str, size: u64) -> bool {
        matches!(parse_range(header, size), Err(e) if e.code() == S3ErrorCode::InvalidRange)
    }

    #[test]
    fn the_three_forms() {
        assert_eq!(parse_range("bytes=0-9", 100).unwrap(), Some((0, 9)));
        assert_eq!(parse_range("bytes=10-", 100).unwrap(), Some((10, 99)));
        assert_eq!(parse_range("bytes=-10", 100).unwrap(), Some((90, 99)));
        assert_eq!(parse_range("bytes=5-5", 100).unwrap(), Some((5, 5)));
        assert_eq!(parse_range("  bytes=0-0 ", 1).unwrap(), Some((0, 0)));
    }

    #[test]
    fn ends_are_clamped() {
        assert_eq!(parse_range("bytes=90-1000", 100).unwrap(), Some((90, 99)));
        assert_eq!(parse_range("bytes=-1000", 100).unwrap(), Some((0, 99)));
        assert_eq!(
            parse_range("bytes=0-18446744073709551615", 10).unwrap(),
            Some((0, 9))
        );
        assert_eq!(parse_range("bytes=99-", 100).unwrap(), Some((99, 99)));
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert!(unsatisfiable("bytes=100-", 100));
        assert!(unsatisfiable("bytes=100-200", 100));
        assert!(unsatisfiable("bytes=-0", 100));
        assert!(unsatisfiable("bytes=0-", 0));
        assert!(unsatisfiable("bytes=0-0", 0));
        assert!(unsatisfiable("bytes=-5", 0));
        let err = parse_range("bytes=200-300", 100).unwrap_err();
        assert_eq!(err.message(), "The requested range is not satisfiable");
        assert_eq!(err.code().status(), http::StatusCode::RANGE_NOT_SATISFIABLE);
        assert!(err.to_xml("r").contains(
            "<RangeRequested>bytes=200-300</RangeRequested><ActualObjectSize>100</ActualObjectSize>"
        ));
    }

    #[test]
    fn ignored_ranges() {
        for header in [
            "bytes=5-1",
            "bytes=0-1,5-6",
            "bytes=-",
            "bytes=a-b",
            "bytes=1-b",
            "bytes=+1-2",
            "bytes= 1 - 2",
            "bytes=0x1-2",
            "bytes=99999999999999999999-",
            "items=0-1",
            "0-1",
            "",
            "bytes=",
            "bytes=5",
        ] {
            assert_eq!(parse_range(header, 100).unwrap(), None, "{header:?}");
        }
        // Ignored even when the object is empty.
        assert_eq!(parse_range("bytes=5-1", 0).unwrap(), None);
    }
}
