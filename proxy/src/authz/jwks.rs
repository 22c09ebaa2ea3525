//! JWKS fetching and caching (the IO edge of JWT authentication).
//!
//! Each provider's key set is read from its file or URL on first use,
//! cached for `refresh`, and read again when stale or when a token names a
//! key id the cached set lacks (at most once per [`MIN_REFETCH`], so a
//! stream of tokens with made-up kids cannot hammer the issuer). When a
//! refetch fails, the last good set keeps serving; with none, requests get
//! 503 `jwks-unavailable`.
//!
//! URLs are fetched with rustls, a 2 s connect and 5 s total timeout, at
//! most 1 MiB, and redirects only to https.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use tokio::sync::Mutex;
use tokio::time::Instant;

use gitmesh_proxy_config::JwksSource;

/// The shortest time between two fetches of one provider's keys (or the
/// refresh interval, when shorter).
pub const MIN_REFETCH: Duration = Duration::from_secs(5);
const MAX_JWKS_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("reading {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("fetching {url}: {message}")]
    Http { url: String, message: String },
    #[error("the key set is larger than 1 MiB")]
    TooLarge,
    #[error("not a JSON Web Key Set: {0}")]
    Parse(serde_json::Error),
}

#[derive(Debug, Default)]
struct Cached {
    keys: Option<Arc<JwkSet>>,
    fetched: Option<Instant>,
    attempted: Option<Instant>,
}

/// One provider's key set, shared by every request.
#[derive(Debug)]
pub struct JwksCache {
    source: JwksSource,
    client: reqwest::Client,
    state: Mutex<Cached>,
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= 5 || attempt.url().scheme() != "https" {
                attempt.stop()
            } else {
                attempt.follow()
            }
        }))
        .build()
        .expect("a rustls client builds")
}

impl JwksCache {
    pub fn new(source: JwksSource, client: reqwest::Client) -> Self {
        JwksCache {
            source,
            client,
            state: Mutex::new(Cached::default()),
        }
    }

    /// The current keys: cached while fresh; refetched when stale, or when
    /// `want_kid` is not among them (rate-limited). `None` when no set was
    /// ever fetched successfully.
    pub async fn keys(&self, want_kid: Option<&str>) -> Option<Arc<JwkSet>> {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        let fresh = state
            .fetched
            .is_some_and(|t| now.duration_since(t) < self.source.refresh.to_std());
        let has_kid = |keys: &JwkSet| {
            want_kid.is_none_or(|kid| {
                keys.keys
                    .iter()
                    .any(|k| k.common.key_id.as_deref() == Some(kid))
            })
        };
        let satisfied = fresh && state.keys.as_deref().is_some_and(has_kid);
        let min_gap = MIN_REFETCH.min(self.source.refresh.to_std());
        let may_fetch = state
            .attempted
            .is_none_or(|t| now.duration_since(t) >= min_gap);
        if !satisfied && may_fetch {
            state.attempted = Some(now);
            match self.fetch().await {
                Ok(keys) => {
                    state.keys = Some(Arc::new(keys));
                    state.fetched = Some(now);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "JWKS fetch failed; keeping the last good key set")
                }
            }
        }
        state.keys.clone()
    }

    async fn fetch(&self) -> Result<JwkSet, FetchError> {
        let bytes = match (&self.source.file, &self.source.url) {
            (Some(path), _) => tokio::fs::read(path)
                .await
                .map_err(|source| FetchError::File {
                    path: path.clone(),
                    source,
                })?,
            (None, Some(url)) => self.fetch_url(url).await?,
            (None, None) => {
                return Err(FetchError::Http {
                    url: String::new(),
                    message: "no source".into(),
                });
            }
        };
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(FetchError::TooLarge);
        }
        serde_json::from_slice(&bytes).map_err(FetchError::Parse)
    }

    async fn fetch_url(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let http = |message: String| FetchError::Http {
            url: url.to_string(),
            message,
        };
        let mut response = self
            .client
            .get(url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| http(e.to_string()))?;
        if !response.status().is_success() {
            return Err(http(format!("status {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| http(e.to_string()))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err(FetchError::TooLarge);
            }
        }
        Ok(body)
    }
}
