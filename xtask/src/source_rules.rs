//! `cargo xtask tidy`'s rules about the sources themselves, beside the dependency rules:
//! every Rust file opens with a `//!` doc, every crate without `unsafe` forbids it,
//! ARCHITECTURE.md's code map names every workspace member, and no doc cites one of
//! the upper-case Markdown documents (`README`, `ARCHITECTURE`, ...) that the
//! repository does not hold.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Every broken rule under `root`, one line each (empty when the sources are tidy). The
/// rules cover the folders of the workspace's `members`.
pub(crate) fn check(root: &Path, members: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut rust_files = Vec::new();
    for dir in members {
        collect(dir, "rs", &mut rust_files)?;
    }
    for file in &rust_files {
        let text = read(file)?;
        if !opens_with_module_doc(&text) {
            out.push(format!(
                "{}: the file does not open with a `//!` doc saying what it holds",
                rel(root, file)
            ));
        }
    }
    for member in members {
        out.extend(check_forbid_unsafe(root, member)?);
    }
    let architecture = read(&root.join("ARCHITECTURE.md"))?;
    for member in members {
        let path = rel(root, member);
        if !architecture.contains(&format!("`{path}`")) {
            out.push(format!(
                "ARCHITECTURE.md: the code map does not list the workspace member `{path}`"
            ));
        }
    }
    out.extend(check_cited_docs(root, members, &rust_files)?);
    Ok(out)
}

/// The first non-blank line is a `//!` comment.
fn opens_with_module_doc(text: &str) -> bool {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| l.trim_start().starts_with("//!"))
}

/// A crate whose code never says `unsafe` carries `#![forbid(unsafe_code)]` at its root.
fn check_forbid_unsafe(root: &Path, member: &Path) -> anyhow::Result<Vec<String>> {
    let mut files = Vec::new();
    collect(member, "rs", &mut files)?;
    let mut uses_unsafe = false;
    for f in &files {
        uses_unsafe |= read(f)?
            .lines()
            .map(str::trim_start)
            .filter(|l| !l.starts_with("//"))
            .any(|l| {
                l.split(|c: char| !c.is_alphanumeric() && c != '_')
                    .any(|w| w == "unsafe")
            });
    }
    if uses_unsafe {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for crate_root in ["src/lib.rs", "src/main.rs"] {
        let path = member.join(crate_root);
        if path.is_file() && !read(&path)?.contains("#![forbid(unsafe_code)]") {
            out.push(format!(
                "{}: the crate has no `unsafe`; say so with `#![forbid(unsafe_code)]`",
                rel(root, &path)
            ));
        }
    }
    Ok(out)
}

/// Every upper-case document a Rust file or a Markdown file of ours cites exists in the
/// repository.
fn check_cited_docs(
    root: &Path,
    members: &[PathBuf],
    rust_files: &[PathBuf],
) -> anyhow::Result<Vec<String>> {
    let mut markdown = Vec::new();
    for dir in members {
        collect(dir, "md", &mut markdown)?;
    }
    for dir in ["docs", "testdata"] {
        collect(&root.join(dir), "md", &mut markdown)?;
    }
    for top in ["README.md", "ARCHITECTURE.md"] {
        markdown.push(root.join(top));
    }
    let mut present = BTreeSet::new();
    for f in &markdown {
        if let Some(name) = f.file_name().and_then(|n| n.to_str()) {
            present.insert(name.to_string());
        }
    }
    let mut out = Vec::new();
    for file in rust_files.iter().chain(&markdown) {
        let text = read(file)?;
        for cited in cited_markdown(&text) {
            if !present.contains(&cited) {
                out.push(format!(
                    "{}: cites `{cited}`, which is not in the repository",
                    rel(root, file)
                ));
            }
        }
    }
    Ok(out)
}

/// The upper-case documents a text cites by file name (the `README` of `README.md`;
/// lower-case names such as a benchmark's `summary` are outputs, not documents).
fn cited_markdown(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for token in text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '.')) {
        let token = token.trim_end_matches('.');
        if let Some(stem) = token.strip_suffix(".md") {
            if !stem.is_empty() && stem.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                out.insert(token.to_string());
            }
        }
    }
    out
}

fn collect(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "target" && name != "proptest-regressions" {
                collect(&path, ext, out)?;
            }
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_a_module_doc_is_caught() {
        assert!(opens_with_module_doc("\n//! What this holds.\nuse x;\n"));
        assert!(!opens_with_module_doc("use x;\n//! late\n"));
        assert!(!opens_with_module_doc(""));
    }

    #[test]
    fn cited_markdown_files_are_found() {
        // The names are split so that this file cites nothing itself.
        let cited = cited_markdown(concat!(
            "see GUIDE",
            ".md §2, `docs/OTHER_GUIDE",
            ".md`. Not x.mdx, ",
            "out/summary",
            ".md"
        ));
        let want: BTreeSet<String> = [concat!("GUIDE", ".md"), concat!("OTHER_GUIDE", ".md")]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(cited, want);
    }

    #[test]
    fn a_crate_without_unsafe_must_forbid_it() {
        let dir = std::env::temp_dir().join(format!("tempo-tidy-{}", std::process::id()));
        let src = dir.join("src");
        std::fs::create_dir_all(&src).expect("temp dir");
        std::fs::write(src.join("lib.rs"), "//! A crate.\npub fn f() {}\n").expect("write");
        let found = check_forbid_unsafe(&dir, &dir).expect("check");
        assert_eq!(found.len(), 1, "{found:?}");
        std::fs::write(
            src.join("lib.rs"),
            "//! A crate.\n#![forbid(unsafe_code)]\npub fn f() {}\n",
        )
        .expect("write");
        assert!(check_forbid_unsafe(&dir, &dir).expect("check").is_empty());
        std::fs::write(
            src.join("lib.rs"),
            "//! A crate.\npub fn f() { unsafe { g() } }\n",
        )
        .expect("write");
        assert!(check_forbid_unsafe(&dir, &dir).expect("check").is_empty());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn the_repository_follows_the_source_rules() {
        let root = crate::workspace_root();
        let members =
            crate::tidy::members(&crate::tidy::metadata().expect("metadata")).expect("members");
        let broken = check(&root, &members).expect("check");
        assert!(broken.is_empty(), "{}", broken.join("\n"));
    }
}
