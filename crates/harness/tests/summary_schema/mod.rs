//! Checks `docs/SUMMARY.md` against a summary.json written by `harness::Summary`: the
//! documented key patterns (`{a,b}` alternatives, `<attack>` for each Type II attack,
//! `<method>` for each explanation method, a key covering everything beneath it) and the keys actually written must agree both ways.

use std::collections::BTreeSet;

use serde_json::Value;

/// The key patterns of the first column of every table row of `doc`.
pub fn documented_patterns(doc: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let first = line[2..].split(" |").next().unwrap_or("");
        out.extend(first.split('`').skip(1).step_by(2).map(str::to_string));
    }
    out
}

/// Every key a pattern stands for, with `<attack>` replaced by each of `attacks` and
/// `<method>` by each of `cam::METHOD_NAMES`.
pub fn expand(pattern: &str, attacks: &[String]) -> Vec<String> {
    if let Some(open) = pattern.find('{') {
        let close = open
            + pattern[open..]
                .find('}')
                .expect("an unclosed { in a pattern");
        let (head, tail) = (&pattern[..open], &pattern[close + 1..]);
        return pattern[open + 1..close]
            .split(',')
            .flat_map(|alt| expand(&format!("{head}{}{tail}", alt.trim()), attacks))
            .collect();
    }
    if pattern.contains("<method>") {
        return cam::METHOD_NAMES
            .iter()
            .flat_map(|m| expand(&pattern.replace("<method>", m), attacks))
            .collect();
    }
    if pattern.contains("<attack>") {
        return attacks
            .iter()
            .map(|a| pattern.replace("<attack>", a))
            .collect();
    }
    vec![pattern.to_string()]
}

/// The dotted paths of every leaf (a value that is not an object) of `v`.
pub fn leaves(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, x) in map {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(x, &p, out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

/// The node at dotted `path`, if any (keys may hold `-` but not `.`).
pub fn node<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |n, k| n.get(k))
}

/// The disagreements between the documented keys and `summary`: keys written but not
/// documented, and keys documented but not written.
pub fn disagreements(doc: &str, summary: &Value) -> (Vec<String>, Vec<String>) {
    let attacks: Vec<String> = summary["type2"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let documented: BTreeSet<String> = documented_patterns(doc)
        .iter()
        .flat_map(|p| expand(p, &attacks))
        .collect();
    let mut written = BTreeSet::new();
    leaves(summary, "", &mut written);
    let covered = |leaf: &String| {
        documented
            .iter()
            .any(|d| leaf == d || leaf.starts_with(&format!("{d}.")))
    };
    let undocumented = written.iter().filter(|l| !covered(l)).cloned().collect();
    let unwritten = documented
        .iter()
        .filter(|d| node(summary, d).is_none())
        .cloned()
        .collect();
    (undocumented, unwritten)
}
