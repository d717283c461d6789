//! `cargo xtask tidy`: the dependency rules of ARCHITECTURE.md, checked against
//! `cargo metadata`. The same check runs as a unit test, so `cargo test --workspace`
//! fails when a boundary is crossed. The rules about the sources themselves are in
//! `source_rules.rs`.

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
    ("benches", &["tempo", "tempo-candle", "tempo-burn"]),
    ("xtask", &[]),
];

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
    let packages = metadata["packages"]
        .as_array()
        .context("cargo metadata has no packages")?;
    packages
        .iter()
        .map(|p| {
            let manifest = p["manifest_path"]
                .as_str()
                .context("package without a manifest path")?;
            std::path::Path::new(manifest)
                .parent()
                .map(std::path::Path::to_path_buf)
                .context("manifest path without a folder")
        })
        .collect()
}

pub(crate) fn run(_args: &[String]) -> anyhow::Result<ExitCode> {
    let metadata = metadata()?;
    let violations = check(&metadata)?;
    for v in &violations {
        eprintln!("tidy: {v}");
    }
    let broken = crate::source_rules::check(&crate::workspace_root(), &members(&metadata)?)?;
    for b in &broken {
        eprintln!("tidy: {b}");
    }
    if violations.is_empty() && broken.is_empty() {
        println!("tidy: dependency rules and source rules hold");
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
