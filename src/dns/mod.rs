//! Upstreams by name: DNS messages (`wire`), the stub resolver that sends them (`client`), and
//! the table of names the pools use with what each resolved to (`table`). The resolver thread
//! (`discovery`, above the snapshot) drives them; nothing here runs on a worker.

pub mod client;
pub mod table;
pub mod wire;

pub use client::{LookupError, Resolver};
pub use table::Names;
