//! gitmesh sidecar proxy (under construction).
