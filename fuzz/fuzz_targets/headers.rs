#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = runproof_core::digest::parse_content_digest(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = runproof_core::run_header::RunHeader::parse(s);
        let _ = runproof_core::run_header::parse_sha(s);
        let _ = runproof_core::name::UploadName::parse(s);
    }
});
