//! The admin listener: `/metrics` (Prometheus text), `/ready`, `/config`
//! (the running config, its version and digest, as JSON) and `/identity`
//! (the mesh identity: SPIFFE ID, certificate in use, trusted roots).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};

use crate::body::ProxyBody;
use crate::metrics::Metrics;
use crate::mtls::MeshIdentity;
use crate::swap::ConfigStore;

#[derive(Debug)]
pub struct Admin {
    pub store: Arc<ConfigStore>,
    pub metrics: Arc<Metrics>,
    /// Read at each scrape: renewal and SIGHUP swap its certificate.
    pub identity: Option<Arc<MeshIdentity>>,
}

fn reply(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::bytes(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

impl Admin {
    pub fn handle(&self, req: &Request<ProxyBody>) -> Response<ProxyBody> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                Bytes::from_static(b"only GET\n"),
            );
        }
        match req.uri().path() {
            "/metrics" => {
                if let Some(identity) = &self.identity {
                    self.metrics.certificate_expires(identity.validity().1);
                }
                reply(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    Bytes::from(self.metrics.encode()),
                )
            }
            "/ready" => reply(StatusCode::OK, "text/plain", Bytes::from_static(b"ready\n")),
            "/config" => {
                let snapshot = self.store.current();
                let mut r = reply(
                    StatusCode::OK,
                    "application/json",
                    snapshot.config_json.clone(),
                );
                if let Ok(v) = HeaderValue::from_str(&snapshot.config.version) {
                    r.headers_mut().insert("x-gitmesh-config-version", v);
                }
                r
            }
            "/identity" => match &self.identity {
                Some(identity) => match serde_json::to_vec_pretty(&identity.view()) {
                    Ok(json) => reply(StatusCode::OK, "application/json", Bytes::from(json)),
                    Err(e) => reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "text/plain",
                        Bytes::from(format!("cannot encode the identity: {e}\n")),
                    ),
                },
                None => reply(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    Bytes::from_static(b"no mesh identity: this sidecar runs without mTLS\n"),
                ),
            },
            _ => reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                Bytes::from_static(b"admin paths: /metrics /ready /config /identity\n"),
            ),
        }
    }
}
