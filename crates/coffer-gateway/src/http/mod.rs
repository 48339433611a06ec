//! Wire-level helpers: bodies, aws-chunked, checksums, ranges.
