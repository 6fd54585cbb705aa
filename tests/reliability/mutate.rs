//! Seeded mutators shared by the property-based tests: a small xorshift generator, byte-level
//! mutations (bit flips, deletions, insertions, truncation, doubled or removed delimiters),
//! structural JSON mutations (values of another type, removed and renamed members, anywhere or at
//! named members) and still-valid times moved to another moment; plus the case seeds
//! (`RELIABILITY_SEED` replays one) and a guard that prints a failing case's seed.

use serde_json::Value;

/// xorshift64*: small, seeded, and the same on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

pub fn env_count(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The seeds to run: one when `RELIABILITY_SEED` is set, else `cases` seeds from `base`.
pub fn seeds(base: u64, cases_env: &str, default: u64) -> Vec<u64> {
    match std::env::var("RELIABILITY_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(seed) => vec![seed],
        None => (0..env_count(cases_env, default))
            .map(|i| base + i)
            .collect(),
    }
}

/// Prints the seed of a case that panics (an assertion or a crash in the code under test).
pub struct SeedGuard<'a>(pub &'a str, pub u64, pub String);

impl Drop for SeedGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "failing case: {} seed {} ({}); replay with RELIABILITY_SEED={}",
                self.0, self.1, self.2, self.1
            );
        }
    }
}

const BYTE_MUTATORS: &[&str] = &[
    "bit flip",
    "byte deletion",
    "byte insertion",
    "truncation",
    "doubled delimiter",
    "removed delimiter",
];

/// A byte-level mutation of `bytes`; returns its name.
pub fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>, delimiters: &[u8]) -> String {
    if bytes.is_empty() {
        bytes.push(b'"');
        return "byte insertion".to_string();
    }
    let which = rng.below(BYTE_MUTATORS.len());
    let at = rng.below(bytes.len());
    match which {
        0 => bytes[at] ^= 1 << rng.below(8),
        1 => {
            let end = (at + 1 + rng.below(4)).min(bytes.len());
            bytes.drain(at..end);
        }
        2 => {
            let pool = [
                b'"', b',', b'\n', b'\r', b'{', b'}', b'[', b']', b':', 0xFF, 0x00,
            ];
            let byte = if rng.below(2) == 0 {
                pool[rng.below(pool.len())]
            } else {
                rng.next() as u8
            };
            bytes.insert(at, byte);
        }
        3 => bytes.truncate(at),
        4 | 5 => {
            let positions: Vec<usize> = bytes
                .iter()
                .enumerate()
                .filter(|(_, b)| delimiters.contains(b))
                .map(|(i, _)| i)
                .collect();
            if positions.is_empty() {
                bytes.truncate(at);
                return "truncation".to_string();
            }
            let at = positions[rng.below(positions.len())];
            if which == 4 {
                bytes.insert(at, bytes[at]);
            } else {
                bytes.remove(at);
            }
        }
        _ => unreachable!(),
    }
    BYTE_MUTATORS[which].to_string()
}

/// A structural mutation of a JSON value: a value of another type, a removed key or a renamed
/// key, somewhere in the tree; returns its name.
pub fn mutate_json(rng: &mut Rng, value: &mut Value) -> String {
    let mut paths = Vec::new();
    collect_paths(value, &mut Vec::new(), &mut paths);
    if paths.is_empty() {
        *value = Value::Null;
        return "type change".to_string();
    }
    let path = paths[rng.below(paths.len())].clone();
    mutate_json_at(rng, value, &path)
}

/// [`mutate_json`] restricted to the members named one of `keys` (anywhere in the tree); `None`
/// when the value has no such member.
pub fn mutate_json_key(rng: &mut Rng, value: &mut Value, keys: &[&str]) -> Option<String> {
    let mut paths = Vec::new();
    collect_paths(value, &mut Vec::new(), &mut paths);
    paths
        .retain(|path| matches!(path.last(), Some(Step::Key(key)) if keys.contains(&key.as_str())));
    if paths.is_empty() {
        return None;
    }
    let path = paths[rng.below(paths.len())].clone();
    let what = mutate_json_at(rng, value, &path);
    let Some(Step::Key(key)) = path.last() else {
        unreachable!("only member paths were kept")
    };
    Some(format!("{what} of {key}"))
}

/// A still-valid time of another moment: the member named one of `keys` holding a time
/// (Salesforce's `2026-05-20T20:49:32.000+0000`, RFC 3339 or epoch milliseconds) moved by a
/// second, a day or four hundred days, either way; `None` when there is no such member.
pub fn shift_time(rng: &mut Rng, value: &mut Value, keys: &[&str]) -> Option<String> {
    let mut paths = Vec::new();
    collect_paths(value, &mut Vec::new(), &mut paths);
    paths
        .retain(|path| matches!(path.last(), Some(Step::Key(key)) if keys.contains(&key.as_str())));
    if paths.is_empty() {
        return None;
    }
    let path = &paths[rng.below(paths.len())];
    let target = path.iter().fold(&mut *value, |node, step| match step {
        Step::Key(key) => &mut node[key.as_str()],
        Step::Index(index) => &mut node[*index],
    });
    let text = target.as_str()?.to_string();
    let seconds =
        [1i64, 86_400, 400 * 86_400][rng.below(3)] * if rng.below(2) == 0 { 1 } else { -1 };
    let by = chrono::Duration::seconds(seconds);
    let shifted = if let Ok(ms) = text.parse::<i64>() {
        (ms + seconds * 1000).to_string()
    } else if let Ok(at) = chrono::DateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.3f%z") {
        (at + by).format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string()
    } else {
        let at = chrono::DateTime::parse_from_rfc3339(&text).ok()?;
        (at.with_timezone(&chrono::Utc) + by).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    *target = Value::String(shifted);
    let Some(Step::Key(key)) = path.last() else {
        unreachable!("only member paths were kept")
    };
    Some(format!("{key} shifted by {seconds} s"))
}

fn mutate_json_at(rng: &mut Rng, value: &mut Value, path: &[Step]) -> String {
    let (parent_path, last) = path.split_at(path.len() - 1);
    let mut parent = &mut *value;
    for step in parent_path {
        parent = match step {
            Step::Key(key) => &mut parent[key.as_str()],
            Step::Index(index) => &mut parent[*index],
        };
    }
    let kind = rng.below(3);
    match (&last[0], parent) {
        (Step::Key(key), Value::Object(map)) if kind == 1 => {
            map.remove(key);
            "removed key".to_string()
        }
        (Step::Key(key), Value::Object(map)) if kind == 2 => {
            let moved = map.remove(key).unwrap_or(Value::Null);
            map.insert(format!("{key}_"), moved);
            "renamed key".to_string()
        }
        (step, parent) => {
            let target = match step {
                Step::Key(key) => &mut parent[key.as_str()],
                Step::Index(index) => &mut parent[*index],
            };
            *target = match rng.below(6) {
                0 => Value::Null,
                1 => serde_json::json!(rng.next() as i64),
                2 => serde_json::json!("\u{0}x\"\\"),
                3 => serde_json::json!([]),
                4 => serde_json::json!({}),
                _ => serde_json::json!(true),
            };
            "type change".to_string()
        }
    }
}

#[derive(Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn collect_paths(value: &Value, path: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                path.push(Step::Key(key.clone()));
                out.push(path.clone());
                collect_paths(child, path, out);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                path.push(Step::Index(index));
                out.push(path.clone());
                collect_paths(child, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}
