//! The HTTP face: routes, body limits, and the listener (plain or TLS from mounted files).
//!
//! Every verb reads at most `max_body_bytes`; a larger or malformed body is answered with 400
//! and a one-line message naming the field, and the server keeps serving.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use super::webhook::Review;
use super::wire::{BindingArgs, ExtenderArgs, PreemptionArgs, PreemptionResult};
use super::{Server, volcano};

type Shared = Arc<Server>;

/// The router of one server.
pub fn router(server: Shared) -> Router {
    Router::new()
        .route("/filter", post(filter))
        .route("/prioritize", post(prioritize))
        .route("/bind", post(bind))
        .route("/preempt", post(preempt))
        .route("/webhook", post(webhook))
        .route("/volcano/onSessionOpen", post(session))
        .route("/volcano/onSessionClose", post(session))
        .route("/volcano/predicate", post(volcano_predicate))
        .route("/volcano/prioritize", post(volcano_prioritize))
        .route("/volcano/allocate", post(volcano_allocate))
        .route("/volcano/deallocate", post(volcano_deallocate))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(server)
}

fn json<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn bad_request(message: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
}

/// Reads the whole body, refusing more than the limit.
async fn read(server: &Server, body: Body) -> Result<Bytes, Response> {
    let limit = server.settings.max_body_bytes;
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        bad_request(format!(
            "request body is larger than {limit} bytes or unreadable"
        ))
    })
}

async fn filter(State(s): State<Shared>, body: Body) -> Response {
    let body = match read(&s, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match ExtenderArgs::parse(&body) {
        Ok(args) => json(&s.filter(args).await),
        Err(e) => bad_request(e),
    }
}

async fn prioritize(State(s): State<Shared>, body: Body) -> Response {
    let body = match read(&s, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match ExtenderArgs::parse(&body) {
        Ok(args) => match s.prioritize(args).await {
            Ok(list) => json(&list),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
        },
        Err(e) => bad_request(e),
    }
}

async fn bind(State(s): State<Shared>, body: Body) -> Response {
    let body = match read(&s, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match BindingArgs::parse(&body) {
        Ok(args) => json(&s.bind(args).await),
        Err(e) => bad_request(e),
    }
}

/// `/preempt`: hamr does not veto kube-scheduler's victims; they are answered back as meta
/// victims, as the protocol requires.
async fn preempt(State(s): State<Shared>, body: Body) -> Response {
    let body = match read(&s, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match PreemptionArgs::parse(&body) {
        Ok(args) => json(&PreemptionResult {
            node_name_to_meta_victims: args.victims,
        }),
        Err(e) => bad_request(e),
    }
}

async fn webhook(State(s): State<Shared>, body: Body) -> Response {
    let body = match read(&s, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match Review::parse(&body) {
        Ok(review) => json(&s.admit(review).await),
        Err(e) => bad_request(e),
    }
}

/// Volcano's session hooks: the body (the whole session) is not needed, the caches are ours;
/// only HTTP 200 matters to Volcano.
async fn session(State(s): State<Shared>, body: Body) -> Response {
    match read(&s, body).await {
        Ok(_) => json(&serde_json::json!({})),
        Err(r) => r,
    }
}

async fn volcano_predicate(State(s): State<Shared>, body: Body) -> Response {
    let body = match read(&s, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match volcano::parse_predicate(&body) {
        Ok((task, node)) => json(&s.volcano_predicate(task, node).await),
        Err(e) => bad_request(e),
    }
}

async fn volcano_prioritize(State(s): State<Shared>, body: Body) -> Response {
    let body = match read(&s, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match volcano::parse_prioritize(&body) {
        Ok((task, nodes)) => json(&s.volcano_prioritize(task, nodes).await),
        Err(e) => bad_request(e),
    }
}

async fn volcano_allocate(State(s): State<Shared>, body: Body) -> Response {
    let body = match read(&s, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match volcano::parse_task(&body) {
        Ok(task) => json(&s.volcano_allocate(task).await),
        Err(e) => bad_request(e),
    }
}

async fn volcano_deallocate(State(s): State<Shared>, body: Body) -> Response {
    let body = match read(&s, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match volcano::parse_task(&body) {
        Ok(task) => json(&s.volcano_deallocate(task).await),
        Err(e) => bad_request(e),
    }
}

async fn readyz(State(s): State<Shared>) -> Response {
    match (s.synced(), s.leader()) {
        (true, true) => (StatusCode::OK, "ok: leader, caches synced\n").into_response(),
        (true, false) => (
            StatusCode::OK,
            "ok: follower, caches synced and warm, not deciding\n",
        )
            .into_response(),
        (false, _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "caches not synced yet: waiting for the initial lists of nodes, pods and quotas\n",
        )
            .into_response(),
    }
}

async fn metrics(State(s): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics_text().await,
    )
        .into_response()
}

/// The probe and metrics router of the second listener: nothing that decides or writes.
pub fn probe_router(server: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(server)
}

/// TLS from PEM files (a certificate chain and its key), as a webhook needs.
pub fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<tokio_rustls::rustls::ServerConfig> {
    use anyhow::Context;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading certificates from {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing certificates in {}", cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", cert.display());
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the private key from {}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and key do not make a TLS identity")?;
    Ok(config)
}

/// Serves `router` on `listener`, over TLS when `tls` is given, until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<tokio_rustls::rustls::ServerConfig>,
) -> anyhow::Result<()> {
    let Some(tls) = tls else {
        axum::serve(listener, router).await?;
        return Ok(());
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    loop {
        let (stream, peer): (tokio::net::TcpStream, SocketAddr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(stream).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let service = hyper_util::service::TowerToHyperService::new(router);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection");
            }
        });
    }
}
