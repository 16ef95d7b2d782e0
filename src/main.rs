//! The `fts` command: parses the command line and hands off to `cli`.

mod cli;

fn main() {
    // One crypto provider for the whole process (DESIGN.md §4: two enabled
    // providers make rustls panic when a config is built without one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::process::exit(cli::main());
}
