//! Writes the synthetic calibration fixtures in `tests/fixtures/calibration/` (not measured:
//! made from documented A100/H100 facts and the simulator; see the README there).
//!
//! ```sh
//! cargo run --example make_calibration_data
//! ```

use std::path::Path;

use gpushare::calibrate::synth;
use gpushare::hardware::Catalogue;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/calibration");
    let files = synth::fixture_files(&dir, &Catalogue::builtin()).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    for (name, text) in files {
        let path = dir.join(&name);
        std::fs::write(&path, text).unwrap_or_else(|e| {
            eprintln!("error: {}: {e}", path.display());
            std::process::exit(1)
        });
        println!("wrote {}", path.display());
    }
}
