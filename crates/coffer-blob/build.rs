//! Compiles `proto/blob.proto` with the vendored `protoc` (no system protoc needed), as
//! crates/coffer-meta does for `proto/meta.proto`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build reads PROTOC from the environment; a build script is single-threaded.
    std::env::set_var("PROTOC", protoc);
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto");
    let proto = format!("{proto_dir}/blob.proto");
    println!("cargo:rerun-if-changed={proto}");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Data frames as `bytes::Bytes`: handed to the store and back without a copy.
        .bytes(".coffer.blob.v1")
        .compile_protos(&[proto.as_str()], &[proto_dir])?;
    Ok(())
}
