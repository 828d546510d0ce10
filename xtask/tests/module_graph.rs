//! Every crate's top-level modules depend on each other one way: the graph of
//! `crate::NAME` references between them has no cycle.
//!
//! For each `crates/*/src` and `xtask/src`, every `.rs` file belongs to the top-level
//! module named by its first path component under `src/` (`foo.rs`, `foo/mod.rs` and
//! `foo/bar.rs` all belong to `foo`; `lib.rs` and `main.rs` are the crate root, not a
//! module). A module depends on another when one of its files names it:
//! `crate::other::...` in code or in a doc comment (an intra-doc link is a reference
//! too) or in a string literal (serde's `#[serde(with = "crate::nan::float")]`), each
//! item of a `use crate::{a, b::c}` group, and `super::...` paths that climb to the
//! crate root. Ordinary comments are skipped, and so is every item under
//! `#[cfg(test)]` (a `mod tests { ... }`, a test-only `use`): tests may reach
//! anywhere. A file named by a `#[cfg(test)] mod x;` in the root is still a module, so
//! test-support modules must not form cycles either.
//!
//! A failure prints one cycle per crate and, for each of its edges, the file and line
//! that makes it.
//!
//! The scan is lexical (std only, no parser dependency): `#[path]` attributes and
//! macros that build paths are not followed.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Module -> the modules it names.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// Where each edge of a [`Graph`] was first seen: (file, line).
type Witnesses = BTreeMap<(String, String), (PathBuf, usize)>;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

/// `(crate name, its src directory)` for every crate under `crates/` and for xtask.
fn source_dirs(root: &Path) -> Vec<(String, PathBuf)> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(root.join("crates")).expect("crates/ is readable") {
        let path = entry.expect("crates/ entry").path();
        if path.join("src").is_dir() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            dirs.push((name, path.join("src")));
        }
    }
    dirs.push(("xtask".to_string(), root.join("xtask/src")));
    dirs.sort();
    dirs
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The top-level module a file under `src/` belongs to (`None` for the crate root),
/// and how deep its own module is (`foo.rs`, `foo/mod.rs`: 1; `foo/bar.rs`: 2).
fn module_of(relative: &Path) -> Option<(String, usize)> {
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let file = parts.last()?.strip_suffix(".rs")?.to_string();
    let mut path: Vec<String> = parts[..parts.len() - 1].to_vec();
    if file != "mod" {
        path.push(file);
    }
    if path.is_empty() || (path.len() == 1 && (path[0] == "lib" || path[0] == "main")) {
        return None;
    }
    Some((path[0].clone(), path.len()))
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The parts of a source that can name a module.
struct Parts {
    /// The code, without comments and literals (where brackets can be matched).
    code: Vec<u8>,
    /// The doc comments.
    docs: Vec<u8>,
    /// The insides of string literals.
    strings: Vec<u8>,
}

/// Splits a source into its code, its doc comments and its string literals' insides,
/// each as long as the source and with its line breaks, every other byte a space:
/// ordinary comments and character literals are in none of them.
fn split(src: &[u8]) -> Parts {
    let n = src.len();
    let (mut code, mut docs, mut strings) = (vec![b' '; n], vec![b' '; n], vec![b' '; n]);
    let at = |i: usize| src.get(i).copied().unwrap_or(0);
    let mut i = 0;
    while i < n {
        let c = src[i];
        if c == b'/' && at(i + 1) == b'/' {
            let end = src[i..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(n, |p| i + p);
            let doc = at(i + 2) == b'!' || (at(i + 2) == b'/' && at(i + 3) != b'/');
            if doc {
                docs[i..end].copy_from_slice(&src[i..end]);
            }
            i = end;
            continue;
        }
        if c == b'/' && at(i + 1) == b'*' {
            let doc = (at(i + 2) == b'!' || at(i + 2) == b'*') && at(i + 3) != b'/';
            let (mut j, mut depth) = (i + 2, 1);
            while j < n && depth > 0 {
                if src[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if src[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            if doc {
                docs[i..j].copy_from_slice(&src[i..j]);
            }
            i = j;
            continue;
        }
        if c == b'"' {
            let mut j = i + 1;
            while j < n && src[j] != b'"' {
                j += if src[j] == b'\\' { 2 } else { 1 };
            }
            let j = j.min(n);
            strings[i + 1..j].copy_from_slice(&src[i + 1..j]);
            i = j + 1;
            continue;
        }
        // r"..", r#".."#, br".." (an `r` or `br` that starts a token).
        let starts_token = i == 0 || !is_ident(src[i - 1]);
        let after_b = i >= 1 && src[i - 1] == b'b' && (i == 1 || !is_ident(src[i - 2]));
        if c == b'r' && (starts_token || after_b) {
            let hashes = src[i + 1..].iter().take_while(|&&b| b == b'#').count();
            if at(i + 1 + hashes) == b'"' {
                let mut close = vec![b'"'];
                close.extend(std::iter::repeat_n(b'#', hashes));
                let body = i + 2 + hashes;
                let end = src[body..]
                    .windows(close.len())
                    .position(|w| w == close.as_slice())
                    .map_or(n, |p| body + p + close.len());
                let inside = end.saturating_sub(close.len()).max(body);
                strings[body..inside].copy_from_slice(&src[body..inside]);
                if after_b {
                    code[i - 1] = b' ';
                }
                i = end;
                continue;
            }
        }
        if c == b'\'' {
            // A character literal ('x', '\n', '\u{..}', 'é'), or else a lifetime.
            if at(i + 1) == b'\\' {
                let mut j = i + 3;
                while j < n && src[j] != b'\'' {
                    j += 1;
                }
                i = j + 1;
                continue;
            }
            let len = match at(i + 1) {
                0..=0x7f => 1,
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            };
            if at(i + 1 + len) == b'\'' {
                i += 2 + len;
                continue;
            }
        }
        code[i] = c;
        i += 1;
    }
    for (i, &b) in src.iter().enumerate() {
        if b == b'\n' {
            (code[i], docs[i], strings[i]) = (b'\n', b'\n', b'\n');
        }
    }
    Parts {
        code,
        docs,
        strings,
    }
}

/// Skips spaces (any whitespace) from `i`.
fn skip_space(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && s[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Whether `s[i..]` is `tokens`, whitespace allowed between them; the end if so.
fn tokens_at(s: &[u8], mut i: usize, tokens: &[&str]) -> Option<usize> {
    for t in tokens {
        i = skip_space(s, i);
        if !s[i..].starts_with(t.as_bytes()) {
            return None;
        }
        i += t.len();
    }
    Some(i)
}

/// The index just past the bracket that closes the one at `open`.
fn matching(s: &[u8], open: usize) -> usize {
    let (o, c) = (s[open], if s[open] == b'{' { b'}' } else { b']' });
    let mut depth = 0usize;
    for (j, &b) in s.iter().enumerate().skip(open) {
        if b == o {
            depth += 1;
        } else if b == c {
            depth -= 1;
            if depth == 0 {
                return j + 1;
            }
        }
    }
    s.len()
}

/// The byte ranges of the items under `#[cfg(test)]` in a file's code (all of it
/// under `#![cfg(test)]`): each from the attribute to the item's closing brace or
/// semicolon.
fn test_only(code: &[u8]) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut i = 0;
    while let Some(p) = code[i..].iter().position(|&b| b == b'#') {
        let start = i + p;
        i = start + 1;
        if tokens_at(code, start + 1, &["!", "[", "cfg", "(", "test", ")", "]"]).is_some() {
            let whole = Range {
                start: 0,
                end: code.len(),
            };
            return vec![whole];
        }
        let Some(mut j) = tokens_at(code, start + 1, &["[", "cfg", "(", "test", ")", "]"]) else {
            continue;
        };
        // Further attributes, then the item up to its body or its semicolon.
        loop {
            j = skip_space(code, j);
            if code.get(j) == Some(&b'#') && code.get(skip_space(code, j + 1)) == Some(&b'[') {
                j = matching(code, skip_space(code, j + 1));
            } else {
                break;
            }
        }
        let mut depth = 0i32;
        while j < code.len() {
            match code[j] {
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth -= 1,
                b';' if depth <= 0 => {
                    j += 1;
                    break;
                }
                b'{' => {
                    j = matching(code, j);
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        ranges.push(start..j);
        i = j;
    }
    ranges
}

/// The bodies of inline `mod name { ... }` blocks, which add a level to `super::`.
fn inline_modules(code: &[u8]) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut i = 0;
    while let Some(p) = find_word(code, i, b"mod") {
        i = p + 3;
        let name = skip_space(code, i);
        let len = code[name..].iter().take_while(|&&b| is_ident(b)).count();
        let brace = skip_space(code, name + len);
        if len > 0 && code.get(brace) == Some(&b'{') {
            ranges.push(brace..matching(code, brace));
        }
    }
    ranges
}

/// The next occurrence of `word` at or after `from` that is a whole word.
fn find_word(s: &[u8], from: usize, word: &[u8]) -> Option<usize> {
    let mut i = from;
    while i + word.len() <= s.len() {
        let p = i + s[i..].windows(word.len()).position(|w| w == word)?;
        let before = p == 0 || !is_ident(s[p - 1]);
        let after = s.get(p + word.len()).is_none_or(|&b| !is_ident(b));
        if before && after {
            return Some(p);
        }
        i = p + 1;
    }
    None
}

/// The first name of the path that starts at `i` (after `crate::`): one identifier,
/// or the first identifier of each item of a `{a, b::c}` group.
fn path_heads(s: &[u8], i: usize) -> Vec<String> {
    let i = skip_space(s, i);
    let ident = |j: usize| {
        let j = skip_space(s, j);
        let len = s[j..].iter().take_while(|&&b| is_ident(b)).count();
        String::from_utf8_lossy(&s[j..j + len]).into_owned()
    };
    if s.get(i) != Some(&b'{') {
        return vec![ident(i)];
    }
    let end = matching(s, i) - 1;
    let (mut heads, mut depth, mut item) = (Vec::new(), 0, i + 1);
    for (j, &b) in s.iter().enumerate().take(end + 1).skip(i + 1) {
        match b {
            b'{' => depth += 1,
            b'}' if depth > 0 => depth -= 1,
            b',' | b'}' if depth == 0 => {
                heads.push(ident(item));
                item = j + 1;
            }
            _ => {}
        }
    }
    heads.retain(|h| !h.is_empty() && h != "self");
    heads
}

/// The names that follow `crate::` (or enough `super::` to reach the crate root from
/// a module `depth` deep) in `text`, outside `skip`, with the line of each.
fn root_references(
    text: &[u8],
    depth: usize,
    skip: &[Range<usize>],
    inline: &[Range<usize>],
) -> Vec<(String, usize)> {
    let line = |p: usize| 1 + text[..p].iter().filter(|&&b| b == b'\n').count();
    let skipped = |p: usize| skip.iter().any(|r| r.contains(&p));
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = find_word(text, i, b"crate") {
        i = p + 5;
        if let Some(after) = tokens_at(text, i, &["::"]).filter(|_| !skipped(p)) {
            out.extend(path_heads(text, after).into_iter().map(|h| (h, line(p))));
        }
    }
    let mut i = 0;
    while let Some(p) = find_word(text, i, b"super") {
        i = p + 5;
        if skipped(p) || (p >= 2 && &text[p - 2..p] == b"::") {
            continue;
        }
        let (mut supers, mut at) = (0, p);
        while let Some(next) = tokens_at(text, at, &["super", "::"]) {
            supers += 1;
            at = next;
        }
        let here = depth + inline.iter().filter(|r| r.contains(&p)).count();
        if supers == here {
            out.extend(path_heads(text, at).into_iter().map(|h| (h, line(p))));
        }
        i = at.max(i);
    }
    out
}

/// The module graph of the crate whose sources are in `src`.
fn module_graph(src: &Path) -> (Graph, Witnesses) {
    let mut files: Vec<(PathBuf, String, usize)> = Vec::new();
    for path in rust_files(src) {
        if let Some((module, depth)) = module_of(path.strip_prefix(src).unwrap()) {
            files.push((path, module, depth));
        }
    }
    let modules: BTreeSet<String> = files.iter().map(|f| f.1.clone()).collect();
    let mut graph: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    let mut witnesses = Witnesses::new();
    for (path, module, depth) in &files {
        let source = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let parts = split(&source);
        let skip = test_only(&parts.code);
        let inline = inline_modules(&parts.code);
        let refs = [&parts.code, &parts.docs, &parts.strings]
            .into_iter()
            .flat_map(|text| root_references(text, *depth, &skip, &inline));
        for (name, line) in refs {
            if name != *module && modules.contains(&name) {
                graph.get_mut(module).unwrap().insert(name.clone());
                witnesses
                    .entry((module.clone(), name))
                    .or_insert_with(|| (path.clone(), line));
            }
        }
    }
    (graph, witnesses)
}

/// A cycle of `graph` as its modules, the first one repeated at the end
/// (`[a, b, a]`), or `None` when the graph is acyclic.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit<'a>(
        graph: &'a Graph,
        node: &'a str,
        marks: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        marks.insert(node, Mark::Open);
        stack.push(node);
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next.as_str()) {
                Some(Mark::Open) => {
                    let from = stack.iter().position(|&s| s == next).unwrap();
                    let mut cycle: Vec<String> =
                        stack[from..].iter().map(|s| s.to_string()).collect();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(cycle) = visit(graph, next, marks, stack) {
                        return Some(cycle);
                    }
                }
            }
        }
        stack.pop();
        marks.insert(node, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if !marks.contains_key(node.as_str()) {
            if let Some(cycle) = visit(graph, node, &mut marks, &mut Vec::new()) {
                return Some(cycle);
            }
        }
    }
    None
}

/// A cycle, each of its edges with the file and line that makes it.
fn describe(krate: &str, cycle: &[String], witnesses: &Witnesses, root: &Path) -> String {
    let mut out = format!("{krate}: {}\n", cycle.join(" -> "));
    for pair in cycle.windows(2) {
        let (file, line) = &witnesses[&(pair[0].clone(), pair[1].clone())];
        let file = file.strip_prefix(root).unwrap_or(file);
        out.push_str(&format!(
            "    {} -> {}: {}:{line}\n",
            pair[0],
            pair[1],
            file.display()
        ));
    }
    out
}

#[test]
fn no_crate_has_a_cycle_between_its_modules() {
    let root = workspace_root();
    let dirs = source_dirs(&root);
    let mut failures = Vec::new();
    assert!(
        dirs.iter().any(|(name, _)| name == "harness"),
        "the workspace's crates were not found under {}",
        root.display()
    );
    for (krate, src) in &dirs {
        let (graph, witnesses) = module_graph(src);
        let cycle = find_cycle(&graph);
        if let Some(cycle) = cycle {
            failures.push(describe(krate, &cycle, &witnesses, &root));
        }
    }
    assert!(
        failures.is_empty(),
        "modules that depend on each other both ways (move the shared item to a module \
         below both):\n{}",
        failures.concat()
    );
}

fn graph_of(edges: &[(&str, &str)]) -> Graph {
    let mut g = Graph::new();
    for &(a, b) in edges {
        g.entry(a.to_string()).or_default().insert(b.to_string());
        g.entry(b.to_string()).or_default();
    }
    g
}

#[test]
fn the_cycle_finder_finds_cycles_and_accepts_dags() {
    let dag = graph_of(&[("ops", "passes"), ("passes", "kernels"), ("ops", "kernels")]);
    assert_eq!(find_cycle(&dag), None);
    assert_eq!(find_cycle(&Graph::new()), None);
    let cycle = graph_of(&[("a", "b"), ("b", "c"), ("c", "d"), ("d", "b"), ("a", "e")]);
    assert_eq!(
        find_cycle(&cycle),
        Some(vec!["b".into(), "c".into(), "d".into(), "b".into()])
    );
    let two = graph_of(&[("attack", "outcome"), ("outcome", "attack")]);
    assert_eq!(
        find_cycle(&two),
        Some(vec!["attack".into(), "outcome".into(), "attack".into()])
    );
}

#[test]
fn references_come_from_paths_groups_docs_and_super_but_not_tests() {
    let src = br##"
//! See [`crate::documented`].
use crate::{alpha, beta::Thing, gamma::{x, y}};
use crate::delta::Item;
// crate::commented
#[derive(Serialize)]
struct S { #[serde(with = "crate::serde_path::float")] v: f64 }
fn f() -> &'static str { let _c = '{'; let _l: &'static str = "} {"; r#"}"# }
pub(crate) fn g() { super::epsilon::call(); super::super::too_far(); }
mod inner { fn h() { super::super::zeta(); } }
#[cfg(test)]
mod tests {
    use crate::tested;
}
#[cfg(test)]
use crate::test_import;
fn after() { crate::omega::run() }
"##;
    let parts = split(src);
    let skip = test_only(&parts.code);
    let inline = inline_modules(&parts.code);
    let mut refs: Vec<(String, usize)> = [&parts.code, &parts.docs, &parts.strings]
        .into_iter()
        .flat_map(|text| root_references(text, 1, &skip, &inline))
        .collect();
    refs.sort();
    let names: Vec<&str> = refs.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "alpha",
            "beta",
            "delta",
            "documented",
            "epsilon",
            "gamma",
            "omega",
            "serde_path",
            "zeta"
        ]
    );
    // A file under `#![cfg(test)]` is skipped whole.
    let whole = b"#![cfg(test)]\nuse crate::x;\n";
    let skipped = test_only(whole);
    assert_eq!(
        (skipped.len(), skipped[0].start, skipped[0].end),
        (1, 0, whole.len())
    );
    // Lines count from the source's first line (here an empty one).
    let line_of = |name: &str| refs.iter().find(|(n, _)| n == name).unwrap().1;
    assert_eq!((line_of("documented"), line_of("omega")), (2, 17));
}

#[test]
fn files_map_to_their_top_level_module() {
    let m = |p: &str| module_of(Path::new(p));
    assert_eq!(m("lib.rs"), None);
    assert_eq!(m("main.rs"), None);
    assert_eq!(m("batch.rs"), Some(("batch".into(), 1)));
    assert_eq!(m("ops/mod.rs"), Some(("ops".into(), 1)));
    assert_eq!(m("ops/conv2d.rs"), Some(("ops".into(), 2)));
    assert_eq!(m("winograd/x/mod.rs"), Some(("winograd".into(), 2)));
}
