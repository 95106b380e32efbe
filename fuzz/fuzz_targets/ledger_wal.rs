//! Reading a WAL segment of arbitrary bytes ends in records, a torn tail or a
//! corruption error, never a panic; what it accepts replays again identically.
#![no_main]
use hft_ledger::wal::{self, Record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("hft-fuzz-wal-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    std::fs::write(dir.join("0000000000000001.wal"), data).expect("write segment");
    let count = |dir: &std::path::Path| {
        let mut n = 0u64;
        wal::read(dir, |r| {
            if let Record::Entry(e) = r {
                n = n.wrapping_add(e.index);
            }
        })
        .map(|rep| (rep.records, n))
    };
    if let Ok(first) = count(&dir) {
        assert_eq!(count(&dir).ok(), Some(first));
    }
});
