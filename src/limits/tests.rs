//! Unit tests of the limiter, on paused time.
