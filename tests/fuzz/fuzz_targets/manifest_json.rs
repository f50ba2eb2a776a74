#![no_main]

use encc_stage1::manifest::{DocumentKind, Index, LayerType, Manifest, Platform};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = serde_json::from_slice::<Manifest>(data) {
        for layer in &manifest.layers {
            let _ = LayerType::from_media_type(&layer.media_type);
        }
        if let Some(media_type) = &manifest.media_type {
            let _ = DocumentKind::from_media_type(media_type);
        }
    }
    if let Ok(index) = serde_json::from_slice::<Index>(data) {
        for entry in &index.manifests {
            let _ = DocumentKind::from_media_type(&entry.media_type);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Platform::parse(text);
    }
});
