//! `ublk-user`: see the library (`ublk_user`) for the server itself.
use clap::Parser;

fn main() {
    ublk_user::logging::init_stderr("ublk-user", log::LevelFilter::Info);
    let cli = ublk_user::cli::args::Cli::parse();
    std::process::exit(ublk_user::cli::main_with(cli));
}
