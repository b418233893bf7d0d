//! Scribe and SplitStream (work in progress).
