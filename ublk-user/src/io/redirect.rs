//! Per-tag state machine for BPF-redirected requests.
//!
//! A redirected request produces two CQEs on the queue ring, in either
//! order: the ublk command's (the iod has `UBLK_IO_F_BPF_REDIRECT`) and the
//! backing I/O's (`KIND_BPF`, same tag). The server commits once it has
//! both, with the backing result as it is: the byte count or the backing
//! I/O's negative errno. A short count means the backing file ends inside
//! the request: the driver zero-fills the rest of a READ and completes it
//! in full, as the loop driver does, and fails a short WRITE with -EIO
//! (kernel-patches 0004).

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Redirect {
    /// No redirected request in flight on this tag.
    #[default]
    Idle,
    /// The request arrived (needs `bytes`); waiting for the BPF CQE.
    AwaitBpf { bytes: u32 },
    /// The BPF CQE arrived first, with `res`; waiting for the request.
    BpfFirst { res: i32 },
}

/// A BPF CQE for a tag that already had one: a kernel or program bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DuplicateBpfCqe {
    pub first: i32,
    pub second: i32,
}

/// The COMMIT result for a redirected request of `bytes` whose backing I/O
/// completed with `res`: `res` itself (see the module comment for what the
/// driver does with a short one); more than `bytes` cannot happen, the
/// helper makes the SQE cover the request exactly.
#[inline]
pub const fn commit_result(res: i32, bytes: u32) -> i32 {
    if res >= 0 && res as u32 > bytes {
        -libc::EIO
    } else {
        res
    }
}

impl Redirect {
    /// The ublk CQE for a redirected request of `bytes` arrived. Returns the
    /// result to commit if the BPF CQE was already there.
    #[inline]
    pub fn on_request(&mut self, bytes: u32) -> Option<i32> {
        match *self {
            Redirect::BpfFirst { res } => {
                *self = Redirect::Idle;
                Some(commit_result(res, bytes))
            }
            Redirect::Idle | Redirect::AwaitBpf { .. } => {
                *self = Redirect::AwaitBpf { bytes };
                None
            }
        }
    }

    /// The BPF (backing I/O) CQE arrived with `res`. Returns the result to
    /// commit if the request was already there.
    #[inline]
    pub fn on_bpf_cqe(&mut self, res: i32) -> Result<Option<i32>, DuplicateBpfCqe> {
        match *self {
            Redirect::AwaitBpf { bytes } => {
                *self = Redirect::Idle;
                Ok(Some(commit_result(res, bytes)))
            }
            Redirect::Idle => {
                *self = Redirect::BpfFirst { res };
                Ok(None)
            }
            Redirect::BpfFirst { res: first } => Err(DuplicateBpfCqe { first, second: res }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_then_bpf() {
        let mut s = Redirect::default();
        assert_eq!(s.on_request(4096), None);
        assert_eq!(s, Redirect::AwaitBpf { bytes: 4096 });
        assert_eq!(s.on_bpf_cqe(4096), Ok(Some(4096)));
        assert_eq!(s, Redirect::Idle);
    }

    #[test]
    fn bpf_then_request() {
        let mut s = Redirect::default();
        assert_eq!(s.on_bpf_cqe(65536), Ok(None));
        assert_eq!(s, Redirect::BpfFirst { res: 65536 });
        assert_eq!(s.on_request(65536), Some(65536));
        assert_eq!(s, Redirect::Idle);
    }

    #[test]
    fn short_io_is_committed_as_is() {
        // the driver zero-fills a short READ (end of the backing file) and
        // fails a short WRITE; the server passes the count on
        let mut s = Redirect::default();
        s.on_request(8192);
        assert_eq!(s.on_bpf_cqe(4096), Ok(Some(4096)));
        let mut s = Redirect::default();
        s.on_bpf_cqe(0).unwrap();
        assert_eq!(s.on_request(512), Some(0));
        let mut s = Redirect::default();
        s.on_request(4096);
        assert_eq!(s.on_bpf_cqe(8192), Ok(Some(-libc::EIO)));
    }

    #[test]
    fn errors_pass_through() {
        let mut s = Redirect::default();
        s.on_request(4096);
        assert_eq!(s.on_bpf_cqe(-libc::EBADF), Ok(Some(-libc::EBADF)));
        let mut s = Redirect::default();
        s.on_bpf_cqe(-libc::ENOSPC).unwrap();
        assert_eq!(s.on_request(4096), Some(-libc::ENOSPC));
    }

    #[test]
    fn duplicate_bpf_cqe_is_reported() {
        let mut s = Redirect::default();
        s.on_bpf_cqe(1).unwrap();
        assert_eq!(
            s.on_bpf_cqe(2),
            Err(DuplicateBpfCqe {
                first: 1,
                second: 2
            })
        );
    }

    #[test]
    fn tag_reuse_after_commit() {
        let mut s = Redirect::default();
        for i in 1..4u32 {
            let bytes = i * 4096;
            if i % 2 == 0 {
                assert_eq!(s.on_request(bytes), None);
                assert_eq!(s.on_bpf_cqe(bytes as i32), Ok(Some(bytes as i32)));
            } else {
                assert_eq!(s.on_bpf_cqe(bytes as i32), Ok(None));
                assert_eq!(s.on_request(bytes), Some(bytes as i32));
            }
            assert_eq!(s, Redirect::Idle);
        }
    }
}
