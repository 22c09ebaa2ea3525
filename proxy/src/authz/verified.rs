//! Tokens already verified, so that a caller sending the same bearer token
//! on every request pays for one signature check, not one per request
//! (an RS256 or ES256 check costs tens of microseconds; the proxy's own
//! work per request is a few).
//!
//! An entry answers only while all of these hold, else the token is
//! verified again from the start:
//! - the token is the same (entries are keyed by its SHA-256, so memory
//!   does not grow with token size);
//! - its provider's key set is the very set it was verified with (a
//!   refetched set, even an identical one, starts over, so a key removed
//!   from the set stops working at the same time as without the cache);
//! - the token has not expired (`exp` plus the provider's leeway).
//!
//! Refused tokens are never kept. The cache holds at most
//! [`MAX_VERIFIED_TOKENS`] tokens and [`MAX_VERIFIED_BYTES`] of them (a
//! token's claims take about as much memory as the token: 512 tokens of
//! 8 KiB would otherwise hold several megabytes); when full, expired
//! entries go first, then those closest to expiry. It belongs to one
//! [`super::JwtAuthenticator`], which a config change with other JWT
//! settings replaces.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonwebtoken::jwk::JwkSet;
use ring::digest::{SHA256, digest};
use serde_json::{Map, Value};

/// The most tokens kept.
pub const MAX_VERIFIED_TOKENS: usize = 512;
/// The most bytes of tokens kept (their total length).
pub const MAX_VERIFIED_BYTES: usize = 1024 * 1024;

/// The key of a token in the cache.
pub type TokenDigest = [u8; 32];

pub fn token_digest(token: &str) -> TokenDigest {
    let mut out = [0; 32];
    out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    out
}

/// What a verification established.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The provider (its index in the config) and the key id the token
    /// named: what fetching the current key set needs.
    pub provider: usize,
    /// Shared, so that a hit copies no string.
    pub kid: Option<Arc<str>>,
    /// The set the signature was checked with.
    pub keys: Arc<JwkSet>,
    pub claims: Arc<Map<String, Value>>,
    /// The last second (since the epoch) the token is accepted:
    /// `exp` plus leeway.
    pub valid_until: u64,
    /// The token's length: what it counts against the byte budget.
    pub size: usize,
}

impl Verified {
    /// Whether this verification still holds with `keys` as the provider's
    /// current set at `now`.
    pub fn holds(&self, keys: &Arc<JwkSet>, now: u64) -> bool {
        Arc::ptr_eq(&self.keys, keys) && now <= self.valid_until
    }
}

#[derive(Debug)]
pub struct VerifiedTokens {
    max_tokens: usize,
    max_bytes: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<TokenDigest, Verified>,
    /// The sum of the entries' sizes.
    bytes: usize,
}

impl State {
    fn remove(&mut self, token: &TokenDigest) {
        if let Some(old) = self.entries.remove(token) {
            self.bytes -= old.size;
        }
    }
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        VerifiedTokens::with_limits(MAX_VERIFIED_TOKENS, MAX_VERIFIED_BYTES)
    }
}

impl VerifiedTokens {
    pub fn with_limits(max_tokens: usize, max_bytes: usize) -> Self {
        VerifiedTokens {
            max_tokens,
            max_bytes,
            state: Mutex::new(State::default()),
        }
    }

    /// The verification kept for `token`, if any. The caller checks that
    /// it [`Verified::holds`] with the provider's current keys.
    pub fn get(&self, token: &TokenDigest) -> Option<Verified> {
        self.lock().entries.get(token).cloned()
    }

    /// Forgets `token` (its verification no longer holds).
    pub fn remove(&self, token: &TokenDigest) {
        self.lock().remove(token);
    }

    /// Keeps a verification, making room if the cache is full.
    pub fn insert(&self, token: TokenDigest, verified: Verified, now: u64) {
        if self.max_tokens == 0 || verified.size > self.max_bytes {
            return;
        }
        let mut state = self.lock();
        state.remove(&token);
        let full = |s: &State| {
            s.entries.len() >= self.max_tokens || s.bytes + verified.size > self.max_bytes
        };
        if full(&state) {
            let expired: Vec<_> = state
                .entries
                .iter()
                .filter(|(_, v)| now > v.valid_until)
                .map(|(k, _)| *k)
                .collect();
            for k in &expired {
                state.remove(k);
            }
        }
        while full(&state) {
            let soonest = state
                .entries
                .iter()
                .min_by_key(|(_, v)| v.valid_until)
                .map(|(k, _)| *k);
            match soonest {
                Some(k) => state.remove(&k),
                None => break,
            }
        }
        state.bytes += verified.size;
        state.entries.insert(token, verified);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves a map that is still whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Arc<JwkSet> {
        Arc::new(JwkSet { keys: vec![] })
    }

    fn verified(keys: &Arc<JwkSet>, valid_until: u64) -> Verified {
        sized(keys, valid_until, 100)
    }

    fn sized(keys: &Arc<JwkSet>, valid_until: u64, size: usize) -> Verified {
        Verified {
            provider: 0,
            kid: None,
            keys: keys.clone(),
            claims: Arc::new(Map::new()),
            valid_until,
            size,
        }
    }

    #[test]
    fn holds_only_with_the_same_key_set_and_before_expiry() {
        let set = keys();
        let v = verified(&set, 100);
        assert!(v.holds(&set, 100));
        assert!(!v.holds(&set, 101), "expired");
        // An identical set fetched again is another set.
        assert!(!v.holds(&keys(), 50));
    }

    #[test]
    fn digests_tell_tokens_apart() {
        assert_eq!(token_digest("a.b.c"), token_digest("a.b.c"));
        assert_ne!(token_digest("a.b.c"), token_digest("a.b.d"));
    }

    #[test]
    fn a_full_cache_drops_expired_entries_then_the_soonest_to_expire() {
        let set = keys();
        let cache = VerifiedTokens::with_limits(3, 1 << 20);
        cache.insert(token_digest("expired"), verified(&set, 10), 0);
        cache.insert(token_digest("late"), verified(&set, 300), 0);
        cache.insert(token_digest("soon"), verified(&set, 200), 0);
        // At 50, "expired" is gone first.
        cache.insert(token_digest("new"), verified(&set, 400), 50);
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&token_digest("expired")).is_none());
        // Nothing expired now: the one closest to expiry goes.
        cache.insert(token_digest("newer"), verified(&set, 500), 60);
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&token_digest("soon")).is_none());
        for kept in ["late", "new", "newer"] {
            assert!(cache.get(&token_digest(kept)).is_some(), "{kept}");
        }
        // Replacing an entry of a full cache drops nothing else.
        cache.insert(token_digest("late"), verified(&set, 600), 60);
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&token_digest("new")).is_some());
    }

    #[test]
    fn the_byte_budget_evicts_too() {
        let set = keys();
        let cache = VerifiedTokens::with_limits(100, 1000);
        cache.insert(token_digest("a"), sized(&set, 300, 400), 0);
        cache.insert(token_digest("b"), sized(&set, 200, 400), 0);
        assert_eq!(cache.bytes(), 800);
        // 300 more bytes: "b" (closest to expiry) goes.
        cache.insert(token_digest("c"), sized(&set, 400, 300), 0);
        assert!(cache.get(&token_digest("b")).is_none());
        assert_eq!((cache.len(), cache.bytes()), (2, 700));
        // Replacing an entry counts its new size only.
        cache.insert(token_digest("c"), sized(&set, 400, 500), 0);
        assert_eq!((cache.len(), cache.bytes()), (2, 900));
        cache.remove(&token_digest("a"));
        assert_eq!(cache.bytes(), 500);
        // A token over the whole budget is not kept, and evicts nothing.
        cache.insert(token_digest("huge"), sized(&set, 500, 1001), 0);
        assert_eq!((cache.len(), cache.bytes()), (1, 500));
    }
}
