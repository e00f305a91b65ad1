//! The conformance runner: scenario files through one or more engines, one line per scenario
//! and engine, then `N passed, M failed`. The file format and its semantics are documented in
//! the `hamr-conformance` crate; [`scenario`] reads a file, [`observe`] runs and checks it.
//!
//! ```text
//! PASS  native     nvidia/f1-spread.yaml  spread puts a pod on the idler card
//! FAIL  component  nvidia/f1-spread.yaml  spread puts a pod on the idler card: pod p1: node: expected "n2", got "n1"
//! 1 passed, 1 failed
//! ```
//!
//! With several engines, an engine whose observations differ from the first engine's fails
//! too, even when both meet the expectations. An engine whose host cannot show an input of the
//! scenario (quotas, for the kube-scheduler-wasm-extension module) prints `SKIP` with the
//! reason instead, counted apart (`N passed, M failed, K skipped`).

pub mod observe;
pub mod scenario;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::engine::EngineKind;

/// A scenario file and the name it is shown under (relative to the folder given).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioPath {
    pub path: PathBuf,
    pub shown: String,
}

/// Why the scenario paths could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    /// A path does not exist or a folder cannot be read.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// The paths hold no `*.yaml` or `*.yml` file.
    #[error("no scenario files (*.yaml, *.yml) under {0}")]
    Empty(String),
}

/// Lists the scenario files of `paths`: files as given, folders searched recursively for
/// `*.yaml` and `*.yml`, sorted by path.
pub fn find(paths: &[PathBuf]) -> Result<Vec<ScenarioPath>, FindError> {
    let mut out = Vec::new();
    for root in paths {
        let meta = std::fs::metadata(root).map_err(|e| io_error(root, e))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(root, &mut found)?;
            found.sort();
            out.extend(found.into_iter().map(|path| {
                let shown = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                ScenarioPath { path, shown }
            }));
        } else {
            out.push(ScenarioPath {
                path: root.clone(),
                shown: root.display().to_string(),
            });
        }
    }
    if out.is_empty() {
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(FindError::Empty(shown.join(", ")));
    }
    Ok(out)
}

fn io_error(path: &Path, e: io::Error) -> FindError {
    FindError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), FindError> {
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let path = entry.map_err(|e| io_error(dir, e))?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

/// One engine's result for one scenario: empty `failures` means it passed, unless `skipped`
/// says why the engine cannot run it (an input its host cannot show, e.g. quotas to the
/// kube-scheduler-wasm-extension module).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineResult {
    pub engine: &'static str,
    pub failures: Vec<String>,
    pub skipped: Option<String>,
}

/// A scenario's results, one per engine, in the order the engines were given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioResult {
    pub name: String,
    pub results: Vec<EngineResult>,
}

/// Runs one scenario file on each engine, each time on a fresh engine, and compares the
/// engines' observations with the first engine's.
pub fn run_scenario(path: &Path, engines: &[EngineKind]) -> ScenarioResult {
    let scenario = match scenario::read(path) {
        Ok(s) => s,
        Err(e) => {
            let results = engines
                .iter()
                .map(|k| EngineResult {
                    engine: k.label(),
                    failures: vec![format!("cannot read the scenario: {e}")],
                    skipped: None,
                })
                .collect();
            return ScenarioResult {
                name: "(unreadable)".to_string(),
                results,
            };
        }
    };
    let mut results = Vec::new();
    let mut first: Option<(&'static str, observe::Run)> = None;
    for kind in engines {
        if let Some(why) = kind.cannot_show(&scenario) {
            results.push(EngineResult {
                engine: kind.label(),
                failures: Vec::new(),
                skipped: Some(why.to_string()),
            });
            continue;
        }
        let run = kind
            .start()
            .map_err(crate::place::PlaceError::Fault)
            .and_then(|mut engine| observe::run(&mut engine, &scenario));
        let failures = match run {
            Err(e) => vec![format!("the run stopped: {e}")],
            Ok(observed) => {
                let mut failures = observe::check(&scenario.expect, &observed.observations);
                match &first {
                    None => first = Some((kind.label(), observed)),
                    Some((label, reference)) => {
                        if reference.rejected != observed.rejected {
                            failures.push(format!(
                                "differs from {label}: rejected objects {:?} vs {:?}",
                                reference.rejected, observed.rejected
                            ));
                        }
                        if let Some(d) =
                            observe::difference(&reference.observations, &observed.observations)
                        {
                            failures.push(format!("differs from {label}: {d}"));
                        }
                    }
                }
                failures
            }
        };
        results.push(EngineResult {
            engine: kind.label(),
            failures,
            skipped: None,
        });
    }
    ScenarioResult {
        name: scenario.name,
        results,
    }
}

/// Counts of scenario × engine lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    /// Lines of an engine that cannot run the scenario (shown only when there are some).
    pub skipped: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed)?;
        if self.skipped > 0 {
            write!(f, ", {} skipped", self.skipped)?;
        }
        Ok(())
    }
}

/// The line printed for one scenario on one engine.
pub fn line(shown: &str, name: &str, r: &EngineResult) -> String {
    if let Some(why) = &r.skipped {
        return format!("SKIP  {:<10} {shown}  {name}: {why}", r.engine);
    }
    if r.failures.is_empty() {
        format!("PASS  {:<10} {shown}  {name}", r.engine)
    } else {
        let what = r.failures.join("; ").replace('\n', " ");
        format!("FAIL  {:<10} {shown}  {name}: {what}", r.engine)
    }
}

/// Runs every file on every engine, printing one line per scenario and engine as it goes and
/// the summary line at the end.
pub fn run(
    files: &[ScenarioPath],
    engines: &[EngineKind],
    out: &mut dyn Write,
) -> io::Result<Summary> {
    let mut summary = Summary::default();
    for file in files {
        let result = run_scenario(&file.path, engines);
        for r in &result.results {
            writeln!(out, "{}", line(&file.shown, &result.name, r))?;
            if r.skipped.is_some() {
                summary.skipped += 1;
            } else if r.failures.is_empty() {
                summary.passed += 1;
            } else {
                summary.failed += 1;
            }
        }
    }
    writeln!(out, "{summary}")?;
    Ok(summary)
}
