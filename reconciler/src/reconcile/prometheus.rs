//! Asks a Prometheus server for canary windows, when `Mesh`
//! `metrics.source` is `prometheus`. IO at the edge: the two instant
//! queries of [`WindowQuery`] on the HTTP query API (`GET /api/v1/query`),
//! each bounded in time; the answers are read by the pure
//! [`WindowQuery::stats`]. Every failure (down, slow, an error answer,
//! garbage) comes back as a [`QueryError`] naming the server. A server
//! behind authentication gets the reconciler's [`PrometheusAuth`] (from a
//! file, never from the policy repo).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::canary::{PrometheusError, WindowQuery, WindowStats};

/// Largest answer read (two small vectors are a few kB).
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// Why a window could not be read from Prometheus.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("Prometheus at {url}: {problem}")]
    Unreachable { url: String, problem: String },
    #[error("Prometheus at {url} answered {status}: {problem}")]
    Answer {
        url: String,
        status: u16,
        problem: PrometheusError,
    },
}

/// How the reconciler authenticates to Prometheus.
#[derive(Clone, PartialEq, Eq)]
pub enum PrometheusAuth {
    /// `Authorization: Bearer <token>` (a Prometheus behind an
    /// authenticating proxy).
    Bearer(String),
    /// HTTP basic authentication (Prometheus' own `web.config.file`).
    Basic { user: String, password: String },
}

impl std::fmt::Debug for PrometheusAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PrometheusAuth::Bearer(_) => f.write_str("Bearer(…)"),
            PrometheusAuth::Basic { user, .. } => write!(f, "Basic({user}, …)"),
        }
    }
}

impl PrometheusAuth {
    /// A bearer token file (the whole file, trimmed).
    pub fn bearer(text: &str) -> Option<PrometheusAuth> {
        let token = text.trim();
        (!token.is_empty()).then(|| PrometheusAuth::Bearer(token.to_string()))
    }

    /// A basic-auth file: `user:password` on its first line.
    pub fn basic(text: &str) -> Option<PrometheusAuth> {
        let line = text.lines().next()?.trim_end_matches('\r');
        let (user, password) = line.split_once(':')?;
        (!user.is_empty()).then(|| PrometheusAuth::Basic {
            user: user.to_string(),
            password: password.to_string(),
        })
    }

    fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            PrometheusAuth::Bearer(token) => request.bearer_auth(token),
            PrometheusAuth::Basic { user, password } => request.basic_auth(user, Some(password)),
        }
    }
}

/// A client for one Prometheus server's query API.
#[derive(Clone, Debug)]
pub struct Prometheus {
    client: reqwest::Client,
    /// Base URL, without a trailing `/` (`http://prom:9090`, or with a
    /// path prefix behind a reverse proxy).
    base: String,
    auth: Option<PrometheusAuth>,
}

impl Prometheus {
    /// A client whose every request (connect included) ends within `timeout`.
    pub fn new(
        base: &str,
        timeout: Duration,
        auth: Option<PrometheusAuth>,
    ) -> Result<Prometheus, QueryError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| QueryError::Unreachable {
                url: base.to_string(),
                problem: e.to_string(),
            })?;
        Ok(Prometheus {
            client,
            base: base.trim_end_matches('/').to_string(),
            auth,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Both subsets' stats over the window ending at `at`.
    pub async fn window(
        &self,
        query: &WindowQuery,
        at: SystemTime,
    ) -> Result<WindowStats, QueryError> {
        let time = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let time = format!("{:.3}", time.as_secs_f64());
        let (requests, p99) = (query.requests(), query.p99());
        let (requests, p99) =
            tokio::join!(self.instant(&requests, &time), self.instant(&p99, &time));
        let ((status, requests), (p99_status, p99)) = (requests?, p99?);
        query.stats(&requests, &p99).map_err(|problem| {
            // The status of the answer that was wrong (an error answer's
            // body says why; its status alone would not).
            let status = match &problem {
                PrometheusError::Failed { .. } if status == 200 => p99_status,
                _ => status.max(p99_status),
            };
            QueryError::Answer {
                url: self.base.clone(),
                status,
                problem,
            }
        })
    }

    /// One instant query: the status and the body, whatever the status
    /// (Prometheus explains a refused query in a JSON body).
    async fn instant(&self, promql: &str, time: &str) -> Result<(u16, String), QueryError> {
        let unreachable = |problem: String| QueryError::Unreachable {
            url: self.base.clone(),
            problem,
        };
        let mut request = self
            .client
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", promql), ("time", time)]);
        if let Some(auth) = &self.auth {
            request = auth.apply(request);
        }
        let response = request.send().await.map_err(|e| unreachable(describe(e)))?;
        let status = response.status().as_u16();
        if response
            .content_length()
            .is_some_and(|n| n > MAX_ANSWER as u64)
        {
            return Err(unreachable(format!("an answer over {MAX_ANSWER} bytes")));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| unreachable(describe(e)))?;
        if body.len() > MAX_ANSWER {
            return Err(unreachable(format!("an answer over {MAX_ANSWER} bytes")));
        }
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// A reqwest error with its causes (`error sending request: … Connection
/// refused`), which its `Display` alone leaves out, and without the URL
/// (its long encoded query says nothing the base URL does not).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = if e.is_timeout() {
        "no answer in time".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query() -> WindowQuery {
        WindowQuery {
            service: "api".into(),
            stable: "v1".into(),
            canary: "v2".into(),
            window_ms: 2000,
        }
    }

    /// A server answering every connection with `answer` (after `delay`),
    /// then closing.
    async fn serve(answer: &'static str, delay: Duration) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 4096];
                    let _ = stream.read(&mut buf).await;
                    tokio::time::sleep(delay).await;
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        format!("http://{addr}")
    }

    #[test]
    fn credentials_files_are_read_and_never_printed() {
        assert_eq!(
            PrometheusAuth::bearer(" sekrit\n"),
            Some(PrometheusAuth::Bearer("sekrit".into()))
        );
        assert_eq!(PrometheusAuth::bearer("\n"), None);
        assert_eq!(
            PrometheusAuth::basic("gitmesh:pa:ss\r\nignored\n"),
            Some(PrometheusAuth::Basic {
                user: "gitmesh".into(),
                password: "pa:ss".into()
            })
        );
        assert_eq!(PrometheusAuth::basic("no colon"), None);
        assert_eq!(PrometheusAuth::basic(":password"), None);
        let shown = format!(
            "{:?} {:?}",
            PrometheusAuth::Bearer("sekrit".into()),
            PrometheusAuth::basic("gitmesh:pa:ss").unwrap()
        );
        assert!(
            !shown.contains("sekrit") && !shown.contains("pa:ss"),
            "{shown}"
        );
    }

    /// Every query carries the credentials: a server that records each
    /// request's `Authorization` header (and answers garbage).
    #[tokio::test]
    async fn queries_carry_the_credentials() {
        use std::sync::{Arc, Mutex};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 8192];
                    let n = stream.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    let auth = head
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("authorization")
                                .then(|| value.trim().to_string())
                        })
                        .unwrap_or_default();
                    record.lock().unwrap().push(auth);
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                        .await;
                });
            }
        });
        let timeout = Duration::from_secs(2);
        for (auth, expected) in [
            (PrometheusAuth::bearer("sekrit"), "Bearer sekrit"),
            // base64("gitmesh:pa:ss")
            (
                PrometheusAuth::basic("gitmesh:pa:ss"),
                "Basic Z2l0bWVzaDpwYTpzcw==",
            ),
            (None, ""),
        ] {
            seen.lock().unwrap().clear();
            let p = Prometheus::new(&base, timeout, auth).unwrap();
            assert!(p.window(&query(), SystemTime::now()).await.is_err());
            let seen = seen.lock().unwrap().clone();
            assert_eq!(seen, [expected, expected], "{expected}");
        }
    }

    #[tokio::test]
    async fn down_slow_or_garbage_is_an_error_naming_prometheus() {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let timeout = Duration::from_millis(500);
        let err = Prometheus::new(&closed, timeout, None)
            .unwrap()
            .window(&query(), SystemTime::now())
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("Prometheus at {closed}: ")),
            "{text}"
        );
        assert!(text.to_lowercase().contains("refused"), "{text}");
        assert!(!text.contains("/api/v1/query"), "{text}");

        let slow = serve("HTTP/1.1 200 OK\r\n\r\n", Duration::from_secs(5)).await;
        let err = Prometheus::new(&slow, timeout, None)
            .unwrap()
            .window(&query(), SystemTime::now())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no answer in time"), "{err}");

        let garbage = serve(
            "HTTP/1.1 502 Bad Gateway\r\ncontent-length: 11\r\nconnection: close\r\n\r\nbad gateway",
            Duration::ZERO,
        )
        .await;
        let err = Prometheus::new(&garbage, timeout, None)
            .unwrap()
            .window(&query(), SystemTime::now())
            .await
            .unwrap_err();
        assert!(
            matches!(
                &err,
                QueryError::Answer {
                    status: 502,
                    problem: PrometheusError::NotJson { .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("Prometheus at http://"),
            "{err}"
        );
    }
}
