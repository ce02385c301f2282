#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| conclib_process::__fuzz::frame(data));
