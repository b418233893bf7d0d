//! PAST: replicated archival storage with caching (work in progress).
