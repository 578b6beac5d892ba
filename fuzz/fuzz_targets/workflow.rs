#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = runproof_github::workflow::parse_workflow(text);
        let _ = runproof_github::workflow::action_of(text);
        let _ = runproof_github::workflow::local_workflow_path(text);
    }
});
