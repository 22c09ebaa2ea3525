//! Mutual TLS between sidecars: the proxy's own identity (a SPIFFE
//! certificate that can be swapped while connections stay up), the
//! verifiers that check peers against the mesh CA and their SPIFFE ID, and
//! the rustls configs (TLS 1.3 only, ring) of the inbound acceptor and the
//! upstream connector.

mod configs;
mod describe;
mod identity;
mod san;
mod stream;
mod verify;

pub use self::configs::{InboundTls, MeshTls, RotateError, UpstreamTls};
pub use self::describe::{CertificateView, IdentityView};
pub(crate) use self::identity::Resolver;
pub(crate) use self::identity::parse_bundle;
pub use self::identity::{CertificateRequest, IdentityError, MeshIdentity};
pub use self::san::spiffe_id_of;
pub use self::stream::MeshStream;
