//! The control server: accepts connections on the socket and hands each request to the daemon
//! task that owns what it is about, answering with what that task replies.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, umask};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::protocol::{
    ErrorKind, MAX_REQUEST_BYTES, PROTOCOL_VERSION, RequestEnvelope, ResponseEnvelope,
};
use crate::messages::ControlCall;

/// Why the socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("control socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("control socket {path}: another logjail is running and answers on it")]
    InUse { path: PathBuf },
}

/// Binds the socket with mode 0600: only root (the daemon's user) may talk to it. A stale
/// socket file from a crashed run is replaced; a live one (another daemon answers) is not.
pub async fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    let bind_error = |source| ServerError::Bind {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(bind_error)?;
    }
    if tokio::fs::symlink_metadata(path).await.is_ok() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(ServerError::InUse {
                path: path.to_path_buf(),
            });
        }
        tokio::fs::remove_file(path).await.map_err(bind_error)?;
    }
    // The umask closes the window between bind and chmod where the socket would be open
    // to others.
    let previous = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    umask(previous);
    let listener = bound.map_err(bind_error)?;
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .await
        .map_err(bind_error)?;
    Ok(listener)
}

/// Serves until `shutdown`; each connection gets its own task so a stuck client holds up
/// nobody. Requests go to `calls`.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    calls: mpsc::Sender<ControlCall>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let calls = calls.clone();
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            () = shutdown.cancelled() => {}
                            () = handle(stream, calls) => {}
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "control socket accept failed");
                    // A persistent error (fd limit) must not spin the loop.
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                    }
                }
            }
        }
    }
    let _ = tokio::fs::remove_file(&path).await;
}

async fn handle(stream: UnixStream, calls: mpsc::Sender<ControlCall>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES as u64 + 1));
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let response = if line.len() > MAX_REQUEST_BYTES {
            ResponseEnvelope::failure_of(ErrorKind::Invalid, "request too large")
        } else {
            answer(&line, &calls).await
        };
        let Ok(mut text) = serde_json::to_string(&response) else {
            return;
        };
        text.push('\n');
        if write.write_all(text.as_bytes()).await.is_err() {
            return;
        }
        if line.len() > MAX_REQUEST_BYTES {
            return;
        }
    }
}

async fn answer(line: &str, calls: &mpsc::Sender<ControlCall>) -> ResponseEnvelope {
    let envelope: RequestEnvelope = match serde_json::from_str(line.trim_end()) {
        Ok(envelope) => envelope,
        Err(error) => {
            // Tell an old or new client apart from garbage.
            let version = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("version").and_then(serde_json::Value::as_u64));
            return match version {
                Some(v) if v != u64::from(PROTOCOL_VERSION) => ResponseEnvelope::failure_of(
                    ErrorKind::Invalid,
                    format!(
                        "protocol version {v} is not supported by this daemon (it speaks {PROTOCOL_VERSION}); use the logjail binary of the same release"
                    ),
                ),
                _ => ResponseEnvelope::failure_of(
                    ErrorKind::Invalid,
                    format!("bad request: {error}"),
                ),
            };
        }
    };
    if envelope.version != PROTOCOL_VERSION {
        return ResponseEnvelope::failure_of(
            ErrorKind::Invalid,
            format!(
                "protocol version {} is not supported by this daemon (it speaks {PROTOCOL_VERSION})",
                envelope.version
            ),
        );
    }
    let (reply, response) = oneshot::channel();
    if calls
        .send(ControlCall {
            request: envelope.request,
            reply,
        })
        .await
        .is_err()
    {
        return ResponseEnvelope::failure_of(ErrorKind::Unavailable, "the daemon is shutting down");
    }
    response.await.unwrap_or_else(|_| {
        ResponseEnvelope::failure_of(ErrorKind::Unavailable, "the daemon is shutting down")
    })
}
