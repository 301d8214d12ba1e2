//! A minimal `log` sink for programs without one of their own (the
//! `ublk-user` command, the examples): every record on stderr as
//! `ublk-user: <message>` (plus the level for warnings and errors). The
//! library itself only emits records; it never installs a logger.

use log::{Level, Log, Metadata, Record};

/// The level filter [`init_stderr`] takes (the `log` crate's, re-exported
/// so that a program needs no `log` dependency for one call).
pub use log::LevelFilter;

struct Stderr {
    prefix: &'static str,
}

impl Log for Stderr {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &Record<'_>) {
        match r.level() {
            Level::Error | Level::Warn => eprintln!(
                "{}: {}: {}",
                self.prefix,
                r.level().as_str().to_ascii_lowercase(),
                r.args()
            ),
            _ => eprintln!("{}: {}", self.prefix, r.args()),
        }
    }
    fn flush(&self) {}
}

/// Install the stderr logger with `prefix` (once per process; later calls
/// only change the level).
pub fn init_stderr(prefix: &'static str, level: LevelFilter) {
    // one small allocation for the life of the process
    let _ = log::set_logger(Box::leak(Box::new(Stderr { prefix })));
    log::set_max_level(level);
}
