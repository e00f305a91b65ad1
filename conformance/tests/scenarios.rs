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

/// The kube-scheduler-wasm-extension module, under hamr's host of that ABI, agrees with the
/// native engine on every scenario it can be shown (the ones with ResourceQuotas are skipped:
/// that host shows its guests nodes only).
#[test]
fn every_scenario_agrees_on_the_wasm_extension_module() {
    let files = find(&[scenarios_dir()]).expect("the scenarios folder holds scenario files");
    let mut failures = Vec::new();
    let mut skipped = Vec::new();
    for file in &files {
        let result = run_scenario(&file.path, &[EngineKind::Native, EngineKind::WasmExtension]);
        for r in &result.results {
            if let Some(why) = &r.skipped {
                skipped.push((file.shown.clone(), why.to_string()));
            } else if !r.failures.is_empty() {
                failures.push(line(&file.shown, &result.name, r));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios fail on the wasm-extension engine:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    // Skips come only from `EngineKind::cannot_show`: scenarios with ResourceQuotas, which that
    // host cannot show its guests (wasm-extension/README.md "Known gaps").
    let unexplained: Vec<&String> = skipped
        .iter()
        .filter(|(_, why)| !why.contains("ResourceQuotas"))
        .map(|(shown, _)| shown)
        .collect();
    assert!(
        unexplained.is_empty(),
        "scenarios skipped on the wasm-extension engine for another reason than quotas: {unexplained:?}"
    );
}
