//! Shared by the examples (not an example itself).

/// Block SIGINT/SIGTERM in this thread and every thread it starts later
/// (queue and worker threads inherit the mask), so that [`wait_for_stop`]
/// can take them.
pub fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: plain signal-mask calls on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Wait for one of the signals [`block_stop_signals`] blocked.
pub fn wait_for_stop(set: &libc::sigset_t) {
    let mut sig = 0;
    // SAFETY: waits for a signal of `set`; both pointers are valid for the call.
    unsafe { libc::sigwait(set, &mut sig) };
}

/// `ublk_user::Error::Io` for `what`, to use with `map_err`.
pub fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ublk_user::Error {
    let what = what.into();
    move |source| ublk_user::Error::Io { what, source }
}
