#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    encc_stage1::kbs::fuzz_kbs_answers(data);
});
