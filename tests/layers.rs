//! The modules of src/ form layers that only point down: every `crate::` path a
//! top-level module names (in `use` lines and in code) must be a module of a lower
//! layer. This test reads the sources, so a new import from a higher layer, or an
//! import cycle, fails here with the file and the path that caused it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The layer order, bottom to top. A module may name modules of the layers below
/// its own, never one of its own layer or above; every module of src/ has a layer
/// (`every_module_has_a_layer`).
const LAYERS: &[(&str, &[&str])] = &[
    ("domain types, importing nothing of the crate", &["domain"]),
    (
        "helpers without domain knowledge",
        &[
            "secret",
            "httputil",
            "json_text",
            "thread_cache",
            "progress",
            "log_writer",
            "crypto",
        ],
    ),
    ("image references, log lines", &["image", "log_format"]),
    ("image patterns", &["pattern"]),
    ("the config as plain data", &["config"]),
    ("metrics", &["metrics"]),
    (
        "vendor clients, resolver seam, policy, wire format, serving plumbing",
        &[
            "cloud",
            "resolve",
            "policy",
            "admission",
            "tls",
            "connections",
            "kube_client",
        ],
    ),
    ("the shared cache tier", &["shared_cache"]),
    (
        "scanners, registries, namespaces, events",
        &["scan", "registry", "namespaces", "events"],
    ),
    ("the pure decision", &["decision"]),
    (
        "the engine: inputs under the deadline, side effects",
        &["engine"],
    ),
    (
        "audit of running pods, cache purge, digest pinning",
        &["audit", "purge", "pin"],
    ),
    (
        "background audit, precheck, the server",
        &["background_audit", "precheck", "server"],
    ),
    ("the wiring", &["app"]),
];

/// Files that are not modules of the library (the binary and the build script sit
/// above everything and may name any module).
const NOT_LIBRARY_MODULES: &[&str] = &["lib.rs", "main.rs", "build.rs"];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of src/ belongs to (`scan/acr.rs` -> `scan`).
fn top_module(relative: &Path) -> String {
    let first = relative
        .components()
        .next()
        .expect("a file under src/")
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// The source with comments, string and character literals blanked out, so a
/// `crate::` in a doc comment or a message is not taken for an import.
fn code_only(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &source[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').unwrap_or(rest.len());
            i += end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(rest.len(), |e| e + 2);
            out.extend(rest[..end].chars().filter(|c| *c == '\n'));
            i += end;
        } else if let Some(hashes) = raw_string_start(rest) {
            let open = 2 + hashes; // r, hashes, quote
            let close = format!("\"{}", "#".repeat(hashes));
            let end = rest[open..]
                .find(&close)
                .map_or(rest.len(), |e| open + e + close.len());
            out.extend(rest[..end].chars().filter(|c| *c == '\n'));
            i += end;
        } else if rest.starts_with('"') {
            let mut j = 1;
            while j < rest.len() {
                match rest.as_bytes()[j] {
                    b'\\' => j += 2,
                    b'"' => break,
                    _ => j += 1,
                }
            }
            let end = (j + 1).min(rest.len());
            out.extend(rest[..end].chars().filter(|c| *c == '\n'));
            out.push_str("\"\"");
            i += end;
        } else if let Some(escaped) = rest.strip_prefix("'\\") {
            // The escaped character may itself be a quote: `'\''`.
            let after = escaped.get(1..).unwrap_or("");
            let end = after.find('\'').map_or(rest.len(), |e| 2 + 1 + e + 1);
            i += end;
        } else if rest.len() >= 3
            && rest.starts_with('\'')
            && rest[1..].chars().nth(1) == Some('\'')
        {
            i += 1 + rest[1..].chars().next().map_or(1, char::len_utf8) + 1;
        } else {
            let c = rest.chars().next().expect("not at the end");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// `Some(number of #)` when `s` opens a raw string (`r"`, `r#"`, `br"`...).
fn raw_string_start(s: &str) -> Option<usize> {
    let s = s.strip_prefix('b').unwrap_or(s);
    let s = s.strip_prefix('r')?;
    let hashes = s.bytes().take_while(|b| *b == b'#').count();
    s[hashes..].starts_with('"').then_some(hashes)
}

/// The first segments of every `crate::` path in `code`, braces of `use` groups
/// opened (`use crate::{a::X, b}` names `a` and `b`).
fn named_modules(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // `$crate::` or `foocrate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut end = 0;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = k;
                    break;
                }
            }
            found.extend(top_names_of_group(&group[..end]));
        } else {
            found.push(identifier_at(rest));
        }
    }
    found.retain(|m| !m.is_empty());
    found
}

fn top_names_of_group(group: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (k, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                names.push(identifier_at(group[start..k].trim_start()));
                start = k + 1;
            }
            _ => {}
        }
    }
    names.push(identifier_at(group[start..].trim_start()));
    names
}

fn identifier_at(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The modules the library declares in lib.rs (`pub mod x;`, `mod x;`).
fn declared_modules() -> BTreeSet<String> {
    let lib = fs::read_to_string(src_dir().join("lib.rs")).expect("src/lib.rs");
    code_only(&lib)
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let line = line
                .strip_prefix("pub(crate) ")
                .or_else(|| line.strip_prefix("pub "))
                .unwrap_or(line);
            line.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_owned)
        })
        .collect()
}

/// Per top-level module: the modules it names, each with the files that name it.
fn imports() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let modules = declared_modules();
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src/").to_owned();
        let shown = relative.display().to_string();
        if NOT_LIBRARY_MODULES.contains(&shown.as_str()) {
            continue;
        }
        let from = top_module(&relative);
        let source = fs::read_to_string(&file).expect("readable source");
        let entry = graph.entry(from.clone()).or_default();
        for to in named_modules(&code_only(&source)) {
            // Items of the crate root (lib.rs) are not a module of any layer.
            if to != from && modules.contains(&to) {
                entry.entry(to).or_default().insert(shown.clone());
            }
        }
    }
    graph
}

#[test]
fn every_module_has_a_layer() {
    let unplaced: Vec<String> = declared_modules()
        .into_iter()
        .filter(|m| layer_of(m).is_none())
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules of src/lib.rs missing from LAYERS in tests/layers.rs: {unplaced:?}"
    );
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let graph = imports();
    let mut cycles = Vec::new();
    for start in graph.keys() {
        // Depth-first from each module, reporting each cycle once, from its smallest member.
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, path)) = stack.pop() {
            for next in graph.get(&at).into_iter().flat_map(|n| n.keys()) {
                if next == start {
                    cycles.push(format!("{} -> {start}", path.join(" -> ")));
                } else if next > start && !path.contains(next) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "import cycles in src/:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn imports_point_only_to_lower_layers() {
    let mut violations = Vec::new();
    for (from, targets) in imports() {
        let Some(from_layer) = layer_of(&from) else {
            continue; // reported by every_module_has_a_layer
        };
        for (to, files) in targets {
            let to_layer = layer_of(&to);
            if to_layer.is_none_or(|l| l >= from_layer) {
                violations.push(format!(
                    "{from} (layer {}: {}) names {to} ({}) in {}",
                    from_layer + 1,
                    LAYERS[from_layer].0,
                    to_layer.map_or("no layer".to_owned(), |l| format!(
                        "layer {}: {}",
                        l + 1,
                        LAYERS[l].0
                    )),
                    files.into_iter().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports from the same or a higher layer (order in tests/layers.rs):\n{}",
        violations.join("\n")
    );
}

#[test]
fn domain_imports_nothing_of_the_crate() {
    let graph = imports();
    let named: Vec<&String> = graph
        .get("domain")
        .expect("src/domain/ exists")
        .keys()
        .collect();
    assert!(named.is_empty(), "src/domain/ names {named:?}");
}

#[test]
fn the_reader_finds_imports_and_ignores_comments_and_strings() {
    let code = code_only(
        "use crate::{a::X, b::{c, d}};\n\
         // crate::commented\n\
         let s = \"crate::quoted\"; let r = r#\"crate::raw\"#; let c = '\"'; let q = '\\'';\n\
         crate::e::f(); $crate::g;\n",
    );
    let mut found = named_modules(&code);
    found.sort();
    assert_eq!(found, ["a", "b", "e"]);
}

/// A file a reader can hold in their head: past this, split it by concern.
const MAX_LINES: usize = 700;

#[test]
fn no_source_file_is_longer_than_a_reader_can_hold() {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let lines = fs::read_to_string(path).ok()?.lines().count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", path.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines, split by concern: {long:?}"
    );
}
