//! The documentation and the Docker Compose recipe:
//!
//! - every relative Markdown link in the user-facing pages points at a file or directory that
//!   exists, and every `#anchor` into a Markdown page at one of its headings (GitHub's slugs);
//! - the README stays a front door (at most 200 lines), and no page points at the team's
//!   shared folder, which is not part of this repository;
//! - the configuration reference lists exactly the environment variables the runner reads;
//! - `deploy/compose/compose.yaml` passes the Compose specification's schema
//!   (`check-jsonschema --builtin-schema vendor.compose-spec`), a broken copy fails it, and its
//!   runner service sets only settings the runner reads, with the healthcheck subcommand.
//!
//! Each checker is also shown to fail on a broken input, so a green run means something.
//! A missing tool fails the test with the command that installs it; nothing is skipped.

use learning_tests::tools::{check_jsonschema, require_tool, text, TempDir};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use learning_tests::tools::HINT_CHECK_JSONSCHEMA as HINT_JSONSCHEMA;

/// The pages whose links are checked, relative to the workspace root.
const PAGES_OUTSIDE_DOCS: [&str; 5] = [
    "README.md",
    "deploy/compose/README.md",
    "operator/README.md",
    "charts/README.md",
    "charts/learning-worker-operator/README.md",
];

/// The pages the issue asks for under docs/.
const REQUIRED_DOCS: [&str; 7] = [
    "gustav-contract.md",
    "configuration.md",
    "runbook.md",
    "kubernetes.md",
    "gpu-sizing.md",
    "migration.md",
    "development.md",
];

const README_MAX_LINES: usize = 200;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every checked page: the fixed ones and every `docs/*.md`.
fn pages() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = PAGES_OUTSIDE_DOCS.iter().map(|p| root().join(p)).collect();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    v.extend(docs);
    v
}

// --- Markdown: links and headings ------------------------------------------------------------

/// Lines outside fenced code blocks, with their 1-based numbers.
fn prose_lines(md: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut fence: Option<&str> = None;
    for (i, line) in md.lines().enumerate() {
        let t = line.trim_start();
        let marker = if t.starts_with("```") {
            Some("```")
        } else if t.starts_with("~~~") {
            Some("~~~")
        } else {
            None
        };
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(f), Some(m)) if f == m => fence = None,
            (None, None) => out.push((i + 1, line)),
            _ => {}
        }
    }
    out
}

/// The line without its inline code spans (`` `…` ``), which render as code, not links.
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].chars().take_while(|&c| c == '`').count();
        let after = &rest[start + ticks..];
        match after.find(&"`".repeat(ticks)) {
            Some(end) => rest = &after[end + ticks..],
            None => {
                // An unmatched backtick is literal.
                out.push_str(&rest[start..start + ticks]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Every inline link or image target `[text](target)` / `![alt](target)`, with its line
/// number; a title (`[t](x "title")`) is dropped.
fn links(md: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose_lines(md) {
        let line = without_code_spans(line);
        let mut rest = line.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].split_whitespace().next().unwrap_or("");
            let target = target.trim_start_matches('<').trim_end_matches('>');
            // Only when a `[` opened the text on this line.
            if rest[..i].contains('[') && !target.is_empty() {
                out.push((n, target.to_owned()));
            }
            rest = &after[end + 1..];
        }
    }
    out
}

fn is_external(target: &str) -> bool {
    let t = target.to_ascii_lowercase();
    t.starts_with("http://") || t.starts_with("https://") || t.starts_with("mailto:")
}

/// GitHub's anchor for a heading: lower case, markup and punctuation dropped (letters,
/// digits, spaces, `-` and `_` stay), spaces become `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of every ATX heading (`#` … `######`) outside code blocks; repeated slugs get
/// `-1`, `-2`, … as on GitHub.
fn anchors(md: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose_lines(md) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let text = line[hashes..].trim().trim_end_matches('#').trim();
        let base = slug(&without_code_spans_keep_text(text));
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// Heading text with code spans kept as text (only the backticks go): `` `amd.com/gpu` ``
/// contributes `amdcomgpu` to the slug, as on GitHub.
fn without_code_spans_keep_text(text: &str) -> String {
    text.replace('`', "")
}

/// The problems of one page's relative links: missing files or directories, missing anchors.
fn broken_links(page: &Path, md: &str) -> Vec<String> {
    let dir = page.parent().expect("page directory");
    let mut problems = Vec::new();
    for (line, target) in links(md) {
        if is_external(&target) {
            continue;
        }
        let (file, anchor) = match target.split_once('#') {
            Some((f, a)) => (f, Some(a)),
            None => (target.as_str(), None),
        };
        let resolved = if file.is_empty() {
            page.to_path_buf()
        } else {
            dir.join(file)
        };
        if !resolved.exists() {
            problems.push(format!(
                "{}:{line}: {target}: {} does not exist",
                page.display(),
                resolved.display()
            ));
            continue;
        }
        if let Some(anchor) = anchor {
            if resolved.extension().is_some_and(|e| e == "md") {
                let found = anchors(&read(&resolved));
                if !found.contains(anchor) {
                    problems.push(format!(
                        "{}:{line}: {target}: no heading with the anchor #{anchor} in {} (anchors: {found:?})",
                        page.display(),
                        resolved.display()
                    ));
                }
            }
        }
    }
    problems
}

#[test]
fn the_link_checker_finds_links_and_anchors_and_fails_on_broken_ones() {
    let md = "# Top\n\n## Both workers on one queue\n\n### No free `amd.com/gpu`\n\n\
              ## 5. `analysis_json`\n\n## Same\n\n## Same\n\n\
              See [a](#both-workers-on-one-queue), [b](#no-free-amdcomgpu), \
              [c](#5-analysis_json), [d](#same-1), [e](https://example.org/x#y), \
              [f](#nowhere), `[g](not-a-link.md)`, ![img](missing.png \"t\").\n\n\
              ```sh\n# not a heading\n[h](inside-code.md)\n```\n";
    let targets: Vec<String> = links(md).into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        targets,
        [
            "#both-workers-on-one-queue",
            "#no-free-amdcomgpu",
            "#5-analysis_json",
            "#same-1",
            "https://example.org/x#y",
            "#nowhere",
            "missing.png"
        ]
    );
    let a = anchors(md);
    assert!(a.contains("top") && a.contains("same") && a.contains("same-1"));
    assert!(
        !a.contains("not-a-heading"),
        "headings in code blocks do not count"
    );

    let dir = TempDir::new("docs-links");
    let page = dir.write("page.md", md);
    let problems = broken_links(&page, md);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].contains("#nowhere"), "{problems:#?}");
    assert!(problems[1].contains("missing.png"), "{problems:#?}");

    // A link to another page's missing heading, and to a directory.
    dir.write("other.md", "# Other\n\n## Here\n");
    std::fs::create_dir_all(dir.0.join("sub")).unwrap();
    let md2 = "[ok](other.md#here) [dir](sub/) [bad](other.md#there)\n";
    let problems = broken_links(&page, md2);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].contains("other.md#there"));
}

#[test]
fn slugs_follow_githubs_rules() {
    assert_eq!(slug("1. The database role"), "1-the-database-role");
    assert_eq!(
        slug("What the file sets, and why"),
        "what-the-file-sets-and-why"
    );
    assert_eq!(
        slug("GUSTAV's runbook checks, with the runner"),
        "gustavs-runbook-checks-with-the-runner"
    );
    assert_eq!(slug("Local AI backend (Ollama)"), "local-ai-backend-ollama");
    assert_eq!(
        slug("Side by side, and rollback"),
        "side-by-side-and-rollback"
    );
}

#[test]
fn every_relative_link_and_anchor_in_the_docs_resolves() {
    let pages = pages();
    for p in &pages {
        assert!(p.is_file(), "{} is missing", p.display());
    }
    let mut problems = Vec::new();
    let mut checked = 0;
    for page in &pages {
        let md = read(page);
        checked += links(&md).len();
        problems.extend(broken_links(page, &md));
    }
    assert!(
        checked > 50,
        "only {checked} links found: is the extractor broken?"
    );
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_docs_pages_exist_and_the_readme_is_a_front_door() {
    for page in REQUIRED_DOCS {
        assert!(
            root().join("docs").join(page).is_file(),
            "docs/{page} is missing"
        );
    }
    let readme = read(&root().join("README.md"));
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, at most {README_MAX_LINES}: move details into docs/"
    );
    // The two commands that set everything up stay on the front page.
    for cmd in ["make demo", "make test"] {
        assert!(readme.contains(cmd), "README.md must show `{cmd}`");
    }
    // Every docs page is reachable from the README.
    let linked: BTreeSet<String> = links(&readme).into_iter().map(|(_, t)| t).collect();
    for page in REQUIRED_DOCS {
        assert!(
            linked
                .iter()
                .any(|t| t.starts_with(&format!("docs/{page}"))),
            "README.md does not link docs/{page}"
        );
    }
}

/// The team's shared folder is not part of this repository, and user pages do not link the
/// runner's or operator's source files (they move; link the crate or a docs page).
#[test]
fn no_page_points_at_the_shared_folder_or_into_source_files() {
    let mut problems = Vec::new();
    for page in pages() {
        let md = read(&page);
        for needle in ["shared/docs", "../shared"] {
            if md.contains(needle) {
                problems.push(format!("{} mentions {needle}", page.display()));
            }
        }
        for (line, target) in links(&md) {
            if target.contains("/src/") && target.ends_with(".rs") {
                problems.push(format!(
                    "{}:{line}: links the source file {target}",
                    page.display()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// --- The configuration reference ----------------------------------------------------------------

/// The environment variables the runner reads, from its sources: `env = "NAME"` attributes in
/// runner/src, and the `pub const NAME: &str = "NAME";` list of the contract crate's env.rs
/// when there is one (the runner's command line names its variables from there).
fn runner_env_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut files = Vec::new();
    rs_files(&root().join("runner/src"), &mut files);
    for f in &files {
        let src = read(f);
        for part in src.split("env = \"").skip(1) {
            if let Some(end) = part.find('"') {
                names.insert(part[..end].to_owned());
            }
        }
    }
    let contract_env = root().join("contract/src/env.rs");
    if contract_env.is_file() {
        for line in read(&contract_env).lines() {
            let Some(rest) = line.trim().strip_prefix("pub const ") else {
                continue;
            };
            if let Some((_, value)) = rest.split_once(": &str = \"") {
                names.insert(value.trim_end_matches("\";").to_owned());
            }
        }
    }
    assert!(
        names.len() > 20,
        "found only {names:?} in runner/src (env = \"…\") and contract/src/env.rs: where does \
         the runner name its environment variables now?"
    );
    names
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The variables in the first column of the table under "## Settings" in docs/configuration.md.
fn documented_settings() -> BTreeSet<String> {
    let md = read(&root().join("docs/configuration.md"));
    let section = md
        .split("\n## Settings\n")
        .nth(1)
        .expect("docs/configuration.md has a `## Settings` section")
        .split("\n## ")
        .next()
        .unwrap();
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(name, _)| name.to_owned()))
        .collect()
}

#[test]
fn the_configuration_reference_lists_exactly_the_runners_settings() {
    let code = runner_env_names();
    let documented = documented_settings();
    let undocumented: Vec<_> = code.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&code).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "docs/configuration.md (## Settings) is out of date: not documented {undocumented:?}; \
         documented but not read by the runner {unknown:?}"
    );
}

// --- The Compose recipe -------------------------------------------------------------------------

fn compose_path() -> PathBuf {
    root().join("deploy/compose/compose.yaml")
}

fn check_compose_schema(file: &Path) -> std::process::Output {
    check_jsonschema("vendor.compose-spec", file)
}

#[test]
fn the_compose_file_matches_the_compose_specification() {
    require_tool("check-jsonschema", HINT_JSONSCHEMA);
    let out = check_compose_schema(&compose_path());
    assert!(
        out.status.success(),
        "deploy/compose/compose.yaml:\n{}",
        text(&out)
    );

    // The check can fail: a misspelt key in the runner's service is refused.
    let good = read(&compose_path());
    let line = "    stop_grace_period: 40s\n";
    assert!(
        good.contains(line),
        "the broken copy is made from this line"
    );
    let broken = good.replacen(line, &format!("{line}    stop_grace_periods: 40s\n"), 1);
    let dir = TempDir::new("compose-bad");
    let bad = dir.write("compose.yaml", &broken);
    let out = check_compose_schema(&bad);
    assert!(
        !out.status.success(),
        "a compose file with an unknown service key passed:\n{}",
        text(&out)
    );
    assert!(text(&out).contains("stop_grace_periods"), "{}", text(&out));
}

fn compose() -> Value {
    serde_yaml_ng::from_str(&read(&compose_path())).expect("compose.yaml is YAML")
}

#[test]
fn the_compose_runner_replaces_the_python_worker_with_the_runners_own_settings() {
    let c = compose();
    let services = &c["services"];

    // GUSTAV's worker is only moved into a profile, nothing else of it is changed.
    let python = services["learning-worker"]
        .as_mapping()
        .expect("learning-worker");
    assert_eq!(
        python.len(),
        1,
        "only `profiles` for learning-worker: {python:?}"
    );
    assert_eq!(
        services["learning-worker"]["profiles"][0].as_str(),
        Some("python-worker")
    );

    let runner = &services["learning-runner"];
    // The image has no shell: the healthcheck is the runner's own subcommand, at the path
    // the Dockerfile installs it to.
    let test: Vec<&str> = runner["healthcheck"]["test"]
        .as_sequence()
        .expect("healthcheck.test")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        test,
        ["CMD", "/usr/local/bin/learning-runner", "healthcheck"]
    );
    let dockerfile = read(&root().join("Dockerfile"));
    assert!(dockerfile
        .contains("COPY --from=build /out/learning-runner /usr/local/bin/learning-runner"));
    let mut runner_src = Vec::new();
    rs_files(&root().join("runner/src"), &mut runner_src);
    assert!(
        runner_src
            .iter()
            .any(|f| read(f).contains("    Healthcheck,")),
        "the runner has no `healthcheck` subcommand any more"
    );

    // Every variable it sets is one the runner reads, and documented.
    let known = runner_env_names();
    let env = runner["environment"]
        .as_mapping()
        .expect("environment as a map");
    let names: BTreeSet<String> = env.keys().map(|k| k.as_str().unwrap().to_owned()).collect();
    let unknown: Vec<_> = names.difference(&known).collect();
    assert!(unknown.is_empty(), "the runner does not read {unknown:?}");
    for required in [
        "LEARNING_DATABASE_URL",
        "AI_BACKEND",
        "OLLAMA_BASE_URL",
        "STORAGE_VERIFY_ROOT",
        "SUPABASE_URL",
        "SUPABASE_SERVICE_ROLE_KEY",
    ] {
        assert!(names.contains(required), "{required} is not set");
    }
    // The drain fits into Compose's stop timeout.
    let drain: u64 = env[&Value::from("WORKER_DRAIN_GRACE_SECONDS")]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let grace: u64 = runner["stop_grace_period"]
        .as_str()
        .unwrap()
        .trim_end_matches('s')
        .parse()
        .unwrap();
    assert!(
        grace > drain,
        "stop_grace_period {grace}s must exceed the drain {drain}s"
    );

    // Ollama: the ROCm devices and groups of GUSTAV's runbook.
    let ollama = &services["ollama"];
    let devices: Vec<&str> = ollama["devices"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(devices.iter().any(|d| d.starts_with("/dev/kfd")));
    assert!(devices.iter().any(|d| d.starts_with("/dev/dri")));
    assert_eq!(ollama["group_add"][0].as_str(), Some("video"));
    assert!(ollama["group_add"][1]
        .as_str()
        .unwrap()
        .contains("RENDER_GID"));
    for var in ["HIP_VISIBLE_DEVICES", "HSA_OVERRIDE_GFX_VERSION"] {
        assert!(!ollama["environment"][var].is_null(), "ollama: {var}");
    }
}

/// The example environment names the chart's app version and holds no secret.
#[test]
fn the_compose_env_example_has_placeholders_only() {
    let example = read(&root().join("deploy/compose/.env.example"));
    let chart = read(&root().join("charts/learning-worker-operator/Chart.yaml"));
    let app_version = chart
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .expect("appVersion")
        .trim()
        .trim_matches('"');
    assert!(
        example.contains(&format!("/learning-runner:{app_version}\n")),
        "LEARNING_RUNNER_IMAGE should carry the chart's appVersion {app_version}"
    );
    let compose = read(&compose_path());
    for line in example.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.starts_with('#') {
            continue;
        }
        if ["URL", "PASSWORD", "SECRET", "KEY", "GID"]
            .iter()
            .any(|s| key.contains(s))
        {
            assert!(
                value.contains("CHANGE_ME"),
                "{key} must be a placeholder: {value}"
            );
        }
        // Every variable the example sets is used by compose.yaml (or Compose itself).
        assert!(
            key == "COMPOSE_FILE" || compose.contains(&format!("${{{key}")),
            "{key} is not used by compose.yaml"
        );
    }
}

// --- helpers -----------------------------------------------------------------------------------
