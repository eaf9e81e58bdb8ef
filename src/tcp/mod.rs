//! Raw TCP mode: listeners that balance any TCP service over the pools, and TLS passthrough
//! routed by the ClientHello's server name (`client_hello`), never decrypted.

pub mod client_hello;
mod relay;

pub use relay::Relay;
