//! The server's connections: how many at once, how long a client may take or idle, how long Ctrl-C waits, and the
//! one line of JSON on every error, hyper's own included.
//!
//! `axum::serve` sets none of these bounds: a client that connects and sends nothing holds its connection (and a
//! file descriptor) forever, and graceful shutdown waits for every such client. Here each connection runs on
//! hyper's HTTP/1 builder with a header-read timeout (which also closes a keep-alive connection left idle), each
//! request must arrive whole within the same time, a semaphore bounds the connections, and shutdown has a deadline.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

use super::ApiError;

/// The server's bounds on its clients.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// The most a client may take to send a request's headers, or its whole body, and the longest a connection
    /// may sit idle between requests.
    pub timeout: Duration,
    /// How long Ctrl-C waits for requests in flight before closing what is left.
    pub shutdown: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            timeout: Duration::from_secs(30),
            shutdown: Duration::from_secs(5),
        }
    }
}

/// Serves `router` on `listener` within `limits` until `stop` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.timeout);
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors, say: wait for some to close rather than spin.
                Err(e) => {
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tokio::spawn(refuse_busy(stream, limits.max_connections));
            continue;
        };
        let (router, timeout) = (router.clone(), limits.timeout);
        let service = hyper::service::service_fn(move |req| within(router.clone(), req, timeout));
        let conn = graceful
            .watch(builder.serve_connection(TokioIo::new(JsonErrors::new(stream)), service));
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "closing the connections still open after {:?}",
            limits.shutdown
        );
    }
}

/// `router`'s answer to `req`, or a 408 when the request's body has not all arrived (or the answer is not ready)
/// within `timeout`.
async fn within(
    router: Router,
    req: axum::http::Request<hyper::body::Incoming>,
    timeout: Duration,
) -> Result<axum::response::Response, std::convert::Infallible> {
    match tokio::time::timeout(timeout, router.oneshot(req)).await {
        Ok(answer) => answer,
        Err(_) => Ok(ApiError(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request did not arrive whole within {} s",
                timeout.as_secs_f64()
            ),
        )
        .into_response()),
    }
}

/// Answers a connection past the limit with a 503 and closes it.
async fn refuse_busy(mut stream: TcpStream, max: usize) {
    let reply = error_response(
        503,
        "Service Unavailable",
        &format!("the server is serving {max} connections, its limit; try again"),
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(&reply).await?;
        stream.shutdown().await
    })
    .await;
}

/// A whole HTTP/1.1 response whose body is `{"error": msg}`, closing the connection.
fn error_response(code: u16, reason: &str, msg: &str) -> Vec<u8> {
    let body = serde_json::json!({ "error": msg }).to_string();
    format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What hyper's own answer to a request it cannot parse says, as one line of JSON.
///
/// Hyper writes that answer itself (a 400, 414 or 431 with an empty body, before any route runs) and offers no hook
/// to change it; it is recognised here as the only empty-bodied 4xx the server writes, since every one of ours
/// carries its JSON.
fn json_for_hyper_error(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let status = text.strip_prefix("HTTP/1.1 4")?;
    if !text.ends_with("\r\n\r\n")
        || !text
            .to_ascii_lowercase()
            .contains("\r\ncontent-length: 0\r\n")
    {
        return None;
    }
    let (code, reason, msg) = match status.get(..2)? {
        "14" => (
            414,
            "URI Too Long",
            "the request's target is longer than the server reads",
        ),
        "31" => (
            431,
            "Request Header Fields Too Large",
            "the request has too many headers, or too large ones",
        ),
        _ => (
            400,
            "Bad Request",
            "not an HTTP/1.1 request: a malformed request line, header or Content-Length",
        ),
    };
    Some(error_response(code, reason, msg))
}

/// A connection whose writes go through [`json_for_hyper_error`]: one write of hyper's empty-bodied error head is
/// replaced by its JSON response.
struct JsonErrors<S> {
    inner: S,
    /// The replacement still to send, and how much of it is sent.
    pending: Vec<u8>,
    sent: usize,
}

impl<S> JsonErrors<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            sent: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> JsonErrors<S> {
    /// Sends what is left of a replacement before anything else.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonErrors<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonErrors<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(reply) = json_for_hyper_error(buf) {
            (self.pending, self.sent) = (reply, 0);
            // Hyper's head counts as written; the reply goes out now or on the flush that follows.
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_error_heads_become_json_and_ours_pass() {
        let hyper =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let reply = String::from_utf8(json_for_hyper_error(hyper).unwrap()).unwrap();
        assert!(
            reply.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{reply}"
        );
        let body = reply.split("\r\n\r\n").nth(1).unwrap();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(json["error"].as_str().unwrap().contains("too many headers"));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 20\r\n\r\n";
        assert_eq!(json_for_hyper_error(ours), None);
        assert_eq!(
            json_for_hyper_error(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            None
        );
    }
}
