#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| callgate_server::fuzz::twilio_form(data));
