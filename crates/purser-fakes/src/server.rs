//! Serving a router on an ephemeral local port, with the one thing axum's own `serve`
//! cannot do: drop a connection without answering, which is how the fakes inject
//! "connection lost" faults. A handler asks for it by putting [`DropConnection`] in its
//! response's extensions; the connection is then closed before any byte of a response.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::ServiceExt;

use crate::FakeError;

/// Marker extension: close the connection instead of answering.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DropConnection;

/// A response that closes the connection unanswered.
pub(crate) fn drop_connection() -> Response {
    let mut response = ().into_response();
    response.extensions_mut().insert(DropConnection);
    response
}

#[derive(Debug)]
struct DroppedOnPurpose;

impl std::fmt::Display for DroppedOnPurpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DroppedOnPurpose {}

/// Binds 127.0.0.1 on an ephemeral port and serves `router` until `shutdown` turns true.
pub(crate) async fn spawn(
    name: &'static str,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>), FakeError> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|source| FakeError::Bind { name, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| FakeError::Bind { name, source })?;
    let handle = tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::warn!(fake = name, %error, "accept failed");
                        continue;
                    }
                },
                _ = shutdown.changed() => break,
            };
            let router = router.clone();
            let mut conn_shutdown = shutdown.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                        let router = router.clone();
                        async move {
                            let response = match router.oneshot(request).await {
                                Ok(response) => response,
                                Err(never) => match never {},
                            };
                            if response.extensions().get::<DropConnection>().is_some() {
                                // An error from the service makes hyper close the connection
                                // without writing a response.
                                Err(DroppedOnPurpose)
                            } else {
                                Ok(response)
                            }
                        }
                    });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    _ = connection => {}
                    _ = conn_shutdown.changed() => {}
                }
            });
        }
    });
    Ok((addr, handle))
}

/// A token bucket over the real monotonic clock: quotas are about request rate in real time,
/// and a test that stops the fake clock must not be throttled forever.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    per_second: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// `None` when `per_second` is zero (no quota).
    pub(crate) fn new(per_second: u32, burst: u32) -> Option<Arc<Self>> {
        if per_second == 0 {
            return None;
        }
        let burst = f64::from(burst.max(1));
        Some(Arc::new(Self {
            per_second: f64::from(per_second),
            burst,
            state: Mutex::new((burst, Instant::now())),
        }))
    }

    /// Takes a token; `Err(wait)` says how long until one is available.
    pub(crate) fn take(&self) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let elapsed = now.duration_since(state.1).as_secs_f64();
        state.0 = (state.0 + elapsed * self.per_second).min(self.burst);
        state.1 = now;
        if state.0 >= 1.0 {
            state.0 -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - state.0) / self.per_second))
        }
    }
}

/// The configured response latency, applied before each answer.
pub(crate) async fn delay(latency: Duration) {
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
}

/// 32 random bytes as hex: bearer tokens the fakes issue.
pub(crate) fn random_token(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}{}", hex::encode(bytes))
}

/// The bearer token of an `Authorization` header, if any.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}
