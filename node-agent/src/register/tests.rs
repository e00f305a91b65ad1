use std::collections::BTreeMap;

use hamr_guest::device::{MigProfile, Placement};
use http::{Method, Request, Response};
use kube::client::Body;

use super::*;

fn card(id: &str, index: u32, memory_mib: u64, healthy: bool) -> Device {
    Device {
        id: id.to_string(),
        vendor: NVIDIA.to_string(),
        index,
        model: "NVIDIA A100-SXM4-40GB".to_string(),
        memory_mib,
        cores: 100,
        numa: 0,
        healthy,
        pci_bus_id: None,
        mig_enabled: false,
        extras: BTreeMap::new(),
        count: None,
        links: BTreeMap::new(),
        mig_pending: false,
        mig_profiles: Vec::new(),
    }
}

#[test]
fn a_healthy_first_card_leaves_out_its_zero_index_and_numa() {
    let value = encode_register(&nvidia_devices(
        &[card("GPU-a", 0, 40960, true)],
        &Config::default(),
    ));
    assert_eq!(
        value,
        r#"[{"id":"GPU-a","count":10,"devmem":40960,"devcore":100,"type":"NVIDIA A100-SXM4-40GB","mode":"hami-core","health":true}]"#
    );
}

#[test]
fn an_unhealthy_card_has_no_health_key() {
    let value = encode_register(&nvidia_devices(
        &[card("GPU-b", 1, 1024, false)],
        &Config::default(),
    ));
    assert_eq!(
        value,
        r#"[{"id":"GPU-b","index":1,"count":10,"devmem":1024,"devcore":100,"type":"NVIDIA A100-SXM4-40GB","mode":"hami-core"}]"#
    );
}

#[test]
fn scaling_multiplies_memory_and_cores_and_other_vendors_are_left_out() {
    let config = Config {
        device_split_count: 4,
        device_memory_scaling: 1.5,
        device_core_scaling: 2.0,
        ..Config::default()
    };
    let mut other = card("MLU-x", 1, 8192, true);
    other.vendor = "MLU".to_string();
    let registered = nvidia_devices(&[card("GPU-a", 0, 40961, true), other], &config);
    assert_eq!(registered.len(), 1);
    // 40961 x 1.5 = 61441.5, truncated.
    assert_eq!(
        (
            registered[0].count,
            registered[0].devmem,
            registered[0].devcore
        ),
        (4, 61441, 200)
    );
}

#[test]
fn mig_mode_registers_unscaled_memory_and_whole_cores() {
    let config = Config {
        device_memory_scaling: 2.0,
        device_core_scaling: 3.0,
        operating_mode: "mig".to_string(),
        ..Config::default()
    };
    let mut mig = card("GPU-a", 0, 40960, true);
    mig.mig_profiles = vec![crate::mig::GiProfile {
        id: 0,
        slice_count: 1,
        instance_count: 7,
        multiprocessors: 14,
        memory_mib: 4864,
        placements: vec![Placement { start: 0, size: 1 }],
    }];
    // A card without MIG profiles is left out in MIG mode (HAMi: not registered at all).
    let registered = nvidia_devices(&[mig, card("GPU-b", 1, 40960, true)], &config);
    assert_eq!(registered.len(), 1, "{registered:?}");
    assert_eq!((registered[0].devmem, registered[0].devcore), (40960, 100));
    assert_eq!(
        (registered[0].mode.as_str(), registered[0].count),
        ("mig", 7)
    );
}

#[test]
fn the_encoding_round_trips_through_the_guest_parser() {
    let devices = vec![
        DeviceInfo {
            id: "GPU-a".into(),
            index: 0,
            count: 10,
            devmem: 40960,
            devcore: 100,
            model: "NVIDIA A100-SXM4-40GB".into(),
            numa: 1,
            mode: "hami-core".into(),
            health: true,
            ..DeviceInfo::default()
        },
        DeviceInfo {
            id: "GPU-b".into(),
            index: 1,
            count: 7,
            devmem: 40960,
            devcore: 100,
            model: "NVIDIA A100-SXM4-40GB".into(),
            numa: 0,
            mode: "mig".into(),
            health: false,
            mig_profiles: vec![MigProfile {
                name: "1g.5gb".into(),
                memory_mb: 5120,
                core: 14,
                slice_count: 1,
                placements: vec![
                    Placement { start: 0, size: 1 },
                    Placement { start: 6, size: 1 },
                ],
            }],
            ..DeviceInfo::default()
        },
    ];
    let node = hamr_guest::api::Node {
        name: "node1".into(),
        annotations: vec![(REGISTER.to_string(), encode_register(&devices))],
        ..hamr_guest::api::Node::default()
    };
    let parsed = hamr_guest::vendor::nvidia::register::parse(&node)
        .expect("the guest accepts our encoding")
        .expect("two cards");
    assert_eq!(parsed, devices);
}

type Mock = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// Answers one request on the mock API server and returns (method, path, content type, body).
async fn answer_one(handle: &mut Mock) -> (Method, String, String, String) {
    let (request, respond) = handle.next_request().await.expect("a request was sent");
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let content_type = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = request.into_body().collect_bytes().await.expect("body");
    let node =
        serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1"}});
    respond.send_response(
        Response::builder()
            .body(Body::from(serde_json::to_vec(&node).expect("json")))
            .expect("response"),
    );
    (
        method,
        path,
        content_type,
        String::from_utf8(body.to_vec()).expect("utf-8 body"),
    )
}

fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn the_registrar_patches_once_and_then_only_what_changed() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let mut registrar = Registrar::new(client, "node1");
    let registered = registrar.subscribe();
    let volcano = "volcano.sh/node-vgpu-register";
    let first = values(&[
        (REGISTER, r#"[{"id":"GPU-a","count":10}]"#),
        (volcano, "GPU-a,10,40960,NVIDIA-x,true,hami-core:"),
    ]);
    let second = values(&[
        (REGISTER, "[]"),
        (volcano, "GPU-a,10,40960,NVIDIA-x,true,hami-core:"),
    ]);

    let server = tokio::spawn(async move {
        let seen = answer_one(&mut handle).await;
        let second = answer_one(&mut handle).await;
        let after = handle
            .next_request()
            .await
            .map(|(r, _)| r.uri().to_string());
        (seen, second, after)
    });

    assert!(registrar.sync(&first).await.expect("first patch"), "sent");
    assert_eq!(
        *registered.borrow(),
        first,
        "shared with the usage publisher"
    );
    assert!(!registrar.sync(&first).await.expect("no-op"), "unchanged");
    assert!(
        registrar.sync(&second).await.expect("second patch"),
        "changed"
    );
    drop(registrar);

    let (seen, second, after) = server.await.expect("mock server");
    assert_eq!(seen.0, Method::PATCH);
    assert_eq!(seen.1, "/api/v1/nodes/node1");
    assert_eq!(seen.2, "application/merge-patch+json");
    assert_eq!(
        seen.3,
        r#"{"metadata":{"annotations":{"hami.io/node-nvidia-register":"[{\"id\":\"GPU-a\",\"count\":10}]","volcano.sh/node-vgpu-register":"GPU-a,10,40960,NVIDIA-x,true,hami-core:"}}}"#
    );
    assert_eq!(
        second.3, r#"{"metadata":{"annotations":{"hami.io/node-nvidia-register":"[]"}}}"#,
        "only the changed key is sent"
    );
    assert_eq!(after, None, "the unchanged value sent nothing");
}

#[test]
fn volcano_registration_is_written_only_when_configured_and_hami_can_be_turned_off() {
    let cards = [card("GPU-a", 0, 40960, true)];
    let keys =
        |config: &Config| -> Vec<String> { registration(&cards, config).into_keys().collect() };
    assert_eq!(keys(&Config::default()), [REGISTER]);
    let mut config = Config::default();
    config.volcano.register = true;
    assert_eq!(keys(&config), [REGISTER, "volcano.sh/node-vgpu-register"]);
    config.register_hami = false;
    assert_eq!(keys(&config), ["volcano.sh/node-vgpu-register"]);
}
