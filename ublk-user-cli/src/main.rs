//! `ublk-user`: the command line on top of the library (`ublk_user`).
//! The CLI lives here, in the binary, and is not part of the library's API.
use clap::Parser;

mod cli;

fn main() {
    ublk_user::logging::init_stderr("ublk-user", log::LevelFilter::Info);
    let cli = cli::args::Cli::parse();
    std::process::exit(cli::main_with(cli));
}
