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

/// What one round of reading the proxies' pages gave.
#[derive(Debug, Default)]
pub struct Scrapes {
    /// Every page read, by proxy id.
    pub pages: BTreeMap<String, Scrape>,
    /// The proxies that did not answer in time or answered garbage, with why.
    pub unreadable: BTreeMap<String, String>,
}

/// Every proxy's page, by proxy id; the proxies that did not answer in
/// time, or answered something that is not a metrics page, with why.
pub async fn scrape_all(admins: Vec<(String, String)>, timeout: Duration) -> Scrapes {
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
    let mut out = Scrapes::default();
    for task in tasks {
        let Ok((id, admin, result)) = task.await else {
            continue;
        };
        match result {
            Ok(scrape) => {
                out.pages.insert(id, scrape);
            }
            Err(e) => {
                tracing::warn!(proxy = %id, %admin, error = %e, "cannot read proxy metrics");
                out.unreadable.insert(id, e);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A server answering every connection with `answer`, then closing.
    async fn serve(answer: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_proxy_down_or_answering_garbage_is_unreadable_with_why() {
        let garbage = serve(
            "HTTP/1.1 200 OK\r\ncontent-length: 26\r\nconnection: close\r\n\r\n\
             gitmesh_upstream_rq{ 1 2\n",
        )
        .await;
        let error = serve("HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n").await;
        let page = serve(
            "HTTP/1.1 200 OK\r\ncontent-length: 11\r\nconnection: close\r\n\r\n# nothing\n\n",
        )
        .await;
        // A port nothing listens on: bound, then dropped.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let admins = vec![
            ("garbage".to_string(), garbage),
            ("error".to_string(), error),
            ("down".to_string(), closed),
            ("fine".to_string(), page),
        ];
        let got = scrape_all(admins, Duration::from_secs(2)).await;
        assert_eq!(got.pages.keys().collect::<Vec<_>>(), ["fine"]);
        assert_eq!(
            got.unreadable.keys().collect::<Vec<_>>(),
            ["down", "error", "garbage"]
        );
        assert!(
            got.unreadable["down"].starts_with("connect:"),
            "{:?}",
            got.unreadable
        );
        assert!(
            got.unreadable["error"].contains("500"),
            "{:?}",
            got.unreadable
        );
    }
}
