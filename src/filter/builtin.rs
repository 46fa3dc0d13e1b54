//! The built-in filter library, compiled into the binary from `src/filter/builtin/*.yaml`.
