//! Reads the proxies' `/metrics` pages (the callers' view of every
//! service), for canary analysis. IO at the edge: one plain HTTP/1.1 GET per
//! proxy, concurrently, each bounded in time; a proxy that does not answer,
//! or answers garbage, is left out of the window (and said so in the logs).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;

use crate::canary::Scrape;

/// Largest metrics page read (a sidecar's page is a few tens of kB).
const MAX_PAGE: usize = 8 * 1024 * 1024;

/// Every proxy's page, by proxy id, for the proxies that answered in time.
pub async fn scrape_all(
    admins: Vec<(String, String)>,
    timeout: Duration,
) -> BTreeMap<String, Scrape> {
    let tasks: Vec<_> = admins
        .into_iter()
        .map(|(id, admin)| {
            tokio::spawn(async move {
                let page = tokio::time::timeout(timeout, fetch(&admin)).await;
                let result = match page {
                    Ok(Ok(text)) => Scrape::parse(&text).map_err(|e| e.to_string()),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(format!("no answer within {timeout:?}")),
                };
                (id, admin, result)
            })
        })
        .collect();
    let mut out = BTreeMap::new();
    for task in tasks {
        let Ok((id, admin, result)) = task.await else {
            continue;
        };
        match result {
            Ok(scrape) => {
                out.insert(id, scrape);
            }
            Err(e) => tracing::warn!(proxy = %id, %admin, error = %e, "cannot read proxy metrics"),
        }
    }
    out
}

async fn fetch(admin: &str) -> Result<String, String> {
    let stream = tokio::net::TcpStream::connect(admin)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    let request = Request::get("/metrics")
        .header(hyper::header::HOST, admin)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    let body = Limited::new(response.into_body(), MAX_PAGE)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    String::from_utf8(body.to_vec()).map_err(|_| "the page is not UTF-8".to_string())
}
