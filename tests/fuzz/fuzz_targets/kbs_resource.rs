#![no_main]

use std::sync::OnceLock;

use encc_stage1::kbs::TeeKey;

// One ephemeral TEE key for the run: the resource JWE parser runs up to the key unwrap.
static KEY: OnceLock<Option<TeeKey>> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(key) = KEY.get_or_init(TeeKey::generate) {
        let _ = key.open(data);
    }
});
