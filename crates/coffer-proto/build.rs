//! Generates the tonic/prost code of proto/*.proto with a vendored protoc (no system protoc).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build finds protoc through PROTOC.
    std::env::set_var("PROTOC", protoc);
    tonic_prost_build::configure()
        // Encryption contexts are ordered maps on both sides (crates/coffer-kms EncryptionContext).
        .btree_map(".coffer.kms.v1")
        // Messages that carry plaintext keys get no Debug, so they cannot be logged by accident.
        .skip_debug([
            ".coffer.kms.v1.EncryptRequest",
            ".coffer.kms.v1.DecryptResponse",
            ".coffer.kms.v1.GenerateDataKeyResponse",
            ".coffer.kms.v1.GenerateRandomResponse",
        ])
        .compile_protos(&["../../proto/kms.proto"], &["../../proto"])?;
    Ok(())
}
