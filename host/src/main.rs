//! The `psa-billing` binary: the command line (`cli`) on mimalloc.

use std::process::ExitCode;

// glibc's malloc took a tenth of the server core under load (a delivery
// allocates a few hundred small blocks: JSON values, strings, WIT records);
// mimalloc's thread-local free lists make those a few instructions each.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match psa_billing::cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
