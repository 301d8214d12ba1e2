//! The published part of a cluster-mapped target's metadata: which virtual
//! clusters live where in the image, for the data paths that bypass the
//! target's own code (the BPF program's `UBLK_CLUSTERS` map, and the
//! target's fast path on the queue thread).
//!
//! A mapping only ever goes from absent to present while a device is
//! served: [`ClusterMap`] has no remove. The target publishes a cluster
//! only once the metadata that points at it is durable, and keeps the
//! host cluster allocated for as long as the image is served (see the
//! qcow2 target for how DISCARD keeps that true).

use crate::Result;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

/// Where published mappings go besides the map itself (the BPF program's
/// cluster map).
pub trait ClusterSink: Send + Sync {
    /// Virtual cluster `vc` is at host byte offset `host`.
    fn insert(&self, vc: u64, host: u64) -> Result<()>;
}

/// Virtual cluster index -> host byte offset, for clusters that can be read
/// and written in place.
pub struct ClusterMap {
    shift: u32,
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<u64, u64>,
    sink: Option<Arc<dyn ClusterSink>>,
}

impl ClusterMap {
    /// An empty map for clusters of `1 << shift` bytes.
    pub fn new(shift: u32) -> Self {
        Self {
            shift,
            inner: RwLock::new(Inner::default()),
        }
    }

    /// log2 of the cluster size.
    pub fn shift(&self) -> u32 {
        self.shift
    }

    /// The host offset of virtual cluster `vc`, if published.
    pub fn get(&self, vc: u64) -> Option<u64> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .get(&vc)
            .copied()
    }

    /// Published clusters.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .len()
    }

    /// No cluster is published.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Publish `vc` at `host` (also to the sink, if one is attached). A
    /// cluster is published once; publishing it again at another offset is
    /// a bug in the target and is refused.
    pub fn publish(&self, vc: u64, host: u64) -> Result<()> {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        match g.entries.get(&vc) {
            Some(&h) if h == host => return Ok(()),
            Some(&h) => {
                return Err(crate::Error::State(format!(
                    "cluster {vc} is published at {h:#x}; it cannot move to {host:#x}"
                )))
            }
            None => {}
        }
        if let Some(s) = &g.sink {
            s.insert(vc, host)?;
        }
        g.entries.insert(vc, host);
        Ok(())
    }

    /// Attach `sink` and send it every cluster published so far; later
    /// ones follow as they are published.
    pub fn attach(&self, sink: Arc<dyn ClusterSink>) -> Result<()> {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        for (&vc, &host) in &g.entries {
            sink.insert(vc, host)?;
        }
        g.sink = Some(sink);
        Ok(())
    }

    /// Detach the sink (the program is going away).
    pub fn detach(&self) {
        self.inner.write().unwrap_or_else(|e| e.into_inner()).sink = None;
    }
}

impl fmt::Debug for ClusterMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterMap")
            .field("shift", &self.shift)
            .field("published", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Rec(Mutex<Vec<(u64, u64)>>);
    impl ClusterSink for Rec {
        fn insert(&self, vc: u64, host: u64) -> Result<()> {
            self.0.lock().unwrap().push((vc, host));
            Ok(())
        }
    }

    #[test]
    fn attach_replays_then_forwards_and_nothing_moves() {
        let m = ClusterMap::new(16);
        m.publish(1, 0x10000).unwrap();
        m.publish(5, 0x30000).unwrap();
        let rec = Arc::new(Rec::default());
        m.attach(rec.clone()).unwrap();
        let mut seen = rec.0.lock().unwrap().clone();
        seen.sort();
        assert_eq!(seen, vec![(1, 0x10000), (5, 0x30000)]);
        m.publish(2, 0x40000).unwrap();
        assert_eq!(rec.0.lock().unwrap().last(), Some(&(2, 0x40000)));
        // the same mapping again is a no-op, another offset an error
        m.publish(2, 0x40000).unwrap();
        assert_eq!(rec.0.lock().unwrap().len(), 3);
        assert!(m.publish(2, 0x50000).is_err());
        assert_eq!(m.get(2), Some(0x40000));
        assert_eq!(m.get(3), None);
        m.detach();
        m.publish(9, 0x90000).unwrap();
        assert_eq!(rec.0.lock().unwrap().len(), 3, "detached");
        assert_eq!(m.len(), 4);
    }
}
