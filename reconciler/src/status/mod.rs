//! The status branch: every step the reconciler takes (applied versions,
//! waves, reverts, rejections, canary steps) as a commit whose message a
//! person reads and whose trailers tools parse, and whose tree holds the
//! reconciler's machine-readable state so a restart resumes from Git.
//!
//! `event`, `history` and `explain` are pure; `record` is the git2
//! edge.

mod event;
mod explain;
mod history;
mod message;
mod record;

#[cfg(test)]
mod fixtures;

pub use self::event::{
    CanaryStep, Decision, Evidence, Gates, ParseError, RelativeGates, RevertReason, StatusEvent,
    format_duration, short,
};
pub use self::explain::{ExplainError, render_explanation};
pub use self::history::{render_json, render_timeline};
pub use self::record::{
    CommitId, DEFAULT_BRANCH, HistoryEntry, Identity, PushReport, RecordError, STATE_FILE,
    StatusLog, WriteBack,
};
