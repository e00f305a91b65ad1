//! The simulation as a library: progress reporting and the shape of the report.

use hamr::engine::EngineKind;
use hamr::place::Cluster;
use hamr::simulate::{self, SimulateError};
use hamr_guest::api;

fn plain_pods(n: usize) -> Vec<api::Pod> {
    (0..n)
        .map(|i| api::Pod {
            uid: format!("u{i}"),
            namespace: "default".into(),
            name: format!("p{i}"),
            containers: vec![api::Container {
                name: "main".into(),
                ..api::Container::default()
            }],
            ..api::Pod::default()
        })
        .collect()
}

fn progress_calls(pods: usize) -> Vec<(usize, usize)> {
    let mut engine = EngineKind::Native
        .start()
        .expect("the native engine starts");
    let mut calls = Vec::new();
    let report = simulate::simulate(
        &mut engine,
        "{}",
        Cluster::default(),
        &plain_pods(pods),
        0,
        &mut |done, total| calls.push((done, total)),
    )
    .expect("pods without devices simulate");
    assert_eq!(report.pods.len(), pods);
    calls
}

#[test]
fn progress_is_reported_every_thousand_pods_above_two_thousand() {
    assert_eq!(progress_calls(2001), vec![(1000, 2001), (2000, 2001)]);
}

#[test]
fn progress_is_not_reported_for_two_thousand_pods_or_fewer() {
    assert_eq!(progress_calls(2000), Vec::<(usize, usize)>::new());
}

#[test]
fn a_pod_without_device_requests_is_reported_as_unmanaged() {
    let mut engine = EngineKind::Native
        .start()
        .expect("the native engine starts");
    let report = simulate::simulate(
        &mut engine,
        "{}",
        Cluster::default(),
        &plain_pods(1),
        0,
        &mut |_, _| {},
    )
    .expect("simulates");
    assert_eq!(
        (report.pods[0].outcome, report.placed, report.unplaced),
        ("unmanaged", 0, 1)
    );
}

#[test]
fn a_refused_config_is_a_config_error() {
    let mut engine = EngineKind::Native
        .start()
        .expect("the native engine starts");
    let err = simulate::simulate(
        &mut engine,
        r#"{"nvidia":{"memoryFactor":0}}"#,
        Cluster::default(),
        &[],
        0,
        &mut |_, _| {},
    )
    .expect_err("memoryFactor 0 is refused");
    assert!(
        matches!(
            &err,
            SimulateError::Place(hamr::place::PlaceError::Config(_))
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "invalid config: config: nvidia.memoryFactor \"0\": must be at least 1"
    );
}
