//! Feeds arbitrary bytes to the tempo-format reader: it must return, never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(object) = tempo_ckpt::read_tempo_bytes(data) {
        let again = tempo_ckpt::write_tempo_bytes(&object).and_then(|b| tempo_ckpt::read_tempo_bytes(&b));
        let again = again.expect("what loads writes back and loads again");
        assert_eq!(again.first_difference(&object), None, "not the same value bit for bit");
    }
});
