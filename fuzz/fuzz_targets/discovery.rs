#![no_main]
const ISSUER: &str = "https://token.actions.githubusercontent.com";
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(url) = url::Url::parse(ISSUER) {
        let _ = runproof_github::parse_discovery(ISSUER, &url, data);
    }
});
