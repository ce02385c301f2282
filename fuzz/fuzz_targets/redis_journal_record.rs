#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| conclib_redis::__fuzz::journal_record(data));
