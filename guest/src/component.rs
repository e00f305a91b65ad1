//! The WebAssembly component face (written next).
