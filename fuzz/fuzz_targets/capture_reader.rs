//! The capture reader (`<ns> <json>` lines) never panics on arbitrary bytes: bad lines
//! are errors with their line number.
#![no_main]
use hft_feed::capture::CaptureReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = CaptureReader::from_reader(Box::new(std::io::Cursor::new(data.to_vec())));
    let mut n = 0;
    while let Some(line) = r.next() {
        let _ = line;
        n += 1;
        if n > 10_000 {
            break;
        }
    }
});
