#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| conclib_view::__fuzz::page_query(data));
