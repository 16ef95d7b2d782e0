//! The `fts` command: parses the command line and hands off to `cli`.

mod cli;

fn main() {
    // One crypto provider for the whole process: with two enabled in the
    // dependency tree, rustls panics when a config is built without one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::process::exit(cli::main());
}
