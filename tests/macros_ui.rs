//! Compile-time behavior of `#[message]` and `#[actor]`: cases that must compile, and cases
//! that must fail with the error committed next to them (`tests/ui/fail/*.stderr`).
//!
//! Regenerate the expected errors with `TRYBUILD=overwrite cargo test --test macros_ui`, then
//! read every changed `.stderr`: each error must point at the user's code and say how to fix it.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
