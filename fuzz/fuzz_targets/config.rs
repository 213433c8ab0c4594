#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| callgate_config::fuzz::config(data));
