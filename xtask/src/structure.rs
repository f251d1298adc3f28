//! `cargo xtask lint`'s structure check: no import circle between the top-level modules of a crate, a short
//! `main.rs`, and no function longer than a screen outside tests.
//!
//! It reads rustfmt-formatted source as text: a function ends at the first `}` line indented as its `fn` line, and
//! a module depends on another when it names `crate::other` (or an item the crate root re-exports from `other`)
//! outside a comment.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The longest a non-test function may be, its signature and closing brace included.
pub const MAX_FN_LINES: usize = 60;
/// The longest a binary's `main.rs` may be.
pub const MAX_MAIN_LINES: usize = 60;

/// The crate roots checked, relative to the workspace root.
const ROOTS: [&str; 6] = [
    "crates/vae-model/src/lib.rs",
    "crates/vae-data/src/lib.rs",
    "crates/vae-train/src/lib.rs",
    "crates/vae-train/src/main.rs",
    "xtask/src/main.rs",
    "fuzz/fuzz_targets",
];

/// Fails with every problem found, one per line.
pub fn check(workspace: &Path) -> Result<()> {
    let mut problems = Vec::new();
    for root in ROOTS {
        let root = workspace.join(root);
        if root.is_dir() {
            for file in rust_files(&root)? {
                problems.extend(long_functions(&file)?);
            }
            continue;
        }
        problems.extend(check_root(&root)?);
    }
    if !problems.is_empty() {
        bail!("structure:\n{}", problems.join("\n"));
    }
    Ok(())
}

/// The problems of one crate root and the modules it declares.
fn check_root(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let src = read(root)?;
    if root.ends_with("main.rs") && src.lines().count() > MAX_MAIN_LINES {
        problems.push(format!(
            "{}: {} lines (at most {MAX_MAIN_LINES})",
            root.display(),
            src.lines().count()
        ));
    }
    problems.extend(long_functions(root)?);
    let dir = root.parent().expect("a file has a folder");
    let modules = declared_modules(&src);
    let reexports = reexports(&src, &modules);
    let mut graph = BTreeMap::new();
    for module in &modules {
        let mut deps = BTreeSet::new();
        // Test modules may reach anywhere: `tests.rs` files and the trailing `#[cfg(test)] mod tests`.
        for file in module_files(dir, module)?
            .into_iter()
            .filter(|f| !f.ends_with("tests.rs"))
        {
            problems.extend(long_functions(&file)?);
            deps.extend(references(&read(&file)?, &modules, &reexports));
        }
        deps.remove(module);
        graph.insert(module.clone(), deps);
    }
    for circle in find_circles(&graph) {
        problems.push(format!(
            "{}: import circle between {}",
            root.display(),
            circle.join(", ")
        ));
    }
    Ok(problems)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))
}

/// `mod name;` declarations of a crate root (test-only modules included: they may not make circles either).
fn declared_modules(src: &str) -> Vec<String> {
    src.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            let l = l.strip_prefix("pub(crate) ").unwrap_or(l);
            l.strip_prefix("mod ")?.strip_suffix(';').map(str::to_owned)
        })
        .collect()
}

/// Names the crate root re-exports, each with the top-level module it comes from.
fn reexports(src: &str, modules: &[String]) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let flat = src.replace('\n', " ");
    for stmt in flat.split(';') {
        let Some(rest) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, names)) = rest.split_once("::") else {
            continue;
        };
        if !modules.iter().any(|m| m == module) {
            continue;
        }
        let names = names.trim_matches(|c: char| c == '{' || c == '}' || c.is_whitespace());
        for name in names.split(',') {
            let name = name.rsplit(" as ").next().unwrap_or(name);
            let name = name.rsplit("::").next().unwrap_or(name).trim();
            if !name.is_empty() {
                map.insert(name.to_owned(), module.to_owned());
            }
        }
    }
    map
}

/// A top-level module's files: `name.rs` and everything under `name/`.
fn module_files(dir: &Path, module: &str) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let file = dir.join(format!("{module}.rs"));
    if file.is_file() {
        files.push(file);
    }
    let sub = dir.join(module);
    if sub.is_dir() {
        files.extend(rust_files(&sub)?);
    }
    Ok(files)
}

fn rust_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot read", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(rust_files(&path)?);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The top-level modules that `src` names through `crate::`, outside comments.
fn references(
    src: &str,
    modules: &[String],
    reexports: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    // An inline test module; not a `mod tests;` declaration, which may come before the code.
    let src = src
        .split("\n#[cfg(test)]\nmod tests {")
        .next()
        .unwrap_or(src);
    let code: Vec<&str> = src
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect();
    let code = code.join("\n");
    let mut deps = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        if code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue; // part of a longer name
        }
        for item in first_segments(&code[i + "crate::".len()..]) {
            if modules.contains(&item) {
                deps.insert(item);
            } else if let Some(m) = reexports.get(&item) {
                deps.insert(m.clone());
            }
        }
    }
    deps
}

/// The first path segment after `crate::`, or each first segment of a `{a, b::{c, d}}` group.
fn first_segments(rest: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let Some(group) = rest.strip_prefix('{') else {
        return vec![ident(rest)];
    };
    let (mut depth, mut start, mut items) = (0usize, 0, Vec::new());
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(ident(&group[start..i]));
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(ident(&group[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    items.retain(|s| !s.is_empty());
    items
}

/// The groups of modules that reach each other (a circle's members), each sorted, none a lone module.
fn find_circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(n) = stack.pop() {
            for next in graph.get(&n).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|k| (k, reach(k))).collect();
    let mut circles: Vec<Vec<String>> = Vec::new();
    for (node, from_node) in &reaches {
        if !from_node.contains(*node) || circles.iter().any(|c| c.contains(node)) {
            continue;
        }
        let members = from_node
            .iter()
            .filter(|other| reaches[other].contains(*node))
            .cloned()
            .collect();
        circles.push(members);
    }
    circles
}

/// Functions of `file` longer than [`MAX_FN_LINES`], skipping `#[cfg(test)]` modules and `#[test]` functions.
fn long_functions(file: &Path) -> Result<Vec<String>> {
    let src = read(file)?;
    Ok(function_lengths(&src)
        .into_iter()
        .filter(|(_, _, len)| *len > MAX_FN_LINES)
        .map(|(name, line, len)| {
            format!(
                "{}:{line}: fn {name} is {len} lines (at most {MAX_FN_LINES})",
                file.display()
            )
        })
        .collect())
}

/// `(name, first line, length)` of each non-test function with a body in rustfmt-formatted `src`.
fn function_lengths(src: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = src.lines().collect();
    let mut found = Vec::new();
    let mut test_until: Option<String> = None; // the closing line of a test item being skipped
    let mut after_test_attr = false;
    for (i, line) in lines.iter().enumerate() {
        let indent = &line[..line.len() - line.trim_start().len()];
        if let Some(end) = &test_until {
            if line == end {
                test_until = None;
            }
            continue;
        }
        let trimmed = line.trim();
        if trimmed == "#[cfg(test)]" || trimmed == "#[test]" {
            after_test_attr = true;
            continue;
        }
        if trimmed.starts_with("#[") || trimmed.starts_with("///") || trimmed.starts_with("//") {
            continue;
        }
        let is_item =
            trimmed.ends_with('{') || trimmed.ends_with(';') || fn_name(trimmed).is_some();
        if after_test_attr && is_item {
            after_test_attr = false;
            if !trimmed.ends_with(';') {
                test_until = Some(format!("{indent}}}"));
            }
            continue;
        }
        let Some(name) = fn_name(trimmed) else {
            continue;
        };
        if trimmed.ends_with('}') {
            found.push((name, i + 1, 1));
            continue;
        }
        let close = format!("{indent}}}");
        let body = lines[i..]
            .iter()
            .position(|l| l.trim_end().ends_with('{') || l.trim_end().ends_with(';'));
        if body.is_some_and(|b| lines[i + b].trim_end().ends_with(';')) {
            continue; // a declaration without a body
        }
        if let Some(len) = lines[i..]
            .iter()
            .position(|l| *l == close || l.starts_with(&format!("{indent}}} ")))
        {
            found.push((name, i + 1, len + 1));
        }
    }
    found
}

/// The name of the function `line` begins, if it begins one.
fn fn_name(line: &str) -> Option<String> {
    let mut rest = line;
    for prefix in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
        "extern \"C\" ",
    ] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    for prefix in ["const ", "async ", "unsafe ", "extern \"C\" "] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    let name: String = rest
        .strip_prefix("fn ")?
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &str)]) -> BTreeMap<String, BTreeSet<String>> {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    }

    #[test]
    fn finds_a_circle_and_accepts_a_tree() {
        let g = graph(&[
            ("a", "b"),
            ("b", "c"),
            ("c", "a"),
            ("a", "d"),
            ("d", "e"),
            ("e", "d"),
        ]);
        assert_eq!(find_circles(&g), [vec!["a", "b", "c"], vec!["d", "e"]]);
        assert!(find_circles(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])).is_empty());
    }

    #[test]
    fn references_follow_reexports_and_groups_but_not_comments() {
        let modules: Vec<String> = ["adam", "fused", "train", "eval"]
            .map(String::from)
            .to_vec();
        let root = "mod adam;\npub use adam::{Adam, AdamConfig as Config};\npub use train::train;";
        let re = reexports(root, &modules);
        assert_eq!(re["Adam"], "adam");
        assert_eq!(re["Config"], "adam");
        let src =
            "use crate::{fused::{self, X}, Adam};\n// crate::eval::y\nlet t = crate::train(1);\n";
        let deps: Vec<String> = references(src, &modules, &re).into_iter().collect();
        assert_eq!(deps, ["adam", "fused", "train"]);
        // A `mod tests;` declaration hides nothing after it; an inline test module's references do not count.
        let src = "mod a;\n#[cfg(test)]\nmod tests;\nfn f() { crate::eval::y() }\n#[cfg(test)]\nmod tests {\n crate::adam::z\n}";
        let deps: Vec<String> = references(src, &modules, &re).into_iter().collect();
        assert_eq!(deps, ["eval"]);
    }

    #[test]
    fn measures_functions_and_skips_tests() {
        let src = "fn a() {\n    x();\n}\n\npub(crate) fn b(\n    y: u8,\n) -> u8 {\n    y\n}\n\
                   trait T {\n    fn decl(&self);\n}\n#[cfg(test)]\nmod tests {\n    fn long() {\n    }\n}\n\
                   #[test]\nfn t() {\n}\nfn c() {}\n";
        let found = function_lengths(src);
        assert_eq!(
            found,
            [
                ("a".to_string(), 1, 3),
                ("b".to_string(), 5, 5),
                ("c".to_string(), 21, 1)
            ]
        );
    }

    #[test]
    fn the_workspace_holds_its_structure() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        check(&workspace).unwrap();
    }
}
