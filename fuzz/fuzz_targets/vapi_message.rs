#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| callgate_server::fuzz::vapi_message(data));
