#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = runproof_core::KeySet::from_jwks_json(data);
});
