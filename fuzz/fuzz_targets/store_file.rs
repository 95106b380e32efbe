//! The store reader never panics on an arbitrary data file: a Parquet file of the
//! store's schema mutated byte by byte (seed the corpus with real store files) is read
//! row by row and replayed as events from the start and from its middle, and either
//! reads or is refused with an error. Run it with TMPDIR on a tmpfs.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The reader turns panics inside the parquet crate into errors (it asserts on some
    // corrupt pages); libfuzzer-sys's hook would abort on them before they are caught.
    // A panic the reader does not catch still ends the run: libfuzzer-sys aborts when
    // the target unwinds.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    // One file per process and iteration, on tmpfs: the reader opens paths.
    let dir = std::env::temp_dir().join(format!("hft-fuzz-store-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("part-0000.parquet");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let mut rows = 0u64;
    let _ = hft_store::read_file(&path, |_, _| rows += 1);
    let filter = hft_store::SeriesFilter::default();
    for from in [0, 1_700_000_000_000_000_000] {
        if let Ok(mut r) = hft_store::MergedReader::open(&dir, &filter, from, u64::MAX) {
            let mut events = Vec::new();
            while matches!(r.next_events(&mut events, 512), Ok(n) if n > 0) {
                events.clear();
            }
        }
    }
});
