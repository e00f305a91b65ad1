//! Unit tables for Enflame from spec §16.4.

use super::drs::{Profile, candidates, choose, parse_profile, registration};
use super::*;
use crate::api::Node;
use crate::device::Card;
use crate::vendor::Request;

const EF_01: &str = r#"{"devices":[{"index":"0","minor":"0","capacity":6}],"profiles":{"1g.6gb":"0","3g.20gb":"1","6g.40gb":"2"}}"#;

fn node(text: &str) -> Node {
    Node {
        name: "node-a".into(),
        ..Node::default()
    }
    .with(text)
}

trait With {
    fn with(self, text: &str) -> Node;
}

impl With for Node {
    fn with(mut self, text: &str) -> Node {
        self.annotations = vec![(DRS_CAPACITY.into(), text.into())];
        self
    }
}

fn request(memreq: i64, mem_pct: i64, coresreq: i64) -> Request {
    Request {
        vendor: SHARED_VENDOR,
        nums: 1,
        memreq,
        mem_pct,
        coresreq,
    }
}

#[test]
fn drs_discovery_ef_01() {
    let n = node(EF_01);
    let d = registration(&n, EF_01).expect("parses");
    assert_eq!(d.len(), 1);
    assert_eq!(
        (
            d[0].id.as_str(),
            d[0].count,
            d[0].devmem,
            d[0].model.as_str()
        ),
        ("node-a-enflame-drs-0", 6, 40960, "Enflame")
    );
    assert_eq!(d[0].custom.get("minor").map(String::as_str), Some("0"));
    let big = r#"{"devices":[{"index":"0","capacity":"2147483648"}],"profiles":{"1g.6gb":"0"}}"#;
    assert_eq!(registration(&n, big).expect("clamped")[0].count, 2147483647);
    for bad in [
        r#"{"devices":[{"index":"0","capacity":0}],"profiles":{"1g.6gb":"0"}}"#,
        r#"{"devices":[{"index":"0","capacity":"x"}],"profiles":{"1g.6gb":"0"}}"#,
        r#"{"devices":[{"index":"0","capacity":6}],"profiles":{"bad":"0"}}"#,
    ] {
        assert!(registration(&n, bad).is_err(), "{bad}");
    }
}

#[test]
fn profile_names() {
    assert_eq!(parse_profile("3g.20gb"), Some((3, 20)));
    assert_eq!(parse_profile("3G.20GB"), Some((3, 20)));
    assert_eq!(parse_profile("3g"), None);
    assert_eq!(parse_profile("xg.20gb"), None);
    assert_eq!(parse_profile("3g.xgb"), Some((3, 0)));
}

fn cards_of(text: &str) -> Vec<Card> {
    registration(&node(text), text)
        .expect("parses")
        .into_iter()
        .map(|i| Card::new(SHARED_VENDOR, i))
        .collect()
}

#[test]
fn profile_choice_ef_04_05_06() {
    let cards = cards_of(EF_01);
    let refs: Vec<&Card> = cards.iter().collect();
    let profiles = candidates(&refs);
    let want = Profile {
        name: "3g.20gb".into(),
        id: "1".into(),
        size: 3,
        mem_gb: 20,
        core_percent: 50,
    };
    assert_eq!(
        choose(&profiles, &request(3, MODE_DRS_DIRECT, 0)),
        Some(want.clone())
    );
    assert_eq!(
        choose(&profiles, &request(20480, MODE_DRS_SPEC, 40)),
        Some(want)
    );
    let small = r#"{"devices":[{"index":"0","capacity":6}],"profiles":{"1g.6gb":"0"}}"#;
    let cards = cards_of(small);
    let refs: Vec<&Card> = cards.iter().collect();
    assert_eq!(
        choose(&candidates(&refs), &request(3, MODE_DRS_DIRECT, 0)),
        None
    );
}

#[test]
fn out_of_bounds_profiles_never_fit_ef_09() {
    for name in [
        "4294967299g.4294967299gb",
        "4294967299g.20gb",
        "2g.4294967299gb",
        "2147483647g.20gb",
    ] {
        let text =
            format!(r#"{{"devices":[{{"index":"0","capacity":6}}],"profiles":{{"{name}":"0"}}}}"#);
        let mut cards = cards_of(&text);
        let mut info = (*cards[0].info).clone();
        info.custom.insert("maxslice".into(), "1".into());
        cards[0].info = std::sync::Arc::new(info);
        let refs: Vec<&Card> = cards.iter().collect();
        let profiles = candidates(&refs);
        let (size, _) = parse_profile(name).expect("a profile name");
        assert_eq!(
            choose(&profiles, &request(size, MODE_DRS_DIRECT, 0)),
            None,
            "{name} by size"
        );
        assert_eq!(
            choose(&profiles, &request(20, MODE_DRS_SPEC, 0)),
            None,
            "{name} by spec"
        );
    }
}

/// EF-15 and the integer rounding: (slices per card, count, percentage) -> (percentage, shared-gcu).
#[test]
fn ef15_vgcu_admission_rounds_to_the_slice_boundary() {
    use crate::api::{Container, ContainerRef, Mutation};
    use crate::vendor::Slot;
    for (slices, count, pct, want) in [
        (4, "1", Some("15"), (25, 1)), // EF-15
        (4, "1", Some("25"), (25, 1)), // on a boundary: unchanged
        (4, "1", Some("26"), (50, 2)),
        (4, "1", None, (100, 4)),        // default 100
        (4, "1", Some("0"), (25, 1)),    // at least 1
        (4, "1", Some("150"), (100, 4)), // at most 100
        (3, "1", Some("15"), (33, 1)),   // HAMi: int(33.33…)
        (3, "1", Some("50"), (66, 2)),
        (3, "1", Some("100"), (100, 3)),
        (4, "2", Some("30"), (100, 8)), // several cards are whole
    ] {
        let mut limits = vec![(VGCU_RESOURCE.to_string(), count.to_string())];
        if let Some(p) = pct {
            limits.push((VGCU_PERCENTAGE.to_string(), p.to_string()));
        }
        let c = Container {
            name: "main".into(),
            limits,
            ..Container::default()
        };
        let slot = Slot {
            object: "pod/default/p",
            init: false,
            index: 0,
        };
        let cref = ContainerRef {
            init: false,
            index: 0,
        };
        let mut out = Vec::new();
        super::shared::round_vgcu(&c, slot, cref, slices, &mut out).expect("valid");
        let limit = |name: &str| {
            out.iter().find_map(|m| match m {
                Mutation::SetLimit(l) if l.name == name => l.value.parse::<i64>().ok(),
                _ => None,
            })
        };
        let request = |name: &str| {
            out.iter().find_map(|m| match m {
                Mutation::SetRequest(l) if l.name == name => l.value.parse::<i64>().ok(),
                _ => None,
            })
        };
        let case = format!("{slices} slices, vgcu {count}, {pct:?}%");
        assert_eq!(
            (limit(VGCU_PERCENTAGE), limit(SHARED_GCU)),
            (Some(want.0), Some(want.1)),
            "{case}"
        );
        assert_eq!(
            (request(VGCU_PERCENTAGE), request(SHARED_GCU)),
            (Some(want.0), Some(want.1)),
            "{case}"
        );
    }
}
