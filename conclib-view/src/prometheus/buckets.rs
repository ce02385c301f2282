//! The histograms' bucket bounds, apart from the module root so that the recorder, which
//! the root re-exports, does not name the root.

/// The upper bounds (`le`) of the buckets of every histogram of durations, in seconds: from
/// a microsecond (a handler that does little) to 25 s (past the default ask timeout), each
/// four or five times the one before.
pub const SECONDS_BUCKETS: [f64; 12] = [
    1e-6, 5e-6, 2.5e-5, 1e-4, 5e-4, 2.5e-3, 0.01, 0.05, 0.25, 1.0, 5.0, 25.0,
];

/// The upper bounds (`le`) of the buckets of the histograms of counts
/// (`conclib_proxy_read_batch_size`: requests read from Redis at once).
pub const COUNT_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
