//! `cargo xtask tidy`: the dependency rules of ARCHITECTURE.md, and where each package
//! lives (the product under `crates/`, the tooling at the root), checked against
//! `cargo metadata`. The same checks run as unit tests, so `cargo test --workspace`
//! fails when a boundary is crossed. The rules about the sources themselves are in
//! `source_rules.rs`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};

/// For each tempo library crate, the tempo crates it may depend on (normal
/// dependencies; dev-dependencies may also use `tempo-testkit`).
pub(crate) const ALLOWED: &[(&str, &[&str])] = &[
    ("tempo-param-groups", &[]),
    ("tempo-tensor", &[]),
    ("tempo-testkit", &[]),
    ("tempo-nn", &["tempo-tensor"]),
    ("tempo-optim", &["tempo-tensor", "tempo-param-groups"]),
    ("tempo-sched", &["tempo-param-groups"]),
    (
        "tempo-ckpt",
        &[
            "tempo-tensor",
            "tempo-nn",
            "tempo-optim",
            "tempo-sched",
            "tempo-param-groups",
        ],
    ),
    (
        "tempo",
        &[
            "tempo-tensor",
            "tempo-nn",
            "tempo-param-groups",
            "tempo-optim",
            "tempo-sched",
            "tempo-ckpt",
        ],
    ),
    (
        "tempo-dist",
        &["tempo-tensor", "tempo-param-groups", "tempo-optim"],
    ),
    ("tempo-cli", &["tempo", "tempo-dist"]),
    ("tempo-conformance", &["tempo", "tempo-testkit"]),
    (
        "tempo-candle",
        &[
            "tempo-tensor",
            "tempo-param-groups",
            "tempo-optim",
            "tempo-sched",
            "tempo-ckpt",
        ],
    ),
    (
        "tempo-burn",
        &[
            "tempo-tensor",
            "tempo-param-groups",
            "tempo-optim",
            "tempo-sched",
        ],
    ),
    (
        "benches",
        &["tempo", "tempo-candle", "tempo-burn", "tempo-testkit"],
    ),
    ("xtask", &[]),
];

/// The tooling that builds, checks and measures tempo, each package in a folder of the
/// workspace root. Every other package is the product, in a folder of `crates/`.
pub(crate) const TOOLS: &[&str] = &["xtask", "benches", "tempo-testkit", "tempo-conformance"];

/// Framework adapters at the edge: each foreign framework's crates, and the only
/// packages that may depend on them (the core, the facade and the CLI never name one).
pub(crate) const FRAMEWORKS: &[(&str, &[&str])] = &[
    ("candle-", &["tempo-candle", "benches"]),
    ("burn-", &["tempo-burn", "benches"]),
];

/// One violation: `package` depends on `dependency` (of kind `kind`) without leave.
#[derive(Debug, PartialEq)]
pub(crate) struct Violation {
    package: String,
    dependency: String,
    kind: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} must not depend on {} ({} dependency)",
            self.package, self.dependency, self.kind
        )
    }
}

fn is_ours(name: &str) -> bool {
    name == "tempo" || name.starts_with("tempo-") || name == "xtask" || name == "benches"
}

/// Checks the `packages` array of `cargo metadata --no-deps`.
pub(crate) fn check(metadata: &serde_json::Value) -> anyhow::Result<Vec<Violation>> {
    let packages = metadata["packages"]
        .as_array()
        .context("cargo metadata has no packages")?;
    let mut out = Vec::new();
    for pkg in packages {
        let name = pkg["name"].as_str().context("package without a name")?;
        let Some((_, allowed)) = ALLOWED.iter().find(|(n, _)| *n == name) else {
            bail!("package `{name}` is not in the dependency rules of xtask/src/tidy.rs");
        };
        for dep in pkg["dependencies"].as_array().into_iter().flatten() {
            let dep_name = dep["name"].as_str().unwrap_or_default();
            if let Some((_, users)) = FRAMEWORKS.iter().find(|(p, _)| dep_name.starts_with(p)) {
                if !users.contains(&name) {
                    out.push(Violation {
                        package: name.into(),
                        dependency: dep_name.into(),
                        kind: dep["kind"].as_str().unwrap_or("normal").into(),
                    });
                }
                continue;
            }
            if !is_ours(dep_name) {
                continue;
            }
            let kind = dep["kind"].as_str().unwrap_or("normal");
            let ok = allowed.contains(&dep_name)
                || (kind == "dev"
                    && (dep_name == "tempo-testkit" || allowed_transitively(name, dep_name)));
            if !ok {
                out.push(Violation {
                    package: name.into(),
                    dependency: dep_name.into(),
                    kind: kind.into(),
                });
            }
        }
    }
    Ok(out)
}

/// Every package of `cargo metadata` that is not where it belongs, one line each.
pub(crate) fn misplaced(metadata: &serde_json::Value) -> anyhow::Result<Vec<String>> {
    let root = Path::new(
        metadata["workspace_root"]
            .as_str()
            .context("cargo metadata has no workspace root")?,
    );
    let mut out = Vec::new();
    for (name, folder) in package_folders(metadata)? {
        let folder = folder
            .strip_prefix(root)
            .with_context(|| format!("package `{name}` is outside the workspace root"))?;
        let (want, place) = if TOOLS.contains(&name) {
            ("", "a tool, in a folder of the workspace root")
        } else {
            ("crates", "part of the product, in a folder of `crates/`")
        };
        if folder.parent() != Some(Path::new(want)) {
            out.push(format!(
                "{name} is in `{}`, but it is {place} (tools: `TOOLS` in xtask/src/tidy.rs)",
                folder.display()
            ));
        }
    }
    Ok(out)
}

/// Dev-dependencies may use what a crate's allowed dependencies use, except that
/// tempo-sched's tests must not see tensors or optimizers either.
fn allowed_transitively(package: &str, dependency: &str) -> bool {
    if package == "tempo-sched" {
        return false;
    }
    let allowed = |p: &str| {
        ALLOWED
            .iter()
            .find(|(n, _)| *n == p)
            .map(|(_, a)| *a)
            .unwrap_or(&[])
    };
    allowed(package)
        .iter()
        .any(|d| allowed(d).contains(&dependency))
}

pub(crate) fn metadata() -> anyhow::Result<serde_json::Value> {
    let out = crate::cargo()
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("parsing cargo metadata")
}

/// The folders of the workspace's packages.
pub(crate) fn members(metadata: &serde_json::Value) -> anyhow::Result<Vec<std::path::PathBuf>> {
    Ok(package_folders(metadata)?
        .into_iter()
        .map(|(_, folder)| folder)
        .collect())
}

/// Each package's name and folder.
fn package_folders(
    metadata: &serde_json::Value,
) -> anyhow::Result<Vec<(&str, std::path::PathBuf)>> {
    let packages = metadata["packages"]
        .as_array()
        .context("cargo metadata has no packages")?;
    packages
        .iter()
        .map(|p| {
            let name = p["name"].as_str().context("package without a name")?;
            let manifest = p["manifest_path"]
                .as_str()
                .with_context(|| format!("package `{name}` without a manifest path"))?;
            let folder = Path::new(manifest)
                .parent()
                .context("manifest path without a folder")?;
            Ok((name, folder.to_path_buf()))
        })
        .collect()
}

pub(crate) fn run(_args: &[String]) -> anyhow::Result<ExitCode> {
    let metadata = metadata()?;
    let violations = check(&metadata)?;
    for v in &violations {
        eprintln!("tidy: {v}");
    }
    let mut broken = misplaced(&metadata)?;
    broken.extend(crate::source_rules::check(
        &crate::workspace_root(),
        &members(&metadata)?,
    )?);
    for b in &broken {
        eprintln!("tidy: {b}");
    }
    if violations.is_empty() && broken.is_empty() {
        println!("tidy: dependency rules, package places and source rules hold");
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_follows_the_dependency_rules() {
        let violations = check(&metadata().expect("cargo metadata")).expect("check");
        let text: Vec<String> = violations.iter().map(ToString::to_string).collect();
        assert!(violations.is_empty(), "{}", text.join("\n"));
    }

    #[test]
    fn every_package_is_where_it_belongs() {
        let found = misplaced(&metadata().expect("cargo metadata")).expect("check");
        assert!(found.is_empty(), "{}", found.join("\n"));
    }

    #[test]
    fn a_tool_among_the_product_and_the_product_at_the_root_are_caught() {
        let fake = serde_json::json!({
            "workspace_root": "/w",
            "packages": [
                {"name": "tempo-optim", "manifest_path": "/w/crates/optim/Cargo.toml"},
                {"name": "tempo-testkit", "manifest_path": "/w/testkit/Cargo.toml"},
                {"name": "tempo-conformance", "manifest_path": "/w/crates/conformance/Cargo.toml"},
                {"name": "tempo-sched", "manifest_path": "/w/sched/Cargo.toml"},
                {"name": "tempo-nn", "manifest_path": "/w/crates/nn/sub/Cargo.toml"}
            ]
        });
        let found = misplaced(&fake).expect("check");
        let names: Vec<&str> = found.iter().filter_map(|l| l.split(' ').next()).collect();
        assert_eq!(
            names,
            ["tempo-conformance", "tempo-sched", "tempo-nn"],
            "{found:?}"
        );
    }

    #[test]
    fn a_scheduler_that_depends_on_tensors_is_caught() {
        let fake = serde_json::json!({"packages": [
            {"name": "tempo-sched", "dependencies": [
                {"name": "tempo-param-groups", "kind": null},
                {"name": "tempo-tensor", "kind": null},
                {"name": "tempo-optim", "kind": "dev"},
                {"name": "serde", "kind": null}
            ]}
        ]});
        let v = check(&fake).expect("check");
        assert_eq!(
            v,
            vec![
                Violation {
                    package: "tempo-sched".into(),
                    dependency: "tempo-tensor".into(),
                    kind: "normal".into()
                },
                Violation {
                    package: "tempo-sched".into(),
                    dependency: "tempo-optim".into(),
                    kind: "dev".into()
                },
            ]
        );
    }

    #[test]
    fn candle_outside_its_adapter_is_caught() {
        let fake = serde_json::json!({"packages": [
            {"name": "tempo-optim", "dependencies": [{"name": "candle-core", "kind": null}]},
            {"name": "tempo-candle", "dependencies": [{"name": "candle-nn", "kind": null}]}
        ]});
        assert_eq!(
            check(&fake).expect("check"),
            vec![Violation {
                package: "tempo-optim".into(),
                dependency: "candle-core".into(),
                kind: "normal".into()
            }]
        );
    }

    #[test]
    fn an_unknown_package_is_an_error() {
        let fake = serde_json::json!({"packages": [{"name": "tempo-new", "dependencies": []}]});
        assert!(check(&fake).is_err());
    }
}
