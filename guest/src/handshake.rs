//! The scheduler's side of HAMi's node handshake (spec hami-core-nvidia.md §2.3, table §13.10;
//! hami-vendors.md §1.7): what the scheduler stamps on each node, and which registrations it
//! treats as gone.
//!
//! HAMi's scheduler writes `Requesting_<YYYY-MM-DD HH:MM:SS>` into a vendor's handshake
//! annotation whenever the value holds no `Requesting` stamp (absent, or replaced by the device
//! plugin). A stamp older than 60 s on a node that reports no allocatable devices of the vendor
//! means the device plugin is gone ([`crate::vendor::Vendor::node_live`]). The guest only says
//! what to write; the host writes it (and decides how often) and feeds the node back.
//!
//! | value | allocatable | written | stale |
//! | --- | --- | --- | --- |
//! | absent, `Reported_<t>`, anything without `Requesting` | any | `Requesting_<now>` | no |
//! | `Requesting_<now − 10 s>` (H1) | 0 | — | no |
//! | `Requesting_<now − 2 h>` (H2) | 0 | — | yes |
//! | `Requesting_<now − 2 h>` (H3–H5, H8) | > 0 | — | no |
//! | `Requesting`, `Requesting_<garbage>` (H7) | any | — | no |

use crate::api::NodeHandshake;
use crate::ledger::Ledger;
use crate::vendor::VENDORS;
use crate::vendor::nvidia::register::format_local_time;

/// The stamp HAMi's scheduler writes, without its time.
pub const REQUESTING: &str = "Requesting";

/// `Requesting_<YYYY-MM-DD HH:MM:SS>` of `now` (UTC).
pub fn requesting(now: i64) -> String {
    format!("{REQUESTING}_{}", format_local_time(now))
}

/// Per node (sorted), the handshake annotations to write and the vendors whose registration is
/// not live; nodes with neither are left out. Only vendors registered on the node count: a node
/// without a vendor's registration gets no handshake for it.
pub fn handshakes(ledger: &Ledger, now: i64) -> Vec<NodeHandshake> {
    let mut out = Vec::new();
    let mut nodes: Vec<(&String, &crate::ledger::NodeEntry)> = ledger.nodes.iter().collect();
    nodes.sort_unstable_by_key(|(name, _)| *name);
    for (name, entry) in nodes {
        let mut annotations: Vec<(String, String)> = Vec::new();
        let mut stale: Vec<String> = Vec::new();
        for v in VENDORS.iter().filter(|v| entry.vendors.contains(v.key())) {
            if let Some(key) = v.handshake_key()
                && !entry
                    .node
                    .annotation(key)
                    .is_some_and(|value| value.contains(REQUESTING))
                && !annotations.iter().any(|(k, _)| k == key)
            {
                annotations.push((key.to_string(), requesting(now)));
            }
            if !ledger.vendor_live(entry, *v, now) {
                stale.push(v.key().to_string());
            }
        }
        if annotations.is_empty() && stale.is_empty() {
            continue;
        }
        stale.sort();
        out.push(NodeHandshake {
            node: name.clone(),
            annotations,
            stale,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Node;
    use crate::config::Config;
    use crate::vendor::nvidia::register::HANDSHAKE;

    /// 2026-11-28 12:00:00 UTC.
    const NOW: i64 = 1_795_867_200;
    const REGISTER: &str = r#"[{"id":"GPU-a","index":0,"count":10,"devmem":40960,"devcore":100,"type":"NVIDIA A100-SXM4-40GB","numa":0,"mode":"hami-core","health":true}]"#;

    fn node(handshake: Option<&str>, allocatable: &str) -> Node {
        let mut annotations = vec![(
            "hami.io/node-nvidia-register".to_string(),
            REGISTER.to_string(),
        )];
        if let Some(h) = handshake {
            annotations.push((HANDSHAKE.to_string(), h.to_string()));
        }
        Node {
            name: "n1".into(),
            annotations,
            allocatable: vec![("nvidia.com/gpu".into(), allocatable.into())],
            ..Node::default()
        }
    }

    fn answer(n: Node) -> Vec<NodeHandshake> {
        let mut ledger = Ledger::default();
        ledger.upsert_node(n).expect("a valid node");
        handshakes(&ledger, NOW)
    }

    #[test]
    fn the_stamp_is_written_in_hamis_format() {
        assert_eq!(requesting(NOW), "Requesting_2026-11-28 12:00:00");
    }

    #[test]
    fn handshake_table_h1_to_h8() {
        let write = || NodeHandshake {
            node: "n1".into(),
            annotations: vec![(HANDSHAKE.into(), "Requesting_2026-11-28 12:00:00".into())],
            stale: vec![],
        };
        let stale = || NodeHandshake {
            node: "n1".into(),
            annotations: vec![],
            stale: vec!["NVIDIA".into()],
        };
        let cases: [(&str, Option<&str>, &str, Vec<NodeHandshake>); 9] = [
            ("no handshake yet: stamp it", None, "0", vec![write()]),
            (
                "the plugin answered: stamp again",
                Some("Reported_2026-11-28 11:59:30"),
                "0",
                vec![write()],
            ),
            (
                "H1 a fresh stamp waits",
                Some("Requesting_2026-11-28 11:59:50"),
                "0",
                vec![],
            ),
            (
                "H2 an expired stamp without allocatable GPUs is stale",
                Some("Requesting_2026-11-28 10:00:00"),
                "0",
                vec![stale()],
            ),
            (
                "H3-H5 an expired stamp with allocatable GPUs is live",
                Some("Requesting_2026-11-28 10:00:00"),
                "4",
                vec![],
            ),
            ("H7 no timestamp", Some("Requesting"), "0", vec![]),
            (
                "H7 an unparsable timestamp",
                Some("Requesting_yesterday"),
                "0",
                vec![],
            ),
            (
                "H8 expired, 8 allocatable",
                Some("Requesting_2026-11-28 10:00:00"),
                "8",
                vec![],
            ),
            (
                "the grace is 60 s: 61 s old is stale",
                Some("Requesting_2026-11-28 11:58:59"),
                "0",
                vec![stale()],
            ),
        ];
        for (name, value, allocatable, expected) in cases {
            assert_eq!(answer(node(value, allocatable)), expected, "{name}");
        }
    }

    #[test]
    fn a_node_without_the_vendors_registration_gets_no_handshake() {
        let n = Node {
            name: "cpu-1".into(),
            annotations: vec![(HANDSHAKE.into(), "Reported_2026-11-28 10:00:00".into())],
            ..Node::default()
        };
        assert_eq!(answer(n), vec![]);
    }

    #[test]
    fn a_volcano_node_without_allocatable_is_stale_and_gets_no_handshake() {
        let n = Node {
            name: "vc-1".into(),
            annotations: vec![(
                "volcano.sh/node-vgpu-register".into(),
                "GPU-v,10,40960,NVIDIA-NVIDIA A100-SXM4-40GB,true,hami-core:".into(),
            )],
            ..Node::default()
        };
        assert_eq!(
            answer(n),
            vec![NodeHandshake {
                node: "vc-1".into(),
                annotations: vec![],
                stale: vec!["VOLCANO".into()],
            }]
        );
    }

    /// Every vendor that names a handshake key judges liveness by that key, with HAMi's rule.
    #[test]
    fn each_handshake_key_is_the_one_its_liveness_reads() {
        let config = Config::default();
        let keyed: Vec<_> = VENDORS
            .iter()
            .filter_map(|v| v.handshake_key().map(|k| (v, k)))
            .collect();
        assert!(
            keyed.len() >= 7,
            "NVIDIA, Hygon, Biren, VastAI, Iluvatar, Ascend, Kunlun vXPU"
        );
        for (v, key) in keyed {
            let with = |value: &str| Node {
                name: "n1".into(),
                annotations: vec![(key.to_string(), value.to_string())],
                ..Node::default()
            };
            assert!(
                !v.node_live(&with("Requesting_2026-11-28 10:00:00"), &config, NOW),
                "{}: an expired stamp without allocatable devices is not live",
                v.key()
            );
            assert!(
                v.node_live(&with("Requesting_2026-11-28 11:59:50"), &config, NOW),
                "{}: a fresh stamp is live",
                v.key()
            );
        }
    }
}
