//! The YAML configuration: a strict serde mirror, then validation that reports every error.

pub mod positions;
