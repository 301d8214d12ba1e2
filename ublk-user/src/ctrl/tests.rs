//! Host tests of [`Control`] against a scripted driver in place of the
//! control ring ([`CtrlRing`]): what each command carries, errors, the
//! interrupted wait, and the asynchronous STOP_DEV beside other commands.

use super::fake::Fake;
use super::*;

/// Each command's opcode and payload: the device, no queue, and its
/// argument where the driver reads it.
#[test]
fn commands_carry_their_arguments() {
    let f = Fake::default();
    let mut c = f.control();
    c.start_dev(3, 4242).unwrap();
    let (op, cmd, _) = f.last();
    assert_eq!(op, sys::UBLK_U_CMD_START_DEV);
    assert_eq!(
        (cmd.dev_id, cmd.queue_id, cmd.data[0], cmd.addr),
        (3, u16::MAX, 4242, 0)
    );
    c.end_user_recovery(3, 7).unwrap();
    assert_eq!(f.last().0, sys::UBLK_U_CMD_END_USER_RECOVERY);
    assert_eq!(f.last().1.data[0], 7);
    // the program fd in bits 0-31, the buffer base above, per-device flag
    c.reg_bpf_prog_at(1, 9, 5, true).unwrap();
    let want = 9 | (5u64 << sys::UBLK_BPF_BUF_BASE_SHIFT) | sys::UBLK_BPF_BUF_PER_DEVICE;
    assert_eq!(f.last().1.data[0], want);
    // a negative fd stays a bad fd: no range bits
    c.reg_bpf_prog(1, -1).unwrap();
    assert_eq!(f.last().1.data[0], 0xffff_ffff);
    // a file table: its address and byte length
    let fds = [4, -1, 6];
    c.reg_bpf_files(2, &fds).unwrap();
    let (op, cmd, _) = f.last();
    assert_eq!(op, sys::UBLK_U_CMD_REG_BPF_FILES);
    assert_eq!((cmd.addr, cmd.len), (fds.as_ptr() as u64, 12));
    // an output buffer: GET_FEATURES's 8 bytes
    c.get_features().unwrap();
    assert_eq!(f.last().1.len, sys::UBLK_FEATURES_LEN);
    assert_ne!(f.last().1.addr, 0);
    c.stop_dev(2).unwrap();
    c.del_dev(2).unwrap();
    assert_eq!(
        f.ops()[f.ops().len() - 2..],
        [sys::UBLK_U_CMD_STOP_DEV, sys::UBLK_U_CMD_DEL_DEV]
    );
}

/// A failed command is an error naming it, with the driver's errno.
#[test]
fn errors_name_the_command() {
    let f = Fake::default();
    f.answer(sys::UBLK_U_CMD_GET_DEV_INFO, -libc::ENODEV);
    f.answer(sys::UBLK_U_CMD_ADD_DEV, -libc::EEXIST);
    let mut c = f.control();
    let e = c.get_dev_info(5).unwrap_err();
    assert_eq!((e.cmd, e.errno()), ("GET_DEV_INFO", Some(libc::ENODEV)));
    let mut info = DevInfo::default();
    let e = c.add_dev(&mut info).unwrap_err();
    assert_eq!((e.cmd, e.errno()), ("ADD_DEV", Some(libc::EEXIST)));
    assert!(c.stop_dev(5).is_ok(), "one failure does not stick");
}

/// A wait interrupted by a signal is retried, not reported.
#[test]
fn an_interrupted_wait_is_retried() {
    let f = Fake::default();
    f.driver().eintr = 2;
    let mut c = f.control();
    c.del_dev(1).unwrap();
    assert_eq!(f.driver().submits, 3);
}

/// STOP_DEV issued without waiting: a second one is refused; commands in
/// the meantime get their own results even when the STOP's CQE comes
/// first; the STOP's result is kept for stop_dev_wait, which reaps it
/// once.
#[test]
fn async_stop_beside_other_commands() {
    let f = Fake::default();
    f.hold(sys::UBLK_U_CMD_STOP_DEV);
    f.answer(sys::UBLK_U_CMD_STOP_DEV, -libc::EBUSY);
    f.answer(sys::UBLK_U_CMD_DEL_DEV, -libc::ENOENT);
    let mut c = f.control();
    assert!(
        c.stop_dev_wait().is_ok(),
        "nothing issued, nothing to wait for"
    );
    c.stop_dev_begin(4).unwrap();
    assert!(c.stop_dev_pending());
    let (op, cmd, ud) = f.last();
    assert_eq!(
        (op, cmd.dev_id, ud),
        (sys::UBLK_U_CMD_STOP_DEV, 4, ASYNC_STOP_UD)
    );
    let e = c.stop_dev_begin(4).unwrap_err();
    assert_eq!(e.errno(), Some(libc::EALREADY));
    // the STOP's CQE arrives in the same batch as, and before, DEL_DEV's
    f.release(sys::UBLK_U_CMD_STOP_DEV, ASYNC_STOP_UD);
    let e = c.del_dev(4).unwrap_err();
    assert_eq!((e.cmd, e.errno()), ("DEL_DEV", Some(libc::ENOENT)));
    assert!(c.stop_dev_pending(), "reaped but not yet waited for");
    let e = c.stop_dev_wait().unwrap_err();
    assert_eq!((e.cmd, e.errno()), ("STOP_DEV", Some(libc::EBUSY)));
    assert!(!c.stop_dev_pending());
    assert!(c.stop_dev_wait().is_ok(), "reaped once");
    c.stop_dev_begin(4)
        .expect("a new STOP after the last was reaped");
}

/// stop_dev_wait waits until the STOP's CQE is there, skipping others.
#[test]
fn stop_wait_waits_for_the_stop() {
    let f = Fake::default();
    f.hold(sys::UBLK_U_CMD_STOP_DEV);
    let mut c = f.control();
    c.stop_dev_begin(1).unwrap();
    f.driver().eintr = 1;
    f.driver().cq.push_back((12345, 0)); // a stray CQE
    f.release(sys::UBLK_U_CMD_STOP_DEV, ASYNC_STOP_UD);
    c.stop_dev_wait().unwrap();
    assert!(!c.stop_dev_pending());
}
