//! The control client the CLI uses: one request, one response, errors a person can act on.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::protocol::{PROTOCOL_VERSION, Request, RequestEnvelope, ResponseEnvelope};

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "logjail is not running (no control socket at {path}); start it with `logjail run` or `docker compose up -d logjail`"
    )]
    NotRunning { path: PathBuf },
    #[error(
        "permission denied on {path}: the control socket is root's; run as root (or with sudo / docker exec)"
    )]
    PermissionDenied { path: PathBuf },
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("control socket {path}: the daemon's answer is not understood: {message}")]
    Protocol { path: PathBuf, message: String },
}

/// How long the CLI waits for an answer; the daemon answers in milliseconds.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Sends one request and returns the daemon's response (which may itself be an error).
pub fn call(socket: &Path, request: Request) -> Result<ResponseEnvelope, ClientError> {
    let io_error = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ClientError::NotRunning {
                path: socket.to_path_buf(),
            }
        }
        std::io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
            path: socket.to_path_buf(),
        },
        _ => ClientError::Io {
            path: socket.to_path_buf(),
            source,
        },
    };
    let mut stream = UnixStream::connect(socket).map_err(io_error)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io_error)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io_error)?;
    let mut line = serde_json::to_string(&RequestEnvelope {
        version: PROTOCOL_VERSION,
        request,
    })
    .map_err(|e| ClientError::Protocol {
        path: socket.to_path_buf(),
        message: e.to_string(),
    })?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io_error)?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(io_error)?;
    serde_json::from_str(&answer).map_err(|e| ClientError::Protocol {
        path: socket.to_path_buf(),
        message: e.to_string(),
    })
}
