//! Feeds arbitrary bytes to the pickle VM, as the `data.pkl` of an otherwise valid
//! `torch.save` archive (with two storage records for tensors to point at), in both
//! the loading mode and the inspection mode of `read_pt_inert_from`.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;

fn archive(pickle: &[u8]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut add = |name: &str, data: &[u8]| {
        z.start_file(name, stored).unwrap();
        z.write_all(data).unwrap();
    };
    add("archive/data.pkl", pickle);
    add("archive/data/0", &[0x3f; 64]);
    add("archive/data/1", &[1; 8]);
    z.finish().unwrap().into_inner()
}

fuzz_target!(|data: &[u8]| {
    // Inspection mode (classes off the allow-list as inert records) must return too.
    let _ = tempo_ckpt::read_pt_inert_from(&mut std::io::Cursor::new(archive(data)));
    if let Ok(object) = tempo_ckpt::read_pt_bytes(&archive(data)) {
        let again = tempo_ckpt::write_pt_bytes("archive", &object).and_then(|b| tempo_ckpt::read_pt_bytes(&b));
        let again = again.expect("what loads writes back and loads again");
        assert_eq!(again.first_difference(&object), None, "not the same value bit for bit");
    }
});
