//! gitmesh control plane.
