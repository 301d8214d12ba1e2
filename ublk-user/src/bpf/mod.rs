//! BPF loader (placeholder; owned by the BPF loader work).
