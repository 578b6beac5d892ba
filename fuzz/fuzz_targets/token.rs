#![no_main]
libfuzzer_sys::fuzz_target!(|data: &str| {
    let _ = runproof_core::UnverifiedToken::parse(data);
});
