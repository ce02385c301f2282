//! The Python actor host runs some of this crate's Lua scripts from
//! `python/src/conclib/_lua.py`, written from the Rust texts by `python/tools/gen_lua.py`:
//! one source, checked by the tests of each module that owns scripts through this one
//! assertion (its own module so that no owner of scripts imports another for it).

/// Asserts that each `(name, text)` stands in `_lua.py` as `{prefix}{name}: Final = {text:?}`.
pub(crate) fn assert_copied_to_python(prefix: &str, scripts: &[(&str, &str)]) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../python/src/conclib/_lua.py");
    let Ok(copied) = std::fs::read_to_string(path) else {
        return; // a crate built outside the repository
    };
    for (name, text) in scripts {
        let line = format!("{prefix}{name}: Final = {text:?}\n");
        // Python's `repr` puts a text with no quote, backslash or line break (a mark, not a
        // script) between single quotes; a script, which holds single quotes, between double
        // quotes as `{:?}` does.
        let plain = !text.contains(['\'', '"', '\\', '\n'])
            && copied.contains(&format!("{prefix}{name}: Final = '{text}'\n"));
        assert!(
            copied.contains(&line) || plain,
            "{prefix}{name} differs in {path}: run python/tools/gen_lua.py"
        );
    }
}
