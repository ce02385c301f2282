//! Entry point of the fuzz target `view_query` (`fuzz/`, feature `fuzzing`, internal): the
//! query string of `/api/systems`, through the real parser. A panic is a finding. The
//! replay test below runs every file of `fuzz/corpus/view_query/` and
//! `fuzz/regressions/view_query/` through it on stable.

/// Target `view_query`: the query string of `/api/systems` (UTF-8, as axum hands it over),
/// and a sort's name.
pub fn page_query(data: &[u8]) {
    if let Ok(raw) = std::str::from_utf8(data) {
        crate::api::fuzz::page_query(raw);
    }
}

/// Seeds of `target`'s corpus: queries the page sends.
#[must_use]
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    if target != "view_query" {
        return Vec::new();
    }
    [
        "",
        "sort=telling",
        "q=%23123&sort=mailbox&order=desc&limit=100&offset=50",
        "q=Shop%3Acart+7&sort=urn&order=asc&offset.web-1=100&offset.api=0",
        "limit=999999&sort=restarts",
        "q=caf%C3%A9&sort=errors&offset.sys%20one=3",
    ]
    .iter()
    .map(|q| q.as_bytes().to_vec())
    .collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    fn fuzz_dir() -> PathBuf {
        conclib_testkit::fuzz_corpus::dir(env!("CARGO_MANIFEST_DIR"))
    }

    /// Every file of the corpus and regressions, and the seeds, through the target's
    /// function.
    #[test]
    fn replay_corpus_and_regressions() {
        let seeds = super::seeds("view_query");
        conclib_testkit::fuzz_corpus::replay(&fuzz_dir(), "view_query", &seeds, super::page_query);
    }

    /// Writes the seeds into `fuzz/corpus/view_query/seed-N` (`cargo test -p conclib-view
    /// --all-features --lib -- --ignored write_seeds`).
    #[test]
    #[ignore = "writes the seed corpus"]
    fn write_seeds() {
        let seeds = super::seeds("view_query");
        conclib_testkit::fuzz_corpus::write_seeds(&fuzz_dir(), "view_query", &seeds);
    }
}
