//! Generates the kubelet device plugin API (tonic client and server) from
//! `proto/deviceplugin.proto`. protox parses the proto in Rust, so no `protoc` is needed.

fn main() {
    let proto = "proto/deviceplugin.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])
        .expect("proto/deviceplugin.proto is valid proto3 (it ships with the crate)");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)
        .expect("code generation from a parsed proto only fails on I/O in OUT_DIR");
}
