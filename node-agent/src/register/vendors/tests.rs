use std::path::Path;

use hamr_guest::api::Node;
use hamr_guest::device::DeviceInfo;

use super::*;
use crate::discovery::fake;

/// One node with a bit of every vendor the fake backend can describe (indices are per vendor,
/// as each vendor's plugin numbers its own devices).
const DEVICES: &str = r#"
devices:
  - {id: GPU-a, vendor: NVIDIA, model: NVIDIA A100-SXM4-40GB, memoryMiB: 40960}
  - {id: sgpu-1, vendor: Metax-SGPU, model: MXC500, memoryMiB: 65536, index: 1, numa: 1,
     count: 16, pciBusId: "0000:44:00.0", extras: {qosPolicy: fixed-share, linkZone: "2"}}
  - {id: sgpu-0, vendor: Metax-SGPU, model: MXC500, memoryMiB: 65536, index: 0, count: 16,
     healthy: false}
  - {id: xpu-0, index: 0, vendor: XPU, model: P800-XPU, memoryMiB: 98304, count: 4}
  - {id: gcu-0, index: 0, vendor: Enflame, memoryMiB: 40960,
     extras: {profiles: "1g.6gb=0,3g.20gb=1,6g.40gb=2"}}
  - {id: gcu-1, vendor: Enflame, memoryMiB: 40960, index: 1, count: 3,
     extras: {profiles: "6g.40gb=2, 3g.20gb=1, 1g.6gb=0", minor: "5"}}
  - {id: npu-0, index: 0, vendor: Ascend910B3, memoryMiB: 65536, cores: 20, count: 7,
     extras: {NetworkID: "3"}}
  - {id: npu-1, vendor: Ascend910B3, memoryMiB: 65536, cores: 20, count: 7, index: 1,
     extras: {NetworkID: "4.5"}}
  - {id: dcu-0, index: 0, vendor: DCU, model: DCU-K100_AI, memoryMiB: 65536, numa: 1, count: 4}
  - {id: il-0, vendor: MR-V100, memoryMiB: 32768, index: 3}
  - {id: br-0, index: 0, vendor: Biren, memoryMiB: 32768, count: 1}
  - {id: amd-0, index: 0, vendor: AMD, model: AMD Instinct MI300X VF, memoryMiB: 196608, cores: 304, count: 8}
  - {id: va-0, index: 0, vendor: Vastai, memoryMiB: 32768, count: 1, extras: {DeviceStrategy: die, AIC: "7"}}
  - {id: va-1, vendor: Vastai, memoryMiB: 32768, count: 1, index: 1,
     extras: {DeviceStrategy: die, AIC: "7"}}
  - {id: mlu-0, vendor: MLU, memoryMiB: 24576}
"#;

fn devices() -> Vec<Device> {
    fake::parse(Path::new("devices.yaml"), DEVICES).expect("the fixture is valid")
}

#[test]
fn every_vendor_is_written_under_its_key_in_its_format() {
    let values = registrations(&devices(), &Config::default()).expect("writable");
    let expected: BTreeMap<&str, &str> = [
        (
            "metax-tech.com/node-gpu-devices",
            concat!(
                r#"[{"uuid":"sgpu-0","model":"MXC500","totalDevCount":16,"totalCompute":100,"totalVRam":65536,"numa":0,"healthy":false,"linkZone":0},"#,
                r#"{"uuid":"sgpu-1","bdf":"0000:44:00.0","model":"MXC500","totalDevCount":16,"totalCompute":100,"totalVRam":65536,"numa":1,"healthy":true,"qosPolicy":"fixed-share","linkZone":2}]"#
            ),
        ),
        (
            "hami.io/node-register-xpu",
            r#"[{"id":"xpu-0","count":4,"devmem":98304,"devcore":100,"type":"P800-XPU","health":true}]"#,
        ),
        (
            "enflame.com/gcu-drs-capacity",
            concat!(
                r#"{"devices":[{"index":"0","minor":"0","capacity":6},{"index":"1","minor":"5","capacity":3}],"#,
                r#""profiles":{"1g.6gb":"0","3g.20gb":"1","6g.40gb":"2"}}"#
            ),
        ),
        (
            "hami.io/node-register-Ascend910B3",
            concat!(
                r#"[{"id":"npu-0","count":7,"devmem":65536,"devcore":20,"type":"Ascend910B3","health":true,"custominfo":{"NetworkID":3}},"#,
                r#"{"id":"npu-1","index":1,"count":7,"devmem":65536,"devcore":20,"type":"Ascend910B3","health":true,"custominfo":{"NetworkID":4.5}}]"#
            ),
        ),
        (
            "hami.io/node-dcu-register",
            "dcu-0,4,65536,100,DCU-K100_AI,1,true,0,hami-core:",
        ),
        (
            "hami.io/node-MR-V100-register",
            "il-0,10,32768,100,MR-V100,0,true,3,hami-core:",
        ),
        (
            "hami.io/node-biren-register",
            r#"[{"id":"br-0","count":1,"devmem":32768,"devcore":100,"type":"Biren","health":true}]"#,
        ),
        (
            "hami.io/node-amd-register",
            r#"[{"id":"amd-0","count":8,"devmem":196608,"devcore":304,"type":"AMD Instinct MI300X VF","health":true}]"#,
        ),
        (
            "hami.io/node-va-register",
            concat!(
                r#"[{"id":"va-0","count":1,"devmem":32768,"devcore":100,"type":"Vastai","health":true,"custominfo":{"AIC":"7","DeviceStrategy":"die"}},"#,
                r#"{"id":"va-1","index":1,"count":1,"devmem":32768,"devcore":100,"type":"Vastai","health":true,"custominfo":{"AIC":"7","DeviceStrategy":"die"}}]"#
            ),
        ),
    ]
    .into_iter()
    .collect();
    let seen: BTreeMap<&str, &str> = values
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(seen, expected);
}

/// What the guest library reads back from the node, vendor by vendor.
fn parsed(values: &BTreeMap<String, String>) -> BTreeMap<&'static str, Vec<DeviceInfo>> {
    let node = Node {
        name: "n1".into(),
        annotations: values.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        ..Default::default()
    };
    hamr_guest::vendor::VENDORS
        .iter()
        .filter_map(|v| {
            let cards = v
                .parse_node(&node)
                .expect("the guest accepts what we wrote")?;
            Some((v.key(), cards))
        })
        .collect()
}

fn card(id: &str, index: u32, count: i64, devmem: i64, devcore: i64, model: &str) -> DeviceInfo {
    DeviceInfo {
        id: id.into(),
        index,
        count,
        devmem,
        devcore,
        model: model.into(),
        health: true,
        ..DeviceInfo::default()
    }
}

#[test]
fn the_guest_parses_what_the_agent_wrote_into_the_same_cards() {
    let config = Config::default();
    let mut all = registration_with_nvidia(&config);
    let cards = parsed(&std::mem::take(&mut all));
    let keys: Vec<&str> = cards.keys().copied().collect();
    assert_eq!(
        keys,
        [
            "AMD",
            "Ascend910B3",
            "Biren",
            "DCU",
            "Enflame",
            "MR-V100",
            "Metax-SGPU",
            "NVIDIA",
            "Vastai",
            "XPU"
        ],
        "every registered vendor and nothing else (MLU registers through node capacity)"
    );

    let with = |mut c: DeviceInfo, f: &dyn Fn(&mut DeviceInfo)| {
        f(&mut c);
        c
    };
    let custom = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        cards["Metax-SGPU"],
        [
            with(card("sgpu-0", 0, 16, 65536, 100, "Metax-SGPU"), &|c| {
                c.health = false;
                c.custom = custom(&[("linkzone", "0"), ("model", "MXC500"), ("qospolicy", "")]);
            }),
            with(card("sgpu-1", 1, 16, 65536, 100, "Metax-SGPU"), &|c| {
                c.numa = 1;
                c.custom = custom(&[
                    ("linkzone", "2"),
                    ("model", "MXC500"),
                    ("qospolicy", "fixed-share"),
                ]);
            }),
        ]
    );
    assert_eq!(cards["XPU"], [card("xpu-0", 0, 4, 98304, 100, "P800-XPU")]);
    let drs = |id: &str, index: u32, capacity: i64, minor: &str| {
        with(card(id, index, capacity, 40960, 100, "Enflame"), &|c| {
            c.custom = custom(&[
                ("index", &index.to_string()),
                ("kind", "drs"),
                ("maxslice", "6"),
                ("minor", minor),
                ("profiles", r#"{"1g.6gb":"0","3g.20gb":"1","6g.40gb":"2"}"#),
            ]);
        })
    };
    // The scheduler names DRS cards by node and index, not by the plugin's ids.
    assert_eq!(
        cards["Enflame"],
        [
            drs("n1-enflame-drs-0", 0, 6, "0"),
            drs("n1-enflame-drs-1", 1, 3, "5")
        ]
    );
    assert_eq!(
        cards["Ascend910B3"],
        [
            with(card("npu-0", 0, 7, 65536, 20, "Ascend910B3"), &|c| {
                c.custom = custom(&[("networkId", "3")]);
            }),
            with(card("npu-1", 1, 7, 65536, 20, "Ascend910B3"), &|c| {
                c.custom = custom(&[("networkId", "4.5")]);
            }),
        ]
    );
    let colon = |c: DeviceInfo| {
        with(c, &|c| {
            c.mode = "hami-core".into();
        })
    };
    assert_eq!(
        cards["DCU"],
        [colon(with(
            card("dcu-0", 0, 4, 65536, 100, "DCU-K100_AI"),
            &|c| c.numa = 1
        ))]
    );
    assert_eq!(
        cards["MR-V100"],
        [colon(card("il-0", 3, 10, 32768, 100, "MR-V100"))]
    );
    assert_eq!(cards["Biren"], [card("br-0", 0, 1, 32768, 100, "Biren")]);
    assert_eq!(
        cards["AMD"],
        [card("amd-0", 0, 8, 196608, 304, "AMD Instinct MI300X VF")]
    );
    let die = |c: DeviceInfo| {
        with(c, &|c| {
            c.custom = custom(&[("aic", "7"), ("dieMode", "true")]);
        })
    };
    assert_eq!(
        cards["Vastai"],
        [
            die(card("va-0", 0, 1, 32768, 100, "Vastai")),
            die(card("va-1", 1, 1, 32768, 100, "Vastai"))
        ]
    );
    assert_eq!(cards["NVIDIA"].len(), 1);
}

/// The agent's whole registration (NVIDIA's included), as the registrar patches it.
fn registration_with_nvidia(config: &Config) -> BTreeMap<String, String> {
    crate::register::registration(&devices(), config)
}

#[test]
fn register_hami_off_writes_no_vendor_registration() {
    let config = Config {
        register_hami: false,
        ..Config::default()
    };
    assert!(registration_with_nvidia(&config).is_empty());
}

#[test]
fn the_split_count_is_the_default_count_and_scaling_is_nvidia_only() {
    let config = Config {
        device_split_count: 3,
        device_memory_scaling: 2.0,
        device_core_scaling: 2.0,
        ..Config::default()
    };
    let values = registrations(&devices(), &config).expect("writable");
    assert_eq!(
        values["hami.io/node-MR-V100-register"],
        "il-0,3,32768,100,MR-V100,0,true,3,hami-core:"
    );
}

fn refused(yaml_device: &str) -> String {
    let text = format!("devices:\n- {yaml_device}\n");
    fake::parse(Path::new("devices.yaml"), &text)
        .expect_err("refused")
        .to_string()
}

#[test]
fn devices_their_vendor_cannot_register_are_refused_with_field_and_value() {
    assert_eq!(
        refused("{id: a, vendor: AMD, model: MI300X, memoryMiB: 1}"),
        "devices.yaml: devices[0].model: \"MI300X\" must contain \"amd\" (case-insensitive): the scheduler finds these cards by their type"
    );
    assert_eq!(
        refused("{id: a, vendor: DCU, model: 'K100,AI', memoryMiB: 1}"),
        "devices.yaml: devices[0].model: \"K100,AI\" holds ',' or ':', the separators of the colon format"
    );
    assert_eq!(
        refused("{id: a, vendor: Metax-SGPU, memoryMiB: 1, extras: {linkZone: near}}"),
        "devices.yaml: devices[0].extras.linkZone: \"near\" is not a 32-bit integer"
    );
    assert_eq!(
        refused("{id: a, vendor: Metax-SGPU, memoryMiB: 1, extras: {qosPolicy: fast}}"),
        "devices.yaml: devices[0].extras.qosPolicy: \"fast\" is not one of [\"best-effort\", \"fixed-share\", \"burst-share\"]"
    );
    assert_eq!(
        refused("{id: a, vendor: Enflame, memoryMiB: 1}"),
        "devices.yaml: devices[0].extras.profiles: \"\" is missing: want name=id pairs like 1g.6gb=0,3g.20gb=1"
    );
    assert_eq!(
        refused("{id: a, vendor: Enflame, memoryMiB: 1, extras: {profiles: 'big=1'}}"),
        "devices.yaml: devices[0].extras.profiles: \"big\" is not a profile name <slices>g.<memory>gb"
    );
    let text = "devices:\n\
        - {id: a, vendor: Enflame, memoryMiB: 1, extras: {profiles: '1g.6gb=0'}}\n\
        - {id: b, vendor: Enflame, memoryMiB: 1, extras: {profiles: '2g.12gb=1'}}\n";
    assert_eq!(
        fake::parse(Path::new("devices.yaml"), text)
            .expect_err("refused")
            .to_string(),
        "devices.yaml: devices[1].extras.profiles: \"2g.12gb=1\" differs from device \"a\"'s: the node registers one profile list"
    );
}

#[test]
fn the_example_file_registers_every_vendor_it_lists_and_the_guest_reads_them() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/node-agent/devices-vendors.yaml");
    let devices = crate::discovery::Discovery::scan(&fake::FakeDiscovery::new(&path))
        .expect("the example is valid");
    let values = crate::register::registration(&devices, &Config::default());
    let cards = parsed(&values);
    let mut listed: Vec<&str> = devices.iter().map(|d| d.vendor.as_str()).collect();
    listed.sort_unstable();
    listed.dedup();
    assert_eq!(cards.keys().copied().collect::<Vec<_>>(), listed);
    let total: usize = cards.values().map(Vec::len).sum();
    assert_eq!(total, devices.len(), "every device is a card");
}

#[test]
fn pair_links_of_the_devices_file_reach_the_guest_as_pair_scores() {
    let text = "devices:\n\
        - {id: GPU-a, vendor: NVIDIA, memoryMiB: 40960,\n\
        \x20  links: {GPU-b: {pcie: node, nvlinks: 2}, GPU-c: {pcie: system}}}\n\
        - {id: GPU-b, vendor: NVIDIA, memoryMiB: 40960, links: {GPU-a: {pcie: node, nvlinks: 2}}}\n\
        - {id: GPU-c, vendor: NVIDIA, memoryMiB: 40960, links: {GPU-a: {pcie: system}}}\n";
    let devices = fake::parse(Path::new("devices.yaml"), text).expect("valid");
    let off = crate::register::registration(&devices, &Config::default());
    assert!(!off.contains_key(hamr_guest::vendor::nvidia::register::SCORE));
    let config = Config {
        topology_score: true,
        ..Config::default()
    };
    let values = crate::register::registration(&devices, &config);
    assert_eq!(
        values[hamr_guest::vendor::nvidia::register::SCORE],
        concat!(
            r#"[{"uuid":"GPU-a","score":{"GPU-b":220,"GPU-c":10}},"#,
            r#"{"uuid":"GPU-b","score":{"GPU-a":220}},"#,
            r#"{"uuid":"GPU-c","score":{"GPU-a":10}}]"#
        )
    );
    let cards = &parsed(&values)["NVIDIA"];
    let scores: Vec<(&str, Vec<(&str, i64)>)> = cards
        .iter()
        .map(|c| {
            (
                c.id.as_str(),
                c.pair_scores
                    .iter()
                    .map(|(k, v)| (k.as_str(), *v))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        scores,
        [
            ("GPU-a", vec![("GPU-b", 220), ("GPU-c", 10)]),
            ("GPU-b", vec![("GPU-a", 220)]),
            ("GPU-c", vec![("GPU-a", 10)]),
        ]
    );
}

#[test]
fn a_link_to_an_unknown_card_or_from_another_vendor_is_refused() {
    assert_eq!(
        refused("{id: GPU-a, vendor: NVIDIA, memoryMiB: 1, links: {GPU-z: {pcie: node}}}"),
        "devices.yaml: devices[0].links.GPU-z: \"GPU-z\" is not an NVIDIA card of this file"
    );
    assert_eq!(
        refused("{id: d, vendor: DCU, memoryMiB: 1, links: {GPU-z: {pcie: node}}}"),
        "devices.yaml: devices[0].links.GPU-z: only NVIDIA cards have pair links"
    );
    assert!(
        refused("{id: GPU-a, vendor: NVIDIA, memoryMiB: 1, links: {GPU-a: {pcie: nvswitch}}}")
            .starts_with("devices.yaml: devices[0].links.GPU-a.pcie: unknown variant `nvswitch`"),
    );
}
