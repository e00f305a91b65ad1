//! Every scenario under `conformance/scenarios/` passes on the native engine.

use hamr_conformance::{EngineKind, find, line, run_scenario, scenarios_dir};

#[test]
fn every_scenario_passes_on_the_native_engine() {
    let files = find(&[scenarios_dir()]).expect("the scenarios folder holds scenario files");
    let mut failures = Vec::new();
    for file in &files {
        let result = run_scenario(&file.path, &[EngineKind::Native]);
        for r in &result.results {
            if !r.failures.is_empty() {
                failures.push(line(&file.shown, &result.name, r));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios fail on the native engine:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
