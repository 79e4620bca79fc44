//! The shape the code keeps (issue: "code a newcomer can walk"): no source file over 500
//! lines and no production function over 80 lines in the crates' `src/`. Test modules (after
//! `#[cfg(test)]`, or in a `tests` folder) are not held to the function limit.

use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 500;
const MAX_FN_LINES: usize = 80;
const CRATES: [&str; 5] = [
    "contract/src",
    "runner/src",
    "operator/src",
    "crds/src",
    "tests/src",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The line without string and character literals and without a `//` comment, so that only
/// code braces are counted.
fn code_only(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                while let Some(d) = chars.next() {
                    match d {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '\'' if chars.clone().nth(1) == Some('\'') => {
                chars.next();
                chars.next();
            }
            '/' if chars.peek() == Some(&'/') => break,
            _ => out.push(c),
        }
    }
    out
}

/// `(name, first line, length)` of every function before the file's `#[cfg(test)]`.
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let end = lines
        .iter()
        .position(|l| l.trim_start().starts_with("#[cfg(test)]"))
        .unwrap_or(lines.len());
    let mut found = Vec::new();
    let mut i = 0;
    while i < end {
        let code = code_only(lines[i]);
        let name = code
            .split_whitespace()
            .skip_while(|w| *w != "fn")
            .nth(1)
            .map(|n| n.split(['(', '<']).next().unwrap_or(n).to_owned());
        let Some(name) = name.filter(|_| code.split_whitespace().any(|w| w == "fn")) else {
            i += 1;
            continue;
        };
        let (mut depth, mut opened, mut j) = (0i32, false, i);
        while j < end {
            let c = code_only(lines[j]);
            depth += c.matches('{').count() as i32 - c.matches('}').count() as i32;
            opened |= c.contains('{');
            if (opened && depth <= 0) || (!opened && c.trim_end().ends_with(';')) {
                break;
            }
            j += 1;
        }
        found.push((name, i + 1, j - i + 1));
        i = j + 1;
    }
    found
}

#[test]
fn no_file_over_500_lines_and_no_production_function_over_80() {
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for dir in CRATES {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(files.len() > 50, "too few files found: {}", files.len());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let shown = file
            .strip_prefix(root())
            .unwrap_or(&file)
            .display()
            .to_string();
        let lines = text.lines().count();
        if lines > MAX_FILE_LINES {
            problems.push(format!("{shown}: {lines} lines"));
        }
        if shown.contains("/tests/") || shown.ends_with("/tests.rs") || shown.starts_with("tests/")
        {
            continue;
        }
        for (name, line, length) in functions(&text) {
            if length > MAX_FN_LINES {
                problems.push(format!("{shown}:{line}: fn {name} is {length} lines"));
            }
        }
    }
    assert!(problems.is_empty(), "split these:\n{}", problems.join("\n"));
}

#[test]
fn the_scan_sees_long_functions_and_ignores_braces_in_strings() {
    let body = "    let x = \"{{{\";\n".repeat(MAX_FN_LINES);
    let text =
        format!("fn long() {{\n{body}}}\nfn short() {{ '{{'; }}\n#[cfg(test)]\nfn t() {{}}\n");
    let found = functions(&text);
    assert_eq!(
        found,
        [
            ("long".to_owned(), 1, MAX_FN_LINES + 2),
            ("short".to_owned(), MAX_FN_LINES + 3, 1)
        ]
    );
}
