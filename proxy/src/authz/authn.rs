//! JWT authentication of one request: find the bearer token, pick the
//! provider by issuer, get its keys from the cache, verify. Composes the
//! pure [`super::jwt`] with the IO of [`super::jwks`].

use std::time::{SystemTime, UNIX_EPOCH};

use gitmesh_proxy_config::JwtAuthentication;
use http::HeaderMap;
use serde_json::{Map, Value};

use super::jwks::{JwksCache, http_client};
use super::jwt::{self, JwtError};

#[derive(Debug)]
pub struct JwtAuthenticator {
    config: JwtAuthentication,
    caches: Vec<JwksCache>,
}

impl JwtAuthenticator {
    pub fn new(config: JwtAuthentication) -> Self {
        let client = http_client();
        let caches = config
            .providers
            .iter()
            .map(|p| JwksCache::new(p.jwks.clone(), client.clone()))
            .collect();
        JwtAuthenticator { config, caches }
    }

    pub fn config(&self) -> &JwtAuthentication {
        &self.config
    }

    /// The verified claims; `None` when there is no token and none is
    /// required.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<Map<String, Value>>, JwtError> {
        let Some(token) = jwt::bearer(headers)? else {
            return if self.config.required {
                Err(JwtError::Missing)
            } else {
                Ok(None)
            };
        };
        let head = jwt::peek(token)?;
        let index = self
            .config
            .providers
            .iter()
            .position(|p| p.issuer == head.issuer)
            .ok_or(JwtError::UnknownIssuer)?;
        let keys = self.caches[index]
            .keys(head.kid.as_deref())
            .await
            .ok_or(JwtError::KeysUnavailable)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        jwt::verify(token, &self.config.providers[index], &keys, now).map(Some)
    }
}
