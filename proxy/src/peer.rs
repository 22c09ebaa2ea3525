//! Who is calling: the identity of the peer on an inbound connection.
//!
//! The listener learns it from the client certificate of an mTLS
//! connection (its URI SAN, a SPIFFE ID) and puts a [`PeerIdentity`] into
//! every request's extensions; authorization reads it from there. A
//! plaintext connection carries none: the caller is unauthenticated, and
//! only rules that accept any caller can let it through.

pub use gitmesh_proxy_config::PeerIdentity;
