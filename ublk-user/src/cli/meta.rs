//! Per-device metadata the server writes to `/run/ublk-user/<id>.json`, for
//! `list` and `del`. A flat JSON object of strings and integers.

use std::path::PathBuf;

pub const RUN_DIR: &str = "/run/ublk-user";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub id: u32,
    pub pid: i32,
    pub target: String,
    pub backing: String,
    pub size: u64,
    pub queues: u16,
    pub depth: u16,
    pub mode_requested: String,
    pub mode: String,
    pub bdev: String,
    /// BPF stats map id (0: no BPF program).
    pub bpf_stats_map_id: u32,
}

/// The server's live request counters ([`ublk_user::io::counters`]).
pub fn stats_path(id: u32) -> PathBuf {
    PathBuf::from(format!("{RUN_DIR}/{id}.stats"))
}

pub fn path(id: u32) -> PathBuf {
    PathBuf::from(format!("{RUN_DIR}/{id}.json"))
}

/// JSON string escaping (quotes, backslash, control characters).
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

impl Meta {
    pub fn to_json(&self) -> String {
        format!(
            "{{\"id\":{},\"pid\":{},\"target\":{},\"backing\":{},\"size\":{},\"queues\":{},\"depth\":{},\"mode_requested\":{},\"mode\":{},\"bdev\":{},\"bpf_stats_map_id\":{}}}",
            self.id,
            self.pid,
            json_str(&self.target),
            json_str(&self.backing),
            self.size,
            self.queues,
            self.depth,
            json_str(&self.mode_requested),
            json_str(&self.mode),
            json_str(&self.bdev),
            self.bpf_stats_map_id
        )
    }

    pub fn from_json(s: &str) -> Option<Self> {
        let kv = parse_flat(s)?;
        let get = |k: &str| kv.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        let num = |k: &str| get(k).and_then(|v| v.parse::<i64>().ok());
        Some(Self {
            id: num("id")? as u32,
            pid: num("pid").unwrap_or(0) as i32,
            target: get("target").unwrap_or("").into(),
            backing: get("backing").unwrap_or("").into(),
            size: num("size").unwrap_or(0) as u64,
            queues: num("queues").unwrap_or(0) as u16,
            depth: num("depth").unwrap_or(0) as u16,
            mode_requested: get("mode_requested").unwrap_or("").into(),
            mode: get("mode").unwrap_or("").into(),
            bdev: get("bdev").unwrap_or("").into(),
            bpf_stats_map_id: num("bpf_stats_map_id").unwrap_or(0) as u32,
        })
    }

    pub fn write(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(RUN_DIR)?;
        let p = path(self.id);
        let tmp = p.with_extension("json.tmp");
        std::fs::write(&tmp, self.to_json() + "\n")?;
        std::fs::rename(tmp, p)
    }

    pub fn read(id: u32) -> Option<Self> {
        Self::from_json(&std::fs::read_to_string(path(id)).ok()?)
    }

    pub fn remove(id: u32) {
        let _ = std::fs::remove_file(path(id));
        let _ = std::fs::remove_file(stats_path(id));
    }
}

/// Parse `{"k":"v","n":1,...}` (no nesting) into key/value strings.
fn parse_flat(s: &str) -> Option<Vec<(String, String)>> {
    let mut it = s
        .trim()
        .strip_prefix('{')?
        .strip_suffix('}')?
        .chars()
        .peekable();
    let mut out = Vec::new();
    let read_str = |it: &mut std::iter::Peekable<std::str::Chars<'_>>| -> Option<String> {
        let mut v = String::new();
        loop {
            match it.next()? {
                '"' => return Some(v),
                '\\' => match it.next()? {
                    'n' => v.push('\n'),
                    'u' => {
                        let h: String = (0..4).filter_map(|_| it.next()).collect();
                        v.push(char::from_u32(u32::from_str_radix(&h, 16).ok()?)?);
                    }
                    c => v.push(c),
                },
                c => v.push(c),
            }
        }
    };
    loop {
        while it.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            it.next();
        }
        match it.next() {
            None => return Some(out),
            Some('"') => {}
            Some(_) => return None,
        }
        let k = read_str(&mut it)?;
        while it.peek().is_some_and(|c| c.is_whitespace() || *c == ':') {
            it.next();
        }
        let v = if it.peek() == Some(&'"') {
            it.next();
            read_str(&mut it)?
        } else {
            let mut v = String::new();
            while it.peek().is_some_and(|c| *c != ',' && !c.is_whitespace()) {
                v.push(it.next()?);
            }
            v
        };
        out.push((k, v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let m = Meta {
            id: 3,
            pid: 1234,
            target: "loop".into(),
            backing: "/tmp/we\"ird \\ name".into(),
            size: 1 << 30,
            queues: 2,
            depth: 128,
            mode_requested: "bpf".into(),
            mode: "copy".into(),
            bdev: "/dev/ublkb3".into(),
            bpf_stats_map_id: 42,
        };
        assert_eq!(Meta::from_json(&m.to_json()), Some(m));
        assert_eq!(Meta::from_json("garbage"), None);
    }
}
