#![no_main]
use runproof_github::types::{InstallationEvent, InstallationRepositoriesEvent, WorkflowRunEvent};
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<InstallationEvent>(data);
    let _ = serde_json::from_slice::<InstallationRepositoriesEvent>(data);
    let _ = serde_json::from_slice::<WorkflowRunEvent>(data);
    let _ = runproof_core::webhook::verify_signature(data, Some(data), &[runproof_core::Secret::new("s".into())]);
});
