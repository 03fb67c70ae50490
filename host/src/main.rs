use std::process::ExitCode;

fn main() -> ExitCode {
    match psa_billing::cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
