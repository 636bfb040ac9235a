//! Every parser an audit log, a mapping file or an expectations file reaches, on
//! arbitrary bytes: errors are fine, panics are bugs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    analysis::analyze::fuzz_parsers(data);
});
