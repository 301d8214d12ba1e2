//! A small JSON reader for fio's `--output-format=json` and `ublk-user list
//! --json`: the whole grammar, no serialisation, numbers as f64.

use anyhow::{bail, Result};

#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// Parse a document; text before the first `{` or `[` is skipped (fio
    /// prints warnings such as "fio: ..." ahead of its JSON).
    pub fn parse(text: &str) -> Result<Json> {
        let start = text
            .find(['{', '['])
            .ok_or_else(|| anyhow::anyhow!("no JSON object or array in the text"))?;
        let mut p = Parser {
            s: &text.as_bytes()[start..],
            i: 0,
        };
        let v = p.value()?;
        Ok(v)
    }

    /// A member of an object (None for other values or a missing key).
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Follow a path of object keys.
    pub fn path(&self, keys: &[&str]) -> Option<&Json> {
        keys.iter().try_fold(self, |v, k| v.get(k))
    }

    pub fn at(&self, i: usize) -> Option<&Json> {
        match self {
            Json::Arr(a) => a.get(i),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Num(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            _ => &[],
        }
    }

    #[allow(dead_code)]
    pub fn members(&self) -> &[(String, Json)] {
        match self {
            Json::Obj(m) => m,
            _ => &[],
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        if self.peek() != Some(c) {
            bail!("JSON: expected '{}' at byte {}", c as char, self.i);
        }
        self.i += 1;
        Ok(())
    }

    fn lit(&mut self, word: &str, v: Json) -> Result<Json> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            bail!("JSON: bad literal at byte {}", self.i)
        }
    }

    fn value(&mut self) -> Result<Json> {
        match self.peek() {
            Some(b'{') => {
                self.i += 1;
                let mut m = Vec::new();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(m));
                }
                loop {
                    let k = self.string()?;
                    self.expect(b':')?;
                    m.push((k, self.value()?));
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(m));
                        }
                        _ => bail!("JSON: expected ',' or '}}' at byte {}", self.i),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut a = Vec::new();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(Json::Arr(a));
                }
                loop {
                    a.push(self.value()?);
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(a));
                        }
                        _ => bail!("JSON: expected ',' or ']' at byte {}", self.i),
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.lit("true", Json::Bool(true)),
            Some(b'f') => self.lit("false", Json::Bool(false)),
            Some(b'n') => self.lit("null", Json::Null),
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let st = self.i;
                while self.i < self.s.len()
                    && matches!(
                        self.s[self.i],
                        b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'
                    )
                {
                    self.i += 1;
                }
                let t = std::str::from_utf8(&self.s[st..self.i])?;
                Ok(Json::Num(t.parse().map_err(|_| {
                    anyhow::anyhow!("JSON: bad number {t:?} at byte {st}")
                })?))
            }
            _ => bail!("JSON: unexpected input at byte {}", self.i),
        }
    }

    fn string(&mut self) -> Result<String> {
        self.expect(b'"')?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                bail!("JSON: unterminated string");
            };
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        bail!("JSON: unterminated escape");
                    };
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = self
                                .s
                                .get(self.i..self.i + 4)
                                .ok_or_else(|| anyhow::anyhow!("JSON: short \\u escape"))?;
                            let cp = u32::from_str_radix(std::str::from_utf8(hex)?, 16)?;
                            self.i += 4;
                            let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                            let mut b = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                _ => out.push(c),
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fio_like_output() {
        let text = r#"fio: note: something
{
  "fio version" : "fio-3.33",
  "jobs" : [
    {
      "jobname" : "cell",
      "read" : {
        "io_bytes" : 1048576,
        "iops" : 123.5,
        "clat_ns" : { "percentile" : { "50.000000" : 2048, "99.000000" : 9e3 } }
      },
      "ok" : true, "none" : null, "neg" : -1.5, "s" : "a\"b\u0041"
    }
  ]
}"#;
        let j = Json::parse(text).unwrap();
        let job = j.get("jobs").unwrap().at(0).unwrap();
        assert_eq!(job.path(&["read", "iops"]).unwrap().as_f64(), Some(123.5));
        assert_eq!(
            job.path(&["read", "clat_ns", "percentile", "99.000000"])
                .and_then(Json::as_f64),
            Some(9000.0)
        );
        assert_eq!(job.get("ok"), Some(&Json::Bool(true)));
        assert_eq!(job.get("none"), Some(&Json::Null));
        assert_eq!(job.get("neg").and_then(Json::as_f64), Some(-1.5));
        assert_eq!(job.get("s").and_then(Json::as_str), Some("a\"bA"));
        assert!(job.get("missing").is_none());
    }

    #[test]
    fn parses_arrays_and_rejects_garbage() {
        let j = Json::parse(r#"[{"id":0,"mode":"bpf"},{}]"#).unwrap();
        assert_eq!(j.as_array().len(), 2);
        assert_eq!(
            j.at(0).unwrap().get("mode").and_then(Json::as_str),
            Some("bpf")
        );
        assert!(Json::parse("no json here").is_err());
        assert!(Json::parse("{\"a\": }").is_err());
        assert!(Json::parse("{\"a\": 1").is_err());
    }
}
