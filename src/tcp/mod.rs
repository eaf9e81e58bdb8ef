//! Raw TCP mode: listeners that balance any TCP service over the pools, and TLS passthrough
//! routed by the ClientHello's server name (`client_hello`), never decrypted.

// Used by the relay's routing, and by the fuzz target.
#[cfg_attr(not(feature = "fuzzing"), allow(dead_code))]
pub mod client_hello;
