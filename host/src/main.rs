//! `host`: see the `host` library crate.

fn main() -> std::process::ExitCode {
    host::cli::main()
}
