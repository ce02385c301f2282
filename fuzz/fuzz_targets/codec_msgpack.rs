#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| conclib_codec::__fuzz::msgpack(data));
