//! The control socket: a Unix socket (root only) on which the CLI asks the daemon for status and
//! changes. Nothing listens on the network for control.

pub mod client;
pub mod protocol;
pub mod server;

pub use protocol::{PROTOCOL_VERSION, Request, ResponseEnvelope};
