//! `gitmesh reconcile`: the control loop that takes each new commit of the
//! watched branch to the proxies, in waves, and records every step on the
//! status branch.
//!
//! [`state`] is what survives a restart (kept in Git), [`assign`] decides
//! purely what each proxy should run, and [`daemon`] is the IO loop that
//! reads Git, talks to the proxy API and writes the status branch.

pub mod assign;
pub mod daemon;
pub mod metrics;
pub mod overrides;
pub mod prometheus;
pub mod scrape;
pub mod state;

pub use self::daemon::{Daemon, DaemonError, DaemonSettings};
pub use self::metrics::Metrics;
pub use self::state::RecordedState;
