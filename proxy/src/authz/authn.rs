//! JWT authentication of one request: find the bearer token, pick the
//! provider by issuer, get its keys from the cache, verify. Composes the
//! pure [`super::jwt`] with the IO of [`super::jwks`]; a token verified
//! once is answered from [`super::verified`] while that still holds.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use gitmesh_proxy_config::JwtAuthentication;
use http::HeaderMap;
use serde_json::{Map, Value};

use super::jwks::{JwksCache, http_client};
use super::jwt::{self, JwtError};
use super::verified::{Verified, VerifiedTokens, token_digest};

/// A request's accepted bearer token.
#[derive(Clone, Debug)]
pub struct Authenticated {
    /// Its verified claims (shared with the cache).
    pub claims: Arc<Map<String, Value>>,
    /// Whether the cache of verified tokens answered (no signature check).
    pub cached: bool,
}

#[derive(Debug)]
pub struct JwtAuthenticator {
    config: JwtAuthentication,
    caches: Vec<JwksCache>,
    verified: VerifiedTokens,
}

impl JwtAuthenticator {
    pub fn new(config: JwtAuthentication) -> Self {
        let client = http_client();
        let caches = config
            .providers
            .iter()
            .map(|p| JwksCache::new(p.jwks.clone(), client.clone()))
            .collect();
        JwtAuthenticator {
            config,
            caches,
            verified: VerifiedTokens::default(),
        }
    }

    pub fn config(&self) -> &JwtAuthentication {
        &self.config
    }

    /// The verified claims; `None` when there is no token and none is
    /// required.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<Authenticated>, JwtError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.authenticate_at(headers, now).await
    }

    /// [`Self::authenticate`] at `now` (seconds since the epoch).
    async fn authenticate_at(
        &self,
        headers: &HeaderMap,
        now: u64,
    ) -> Result<Option<Authenticated>, JwtError> {
        let Some(token) = jwt::bearer(headers)? else {
            return if self.config.required {
                Err(JwtError::Missing)
            } else {
                Ok(None)
            };
        };
        let digest = token_digest(token);
        if let Some(kept) = self.verified.get(&digest) {
            // The provider's keys are asked for as on a first sight, so
            // that a stale set is refetched and a rotation seen.
            let keys = self.caches[kept.provider].keys(kept.kid.as_deref()).await;
            if keys.is_some_and(|keys| kept.holds(&keys, now)) {
                return Ok(Some(Authenticated {
                    claims: kept.claims,
                    cached: true,
                }));
            }
            self.verified.remove(&digest);
        }
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
        let provider = &self.config.providers[index];
        let claims = Arc::new(jwt::verify(token, provider, &keys, now)?);
        if let Some(valid_until) = jwt::accepted_until(&claims, provider.leeway_seconds) {
            let kept = Verified {
                provider: index,
                kid: head.kid.map(Arc::from),
                keys,
                claims: claims.clone(),
                valid_until,
                size: token.len(),
            };
            self.verified.insert(digest, kept, now);
        }
        Ok(Some(Authenticated {
            claims,
            cached: false,
        }))
    }
}

#[cfg(test)]
mod tests;
