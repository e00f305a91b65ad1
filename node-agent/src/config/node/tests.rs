use std::path::PathBuf;

use super::*;

const PATH: &str = "/config/config.json";

fn apply(text: &str, node: &str) -> Result<Config, String> {
    Config::default()
        .with_node_file(Path::new(PATH), text, node)
        .map_err(|e| e.to_string())
}

/// The node's entry applied to the defaults, against the defaults with `expect` applied.
fn overrides(entry: &str, expect: impl FnOnce(&mut Config)) {
    let text = format!(
        r#"{{"nodeconfig": [{{"name": "other", "devicesplitcount": 99}}, {{"name": "node1", {entry}}}]}}"#
    );
    let mut expected = Config::default();
    expect(&mut expected);
    assert_eq!(apply(&text, "node1").expect(entry), expected, "{entry}");
}

#[test]
fn each_non_zero_key_of_the_nodes_entry_overrides_its_setting() {
    overrides(r#""devicesplitcount": 4"#, |c| c.device_split_count = 4);
    overrides(r#""devicememoryscaling": 1.8"#, |c| {
        c.device_memory_scaling = 1.8
    });
    overrides(r#""devicecorescaling": 2"#, |c| c.device_core_scaling = 2.0);
    overrides(r#""preconfigureddevicememory": 122880"#, |c| {
        c.pre_configured_device_memory = 122_880
    });
    overrides(r#""libcudaloglevel": 3"#, |c| {
        c.lib_cuda_log_level = Some(3)
    });
    overrides(r#""enablenumatopology": true"#, |c| {
        c.enable_numa_topology = true
    });
    overrides(r#""operatingmode": "mps""#, |c| {
        c.operating_mode = "mps".into()
    });
    overrides(r#""enablegetpreferredallocation": true"#, |c| {
        c.enable_get_preferred_allocation = true
    });
    overrides(
        r#""filterdevices": {"uuid": ["GPU-b"], "index": [3]}"#,
        |c| {
            c.filter_devices = FilterDevices {
                uuid: vec!["GPU-b".into()],
                index: vec![3],
            }
        },
    );
    // Go's decoder matches keys whatever their case.
    overrides(r#""deviceSplitCount": 5, "operatingMode": "mig""#, |c| {
        c.device_split_count = 5;
        c.operating_mode = "mig".into();
    });
}

#[test]
fn zero_values_and_unknown_keys_change_nothing() {
    overrides(
        r#""devicesplitcount": 0, "devicememoryscaling": 0, "devicecorescaling": 0,
           "preconfigureddevicememory": 0, "libcudaloglevel": 0, "enablenumatopology": false,
           "operatingmode": "", "migstrategy": "none""#,
        |_| {},
    );
}

#[test]
fn an_explicit_false_turns_preferred_allocation_off() {
    let text = r#"{"nodeconfig": [{"name": "node1", "enablegetpreferredallocation": false}]}"#;
    let base = Config {
        enable_get_preferred_allocation: true,
        ..Config::default()
    };
    let c = base
        .with_node_file(Path::new(PATH), text, "node1")
        .expect("valid");
    assert!(!c.enable_get_preferred_allocation);
}

#[test]
fn another_nodes_entry_or_an_empty_list_changes_nothing() {
    let text = r#"{"nodeconfig": [{"name": "node2", "devicesplitcount": 4}]}"#;
    assert_eq!(apply(text, "node1"), Ok(Config::default()));
    assert_eq!(
        apply(r#"{"nodeconfig": []}"#, "node1"),
        Ok(Config::default())
    );
    assert_eq!(apply("{}", "node1"), Ok(Config::default()));
}

#[test]
fn a_missing_file_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing: PathBuf = dir.path().join("config.json");
    let c = Config::default()
        .load_for_node(&missing, "node1")
        .expect("no file is no override");
    assert_eq!(c, Config::default());
}

#[test]
fn the_file_is_read_from_disk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.json");
    std::fs::write(
        &path,
        r#"{"nodeconfig": [{"name": "node1", "devicesplitcount": 7}]}"#,
    )
    .expect("write");
    let c = Config::default()
        .load_for_node(&path, "node1")
        .expect("valid");
    assert_eq!(c.device_split_count, 7);
}

#[test]
fn bad_json_is_an_error_naming_the_file_the_field_and_the_value() {
    let cases = [
        (
            r#"{"nodeconfig": [{"name": "node1", "devicesplitcount": -1}]}"#,
            "/config/config.json: nodeconfig[0].devicesplitcount: invalid value: integer `-1`, expected u32",
        ),
        (
            r#"{"nodeconfig": [{"name": "node1", "filterdevices": {"index": ["a"]}}]}"#,
            r#"/config/config.json: nodeconfig[0].filterdevices.index[0]: invalid type: string "a", expected u32"#,
        ),
        (
            r#"{"nodeconfig": [{"name": "node1", "filterdevices": {"uuids": []}}]}"#,
            "/config/config.json: nodeconfig[0].filterdevices.uuids: unknown field `uuids`, expected `uuid` or `index`",
        ),
        (
            r#"{"nodeconfig": {"name": "node1"}}"#,
            "/config/config.json: nodeconfig: invalid type: map, expected a sequence",
        ),
    ];
    for (text, expected) in cases {
        let error = apply(text, "node1").expect_err(text);
        assert!(error.starts_with(expected), "{text}:\n{error}");
    }
    let error = apply("{\"nodeconfig\": [", "node1").expect_err("truncated");
    assert!(error.starts_with("/config/config.json: "), "{error}");
    assert!(error.contains("EOF"), "{error}");
}

#[test]
fn an_override_that_cannot_work_is_an_error_naming_the_entry_field_and_value() {
    let text = r#"{"nodeconfig": [{"name": "a"}, {"name": "node1", "operatingmode": "vgpu"}]}"#;
    assert_eq!(
        apply(text, "node1"),
        Err(
            r#"/config/config.json: nodeconfig[1].operatingmode: must be hami-core, mig or mps, not "vgpu""#
                .into()
        )
    );
    let text = r#"{"nodeconfig": [{"name": "node1", "devicememoryscaling": -1.5}]}"#;
    assert_eq!(
        apply(text, "node1"),
        Err("/config/config.json: nodeconfig[0].devicememoryscaling: must be a number above 0, not -1.5".into())
    );
}
