//! The deploy manifests in `examples/deploy/` list exactly the resources the guest manages:
//! the extender stanza's `managedResources` and the webhook's `matchConditions` are the output
//! of `hamr config`, so a vendor added to the guest cannot be forgotten in the cluster.

use std::path::PathBuf;

use hamr::engine::EngineKind;
use hamr_guest::api::Scheduler;
use serde_json::Value;

fn documents(path: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    let text = std::fs::read_to_string(&path).unwrap();
    hamr::input::documents(&text, &path.display().to_string()).unwrap()
}

fn managed() -> Vec<String> {
    let mut engine = EngineKind::Native.start().unwrap();
    engine.configure("{}").unwrap().unwrap();
    engine.managed_resources().unwrap()
}

const REGENERATE: &str = "regenerate with `hamr config kube-scheduler` / `hamr config webhook`";

#[test]
fn extender_stanza_lists_every_managed_resource() {
    let docs = documents("examples/deploy/hamr-scheduler.yaml");
    let config_map = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "hamr-scheduler")
        .expect("the hamr-scheduler ConfigMap");
    let ks: Value =
        serde_norway::from_str(config_map["data"]["kube-scheduler.yaml"].as_str().unwrap())
            .unwrap();
    let ext = &ks["extenders"][0];
    let listed: Vec<String> = ext["managedResources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["ignoredByScheduler"], true, "{r}");
            r["name"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(listed, managed(), "{REGENERATE}");
    assert_eq!(ext["nodeCacheCapable"], true);
    assert_eq!(ext["filterVerb"], "filter");
    assert_eq!(ext["bindVerb"], "bind");
    let generated: Value = serde_norway::from_str(&hamr::deploy::kube_scheduler(
        ext["urlPrefix"].as_str().unwrap(),
        "hamr-scheduler",
        &managed(),
    ))
    .unwrap();
    assert_eq!(generated["extenders"], ks["extenders"], "{REGENERATE}");
    // The hamr config the deployment mounts is one the guest accepts.
    let config: Value =
        serde_norway::from_str(config_map["data"]["config.yaml"].as_str().unwrap()).unwrap();
    let mut engine = EngineKind::Native.start().unwrap();
    engine.configure(&config.to_string()).unwrap().unwrap();
}

#[test]
fn webhook_is_scoped_to_device_pods() {
    let docs = documents("examples/deploy/mutating-webhook.yaml");
    let hook = &docs[0]["webhooks"][0];
    let expression = hook["matchConditions"][0]["expression"].as_str().unwrap();
    assert_eq!(
        expression,
        hamr::deploy::device_pod_condition(&managed()),
        "{REGENERATE}"
    );
    assert_eq!(hook["failurePolicy"], "Fail");
    assert_eq!(hook["clientConfig"]["service"]["path"], "/webhook");
}

#[test]
fn services_and_probes_match_the_server() {
    let docs = documents("examples/deploy/hamr-scheduler.yaml");
    let service = docs.iter().find(|d| d["kind"] == "Service").unwrap();
    assert_eq!(
        service["spec"]["selector"][hamr::serve::leader::ROLE_LABEL],
        "leader"
    );
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "hamr-scheduler")
        .unwrap();
    let c = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(
        c["args"]
            .as_array()
            .unwrap()
            .contains(&Value::from("--leader-elect"))
    );
}
