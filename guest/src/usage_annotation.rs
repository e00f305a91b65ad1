//! `hamr.io/node-device-usage`: a node's device use, published on the node by the node agent
//! for schedulers that see nodes but not the pods on them (kube-scheduler-wasm-extension).
//!
//! The value is JSON (documented in `wasm-extension/README.md`):
//!
//! ```json
//! {"pods":["uid-a","uid-b"],
//!  "cards":[{"vendor":"NVIDIA","uuid":"GPU-0","slots":2,"memoryMiB":3000,"cores":50},
//!           {"vendor":"NVIDIA","uuid":"GPU-1","slots":1,"memoryMiB":10240,"cores":0,
//!            "mig":[{"profile":"1g.10gb","start":0,"size":1}]}]}
//! ```
//!
//! `pods` lists the uids of the pods counted (sorted), so that a scheduler that booked a pod
//! itself knows when the published figures include it. `cards` lists only cards in use: slots,
//! memory (MiB) and cores (percent) as the ledger sums them, MIG slices in use, `unusable`
//! when the pods' MIG state is inconsistent with the card (the ledger fails closed, spec §8.3),
//! and the tags the pods leave on the card (`tags`, omitted when none).
//!
//! [`from_ledger`] derives the value from a ledger that knows the node's pods (the node
//! agent's side); [`book`] books a decoded value into a ledger that knows only the node (the
//! scheduler's side), so that both ledgers hold the same use for the node's cards.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::api::Invalid;
use crate::device::{ContainerDevice, MigInUse, Placement, Usage};
use crate::ledger::{Ledger, PodEntry};
use crate::vendor;

/// The annotation key.
pub const NODE_DEVICE_USAGE: &str = "hamr.io/node-device-usage";

/// The uid prefix of the ledger entry that holds a node's published use.
pub const PUBLISHED_PREFIX: &str = "hamr.io/published/";

/// A node's published device use.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeDeviceUsage {
    /// Uids of the pods counted, sorted.
    #[serde(default)]
    pub pods: Vec<String>,
    /// Cards in use, in the node's card order.
    #[serde(default)]
    pub cards: Vec<CardUse>,
}

/// The use of one card by the pods counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CardUse {
    /// The vendor key (`NVIDIA`).
    pub vendor: String,
    pub uuid: String,
    /// Containers sharing the card (at least 1 per pod using it).
    pub slots: i64,
    #[serde(rename = "memoryMiB")]
    pub memory_mib: i64,
    /// Percent of the card's cores.
    pub cores: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mig: Vec<MigSlice>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unusable: bool,
    /// The tags the pods leave on the card ([`crate::device::Card::tags`]: MetaX sGPU app class
    /// and QoS, Volcano PodGroup membership), in the ledger's order; omitted when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// A MIG slice in use: the profile and its placement.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigSlice {
    pub profile: String,
    pub start: u32,
    pub size: u32,
}

impl NodeDeviceUsage {
    /// The annotation's value.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string())
    }

    /// Parses the annotation's value; `node` names the object in the error.
    pub fn decode(node: &str, text: &str) -> Result<NodeDeviceUsage, Invalid> {
        let u: NodeDeviceUsage = serde_json::from_str(text).map_err(|e| {
            Invalid::new(
                format!("node/{node}"),
                format!("metadata.annotations[{NODE_DEVICE_USAGE}]"),
                text,
                e.to_string(),
            )
        })?;
        for c in &u.cards {
            if c.slots < 0 || c.memory_mib < 0 || c.cores < 0 {
                return Err(Invalid::new(
                    format!("node/{node}"),
                    format!(
                        "metadata.annotations[{NODE_DEVICE_USAGE}].cards[{}]",
                        c.uuid
                    ),
                    text,
                    "slots, memoryMiB and cores must not be negative",
                ));
            }
        }
        Ok(u)
    }
}

/// The use of `node`'s cards by the pods the ledger holds there (assumed ones included; the
/// node agent's ledger has none).
pub fn from_ledger(ledger: &Ledger, node: &str) -> NodeDeviceUsage {
    let mut pods: Vec<String> = ledger
        .pods_by_node
        .get(node)
        .map(|uids| {
            uids.iter()
                .filter(|u| !u.starts_with(PUBLISHED_PREFIX))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    pods.sort();
    let cards = ledger
        .nodes
        .get(node)
        .map(|entry| {
            entry
                .cards
                .iter()
                .filter(|c| {
                    c.used != 0
                        || c.used_mem != 0
                        || c.used_cores != 0
                        || c.forced_unhealthy
                        || !c.mig_in_use.is_empty()
                        || !c.tags.is_empty()
                })
                .map(|c| CardUse {
                    vendor: c.vendor.to_string(),
                    uuid: c.info.id.clone(),
                    slots: c.used,
                    memory_mib: c.used_mem,
                    cores: c.used_cores,
                    mig: c
                        .mig_in_use
                        .iter()
                        .map(|m| MigSlice {
                            profile: m.profile.clone(),
                            start: m.placement.start,
                            size: m.placement.size,
                        })
                        .collect(),
                    unusable: c.forced_unhealthy,
                    tags: c.tags.iter().map(|t| t.to_string()).collect(),
                })
                .collect()
        })
        .unwrap_or_default();
    NodeDeviceUsage { pods, cards }
}

/// Books `node`'s published use into `ledger` (which must already hold the node, so that each
/// card's mode is known), replacing what was published before; pods this ledger assumed and
/// the published use now counts are released, so nothing counts twice. Cards the ledger does
/// not know on the node, and unknown vendors, are skipped.
pub fn book(ledger: &mut Ledger, node: &str, usage: &NodeDeviceUsage) {
    let uid = format!("{PUBLISHED_PREFIX}{node}");
    ledger.remove_pod(&uid);
    for pod in &usage.pods {
        if ledger
            .pods
            .get(pod)
            .is_some_and(|e| e.assumed && e.node == node)
        {
            ledger.remove_pod(pod);
        }
    }
    let Some(entry) = ledger.nodes.get(node) else {
        return;
    };
    let mut usage_by_vendor: Vec<(&'static str, Vec<Usage>)> = Vec::new();
    let mut devices: Vec<(&'static str, Vec<Vec<ContainerDevice>>)> = Vec::new();
    let mut stray = Vec::new();
    let mut tags: Vec<(&'static str, String, Arc<str>)> = Vec::new();
    for c in &usage.cards {
        let Some(v) = vendor::by_key(&c.vendor) else {
            continue;
        };
        let Some(card) = entry
            .cards
            .iter()
            .find(|k| k.vendor == v.key() && k.info.id == c.uuid)
        else {
            continue;
        };
        let is_mig = card.info.mode == "mig";
        tags.extend(
            c.tags
                .iter()
                .map(|t| (v.key(), c.uuid.clone(), Arc::from(t.as_str()))),
        );
        if c.slots != 0 || c.memory_mib != 0 || c.cores != 0 {
            let u = Usage {
                uuid: c.uuid.clone(),
                mem: c.memory_mib,
                cores: c.cores,
                slots: c.slots,
            };
            match usage_by_vendor.iter_mut().find(|(k, _)| *k == v.key()) {
                Some((_, list)) => list.push(u),
                None => usage_by_vendor.push((v.key(), vec![u])),
            }
        }
        // Slices are booked as left-over slices: on a MIG card they are taken, on another card
        // they make it unusable, as the ledger's rebuild does for a pod's slices.
        for m in &c.mig {
            stray.push((
                v.key(),
                c.uuid.clone(),
                MigInUse {
                    profile: m.profile.clone(),
                    placement: Placement {
                        start: m.start,
                        size: m.size,
                    },
                },
            ));
        }
        if c.unusable {
            if is_mig {
                // A device without a slice on a MIG card: the rebuild fails it closed.
                let d = ContainerDevice {
                    uuid: c.uuid.clone(),
                    vendor: v.key().to_string(),
                    mem: 0,
                    cores: 0,
                    index: card.info.index,
                    mig: None,
                };
                match devices.iter_mut().find(|(k, _)| *k == v.key()) {
                    Some((_, list)) => list.push(vec![d]),
                    None => devices.push((v.key(), vec![vec![d]])),
                }
            } else if c.mig.is_empty() {
                // A slice on a card not in MIG mode: the rebuild fails it closed.
                stray.push((v.key(), c.uuid.clone(), no_slice()));
            }
        }
    }
    if usage_by_vendor.is_empty() && devices.is_empty() && stray.is_empty() && tags.is_empty() {
        return;
    }
    ledger.insert_pod(
        uid,
        PodEntry {
            namespace: String::new(),
            name: format!("published use of {node}"),
            node: node.to_string(),
            devices,
            usage: usage_by_vendor,
            stray_slices: stray,
            assumed: false,
            tags,
        },
    );
}

/// A placeholder slice, booked only to fail a non-MIG card closed.
fn no_slice() -> MigInUse {
    MigInUse {
        profile: String::new(),
        placement: Placement::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_documented_shape() {
        let u = NodeDeviceUsage {
            pods: vec!["a".into()],
            cards: vec![CardUse {
                vendor: "NVIDIA".into(),
                uuid: "GPU-0".into(),
                slots: 1,
                memory_mib: 1000,
                cores: 30,
                mig: vec![],
                unusable: false,
                tags: vec![],
            }],
        };
        assert_eq!(
            u.encode(),
            r#"{"pods":["a"],"cards":[{"vendor":"NVIDIA","uuid":"GPU-0","slots":1,"memoryMiB":1000,"cores":30}]}"#
        );
        assert_eq!(NodeDeviceUsage::decode("n", &u.encode()), Ok(u));
    }

    #[test]
    fn malformed_values_name_the_annotation() {
        let e = NodeDeviceUsage::decode("n1", r#"{"cards":[{"uuid":1}]}"#).unwrap_err();
        assert_eq!(e.object, "node/n1");
        assert_eq!(e.field, "metadata.annotations[hamr.io/node-device-usage]");
        let e = NodeDeviceUsage::decode(
            "n1",
            r#"{"cards":[{"vendor":"NVIDIA","uuid":"g","slots":-1,"memoryMiB":0,"cores":0}]}"#,
        )
        .unwrap_err();
        assert!(e.message.contains("negative"), "{e}");
        assert!(NodeDeviceUsage::decode("n1", r#"{"podz":[]}"#).is_err());
    }

    fn node(name: &str) -> crate::api::Node {
        let reg = r#"[{"id":"GPU-a","index":0,"count":10,"devmem":40960,"devcore":100,"type":"NVIDIA A100-SXM4-40GB","numa":0,"mode":"hami-core","health":true},{"id":"GPU-m","index":1,"count":7,"devmem":40960,"devcore":100,"type":"NVIDIA A100-SXM4-40GB","numa":0,"mode":"mig","health":true,"migProfiles":[{"name":"1g.5gb","memoryMB":5120,"core":14,"sliceCount":1,"placements":[{"start":0,"size":1},{"start":1,"size":1}]}]}]"#;
        crate::api::Node {
            name: name.into(),
            annotations: vec![("hami.io/node-nvidia-register".into(), reg.into())],
            ..Default::default()
        }
    }

    fn pod(uid: &str, node: &str, devices: &str, mig: Option<&str>) -> crate::api::Pod {
        let mut annotations = vec![
            ("hami.io/vgpu-node".to_string(), node.to_string()),
            (
                "hami.io/vgpu-devices-allocated".to_string(),
                devices.to_string(),
            ),
            (
                "hami.io/vgpu-devices-to-allocate".to_string(),
                devices.to_string(),
            ),
        ];
        if let Some(m) = mig {
            annotations.push(("hami.io/vgpu-mig-allocations".to_string(), m.to_string()));
        }
        crate::api::Pod {
            uid: uid.into(),
            namespace: "default".into(),
            name: uid.into(),
            annotations,
            containers: vec![crate::api::Container::default()],
            phase: crate::api::PodPhase::Running,
            ..Default::default()
        }
    }

    /// The card fields the scheduler reads, per card.
    fn cards(l: &Ledger, node: &str) -> Vec<(String, i64, i64, i64, bool, usize)> {
        l.nodes[node]
            .cards
            .iter()
            .map(|c| {
                (
                    c.info.id.clone(),
                    c.used,
                    c.used_mem,
                    c.used_cores,
                    c.forced_unhealthy,
                    c.mig_in_use.len(),
                )
            })
            .collect()
    }

    #[test]
    fn a_ledger_that_sees_only_the_node_books_the_same_use() {
        let mut agent = Ledger::default();
        agent.upsert_node(node("n1")).expect("valid node");
        for p in [
            pod("p1", "n1", "GPU-a,NVIDIA,1000,30:;", None),
            pod(
                "p2",
                "n1",
                "GPU-a,NVIDIA,2000,20:GPU-a,NVIDIA,500,0:;",
                None,
            ),
            pod(
                "p3",
                "n1",
                "GPU-m,NVIDIA,5120,14:;",
                Some(
                    r#"[{"containerIndex":0,"deviceIndex":0,"gpuUUID":"GPU-m","profile":"1g.5gb","placement":{"start":1,"size":1}}]"#,
                ),
            ),
        ] {
            agent.upsert_pod(&p).expect("valid pod");
        }
        let published = from_ledger(&agent, "n1");
        assert_eq!(published.pods, vec!["p1", "p2", "p3"]);
        let text = published.encode();

        let mut guest = Ledger::default();
        guest.upsert_node(node("n1")).expect("valid node");
        // A pod this scheduler assumed and the agent already counts, and one it does not yet.
        let assumed = |uid: &str| PodEntry {
            tags: Vec::new(),
            namespace: "default".into(),
            name: uid.into(),
            node: "n1".into(),
            devices: vec![],
            usage: vec![(
                "NVIDIA",
                vec![Usage {
                    uuid: "GPU-a".into(),
                    mem: 1000,
                    cores: 30,
                    slots: 1,
                }],
            )],
            stray_slices: vec![],
            assumed: true,
        };
        guest.insert_pod("p1".into(), assumed("p1"));
        guest.insert_pod("p9".into(), assumed("p9"));
        book(
            &mut guest,
            "n1",
            &NodeDeviceUsage::decode("n1", &text).expect("round trip"),
        );
        assert!(
            !guest.pods.contains_key("p1"),
            "p1 is counted by the agent now"
        );
        assert!(guest.pods.contains_key("p9"), "p9 is not published yet");
        guest.remove_pod("p9");
        assert_eq!(cards(&guest, "n1"), cards(&agent, "n1"));
        // Publishing again replaces, never adds.
        book(&mut guest, "n1", &published);
        assert_eq!(cards(&guest, "n1"), cards(&agent, "n1"));
        assert_eq!(from_ledger(&guest, "n1").cards, published.cards);
    }

    #[test]
    fn card_tags_travel_with_the_published_use() {
        let node = crate::api::Node {
            name: "vc-1".into(),
            annotations: vec![(
                "volcano.sh/node-vgpu-register".into(),
                "GPU-v0,10,40960,NVIDIA-NVIDIA A100-SXM4-40GB,true,hami-core:\
                 GPU-v1,10,40960,NVIDIA-NVIDIA A100-SXM4-40GB,true,hami-core:"
                    .into(),
            )],
            ..Default::default()
        };
        let worker = crate::api::Pod {
            uid: "w0".into(),
            namespace: "ml".into(),
            name: "w0".into(),
            annotations: vec![
                ("volcano.sh/vgpu-node".into(), "vc-1".into()),
                (
                    "volcano.sh/vgpu-ids-new".into(),
                    "GPU-v1,NVIDIA,1000,10:".into(),
                ),
                ("scheduling.k8s.io/group-name".into(), "train".into()),
            ],
            containers: vec![crate::api::Container::default()],
            phase: crate::api::PodPhase::Running,
            ..Default::default()
        };
        let mut agent = Ledger::default();
        agent.upsert_node(node.clone()).expect("valid node");
        agent.upsert_pod(&worker).expect("valid pod");
        let published = from_ledger(&agent, "vc-1");
        assert!(
            published.encode().contains(r#""tags":["w0 ml/train"]"#),
            "{}",
            published.encode()
        );
        let mut guest = Ledger::default();
        guest.upsert_node(node).expect("valid node");
        book(
            &mut guest,
            "vc-1",
            &NodeDeviceUsage::decode("vc-1", &published.encode()).expect("round trip"),
        );
        let tags = |l: &Ledger| -> Vec<Vec<String>> {
            l.nodes["vc-1"]
                .cards
                .iter()
                .map(|c| c.tags.iter().map(|t| t.to_string()).collect())
                .collect()
        };
        assert_eq!(tags(&guest), vec![vec![], vec!["w0 ml/train".to_string()]]);
        assert_eq!(tags(&guest), tags(&agent));
    }

    #[test]
    fn inconsistent_mig_state_stays_failed_closed() {
        let mut agent = Ledger::default();
        agent.upsert_node(node("n1")).expect("valid node");
        // A device on the MIG card without a slice: the rebuild fails the card closed.
        agent
            .upsert_pod(&pod("p1", "n1", "GPU-m,NVIDIA,5120,14:;", None))
            .expect("valid pod");
        let published = from_ledger(&agent, "n1");
        assert!(published.cards.iter().any(|c| c.unusable));
        let mut guest = Ledger::default();
        guest.upsert_node(node("n1")).expect("valid node");
        book(&mut guest, "n1", &published);
        assert_eq!(cards(&guest, "n1"), cards(&agent, "n1"));
    }
}
