#![no_main]
libfuzzer_sys::fuzz_target!(|data: &str| {
    let _ = runproof::config::from_toml_str(data);
});
