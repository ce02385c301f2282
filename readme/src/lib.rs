//! The README's Rust blocks as tests. `build.rs` extracts every ```` ```rust ```` block of
//! `../README.md`, places it by the `<!-- readme: ... -->` marker before it and writes the
//! result to `$OUT_DIR/readme_blocks.rs`; `tests/readme.rs` includes that file and runs each
//! block (`cargo test -p conclib-readme`).
//!
//! A marker names a module (`mod=NAME`: the blocks of one module share its items) and what
//! the block is:
//!
//! - `items`: items (`use`, `struct`, `impl`) at the top level of the module;
//! - `test=NAME`: statements, run in `async fn NAME() -> Result<(), Box<dyn Error>>` in a
//!   tokio runtime; the blocks with the same module and test name are one function, in the
//!   README's order (a later block uses the values of an earlier one);
//! - `main`: a whole `fn main()` (of a program with process actors, say), run on a thread of
//!   its own; the test binary's own `main` calls it first when it was started as a process
//!   actor, so the README's `conclib::process::init` is what runs the child.
//!
//! A Rust block without a marker fails the build: every block is run.
