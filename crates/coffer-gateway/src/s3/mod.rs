//! S3 operation handlers, one module per operation family.

pub mod bucket;
pub mod bucket_encryption;
pub mod common;
pub mod copy;
pub mod data;
pub mod list;
pub mod multipart;
pub mod object;
pub mod object_lock;
pub mod update_encryption;
