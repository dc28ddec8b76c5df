//! Prometheus metrics: the latest [`Published`](crate::telemetry::Published) snapshot in the text
//! exposition format 0.0.4, served over plain HTTP by a tiny single-threaded
//! endpoint (off by default; the daemon starts it only when configured).
//!
//! The endpoint answers `GET /metrics` (and `HEAD /metrics`), one connection
//! at a time, then closes the connection. It reads at most
//! [`MAX_HEAD`] bytes of request head within [`READ_TIMEOUT`], ignores the
//! headers, and never panics on what a client sends.
//!
//! One concept a file: `render` (the families of a snapshot, [`render()`]) over
//! `exposition` (the format's primitives); `http` (the endpoint) over
//! `request` (reading and parsing the request head).

mod exposition;
mod http;
mod render;
mod request;

pub use exposition::escape;
pub use http::{serve, CONTENT_TYPE};
pub use render::{render, BUILD_INFO};
pub use request::{MAX_HEAD, READ_TIMEOUT};
