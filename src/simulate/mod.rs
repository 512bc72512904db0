//! Trace replay on a virtual clock (placeholder until the next commit).
