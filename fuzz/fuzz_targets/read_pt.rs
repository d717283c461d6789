//! Feeds arbitrary bytes to the `.pt` reader: it must return, never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(object) = tempo_ckpt::read_pt_bytes(data) {
        // Whatever loads must write back and load again to the same value.
        let again = tempo_ckpt::write_pt_bytes("archive", &object).and_then(|b| tempo_ckpt::read_pt_bytes(&b));
        let again = again.expect("what loads writes back and loads again");
        assert_eq!(again.first_difference(&object), None, "not the same value bit for bit");
    }
});
