//! NVIDIA node registration: `hami.io/node-nvidia-register` (JSON, or the legacy colon form),
//! `hami.io/node-nvidia-score` pair scores, and the handshake liveness rule (spec §2).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::api::{Invalid, Node};
use crate::device::{DeviceInfo, MigProfile};
use crate::quantity;

pub const REGISTER: &str = "hami.io/node-nvidia-register";
pub const SCORE: &str = "hami.io/node-nvidia-score";
pub const HANDSHAKE: &str = "hami.io/node-handshake";

/// Seconds a `Requesting_<t>` handshake stays valid without allocatable cards (spec §2.3).
pub const HANDSHAKE_GRACE_SECONDS: i64 = 60;

/// One device object of the JSON registration. Every field is `omitempty` upstream, so every
/// field defaults; a missing `health` is `false` (unhealthy).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[derive(Default)]
struct RawDevice {
    id: String,
    index: u32,
    count: i32,
    devmem: i32,
    devcore: i32,
    #[serde(rename = "type")]
    model: String,
    numa: i64,
    mode: String,
    health: bool,
    mig_profiles: Vec<MigProfile>,
}

#[derive(Deserialize)]
struct RawScore {
    uuid: String,
    #[serde(default)]
    score: BTreeMap<String, i64>,
}

/// Parses the node's NVIDIA cards. `Ok(None)` when the node has no registration (or an empty
/// one: HAMi's "no gpu found on node").
pub fn parse(node: &Node) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
    let Some(mut devices) = parse_devices(node)? else {
        return Ok(None);
    };
    attach_scores(node, &mut devices)?;
    Ok(Some(devices))
}

/// [`parse`] of a new version of a node whose previous version was parsed without error into
/// `cards` (every vendor's): when the score annotation is the same text and every card has a
/// unique id this vendor knew, the previous pair scores are shared rather than parsed again (a
/// health flip changes the registration, not the scores: half the parse).
pub fn parse_again(
    node: &Node,
    previous: &Node,
    cards: &[crate::device::Card],
) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
    if node.annotation(SCORE) != previous.annotation(SCORE) {
        return parse(node);
    }
    let Some(mut devices) = parse_devices(node)? else {
        return Ok(None);
    };
    let mut ids: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
    ids.sort_unstable();
    let unique = ids.windows(2).all(|w| w[0] != w[1]);
    let known: Option<Vec<_>> = devices
        .iter()
        .map(|d| {
            cards
                .iter()
                .find(|c| c.vendor == super::VENDOR && c.info.id == d.id)
        })
        .collect();
    match known {
        Some(known) if unique => {
            for (d, c) in devices.iter_mut().zip(known) {
                d.pair_scores = c.info.pair_scores.clone();
            }
            Ok(Some(devices))
        }
        _ => parse(node),
    }
}

/// The registration's cards, without pair scores.
fn parse_devices(node: &Node) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
    let Some(text) = node.annotation(REGISTER) else {
        return Ok(None);
    };
    let object = format!("node/{}", node.name);
    let trimmed = text.trim();
    let devices = if trimmed.starts_with('[') {
        parse_json(trimmed).map_err(|m| Invalid::new(&object, REGISTER, text, m))?
    } else if trimmed.is_empty() {
        Vec::new()
    } else {
        parse_legacy(trimmed).map_err(|m| Invalid::new(&object, REGISTER, text, m))?
    };
    Ok((!devices.is_empty()).then_some(devices))
}

/// Each card's pair scores from the score annotation, by UUID (the first card of a UUID).
fn attach_scores(node: &Node, devices: &mut [DeviceInfo]) -> Result<(), Invalid> {
    let object = format!("node/{}", node.name);
    if let Some(scores) = node.annotation(SCORE) {
        let parsed: Vec<RawScore> = serde_json::from_str(scores).map_err(|e| {
            Invalid::new(
                &object,
                SCORE,
                scores,
                format!("not a pair-score list: {e}"),
            )
        })?;
        let mut by_uuid: BTreeMap<String, BTreeMap<String, i64>> =
            parsed.into_iter().map(|s| (s.uuid, s.score)).collect();
        for d in devices.iter_mut() {
            if let Some(s) = by_uuid.remove(&d.id) {
                d.pair_scores = std::sync::Arc::new(s);
            }
        }
    }
    Ok(())
}

fn parse_json(text: &str) -> Result<Vec<DeviceInfo>, String> {
    let raw: Vec<RawDevice> =
        serde_json::from_str(text).map_err(|e| format!("not a device list: {e}"))?;
    raw.into_iter()
        .enumerate()
        .map(|(i, d)| {
            if d.id.is_empty() {
                return Err(format!("device {i} has no id"));
            }
            if d.count < 0 || d.devmem < 0 || d.devcore < 0 {
                return Err(format!(
                    "device {} has a negative count, devmem or devcore",
                    d.id
                ));
            }
            Ok(DeviceInfo {
                id: d.id,
                index: d.index,
                count: i64::from(d.count),
                devmem: i64::from(d.devmem),
                devcore: i64::from(d.devcore),
                model: d.model,
                numa: d.numa.max(0),
                mode: d.mode,
                health: d.health,
                mig_profiles: d.mig_profiles,
                pair_scores: Default::default(),
                custom: BTreeMap::new(),
            })
        })
        .collect()
}

/// The legacy text form: devices separated by `:`, each `id,count,devmem,devcore,type,numa,health`
/// or with `,index,mode` appended (spec §2.1).
fn parse_legacy(text: &str) -> Result<Vec<DeviceInfo>, String> {
    if !text.contains(':') {
        return Err("node annotation missing device separator".to_string());
    }
    let mut out = Vec::new();
    for segment in text.split(':').filter(|s| !s.trim().is_empty()) {
        if !segment.contains(',') {
            return Err(format!("malformed device {segment:?}"));
        }
        let f: Vec<&str> = segment.split(',').map(str::trim).collect();
        if f.len() != 7 && f.len() != 9 {
            return Err(format!(
                "device {segment:?} has {} fields, want 7 or 9",
                f.len()
            ));
        }
        let int = |s: &str, name: &str| -> Result<i64, String> {
            s.parse::<i32>()
                .map(i64::from)
                .map_err(|_| format!("device {}: {name} {s:?} is not an integer", f[0]))
        };
        let (index, mode) = if f.len() == 9 {
            let index = f[7].parse::<u32>().map_err(|_| {
                format!(
                    "device {}: index {:?} is not a non-negative integer",
                    f[0], f[7]
                )
            })?;
            (index, f[8].to_string())
        } else {
            (0, "hami-core".to_string())
        };
        out.push(DeviceInfo {
            id: f[0].to_string(),
            index,
            count: int(f[1], "count")?.max(0),
            devmem: int(f[2], "devmem")?.max(0),
            devcore: int(f[3], "devcore")?.max(0),
            model: f[4].to_string(),
            numa: int(f[5], "numa")?.max(0),
            mode,
            health: f[6].eq_ignore_ascii_case("true"),
            mig_profiles: Vec::new(),
            pair_scores: Default::default(),
            custom: BTreeMap::new(),
        });
    }
    Ok(out)
}

/// The liveness facts read from a node once per change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Handshake {
    /// The `Requesting_<t>` time, Unix seconds, when the annotation holds one that parses.
    pub requesting_since: Option<i64>,
    /// `status.allocatable[<count resource>]`, 0 when absent or malformed.
    pub allocatable: i64,
}

impl Handshake {
    pub fn read(node: &Node, count_resource: &str) -> Handshake {
        let requesting_since = node
            .annotation(HANDSHAKE)
            .filter(|v| v.contains("Requesting"))
            .and_then(|v| v.split_once('_'))
            .and_then(|(_, t)| parse_local_time(t.trim()));
        let allocatable = crate::api::lookup(&node.allocatable, count_resource)
            .and_then(|q| quantity::parse_integer(q).ok())
            .and_then(|v| i64::try_from(v).ok())
            .unwrap_or(0);
        Handshake {
            requesting_since,
            allocatable,
        }
    }

    /// HAMi's generic rule: a `Requesting_<t>` handshake older than 60 s on a node that reports
    /// no allocatable cards means the device plugin is gone. Anything else is live (HAMi would
    /// write a fresh handshake and carry on).
    pub fn live(&self, now: i64) -> bool {
        self.liveness().at(now)
    }

    /// [`Handshake::live`] as a deadline.
    pub fn liveness(&self) -> crate::vendor::Liveness {
        match self.requesting_since {
            Some(t) if self.allocatable <= 0 => {
                crate::vendor::Liveness::Until(t.saturating_add(HANDSHAKE_GRACE_SECONDS))
            }
            _ => crate::vendor::Liveness::Live,
        }
    }
}

/// Parses `YYYY-MM-DD HH:MM:SS` (read as UTC) to Unix seconds.
pub fn parse_local_time(s: &str) -> Option<i64> {
    let (date, time) = s.split_once(' ')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    if d.next().is_some() || t.next().is_some() {
        return None;
    }
    // Go's layout reads the year as four digits; a longer one would overflow the seconds.
    if !(0..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || !(0..=23).contains(&hh)
        || !(0..=59).contains(&mm)
        || !(0..=60).contains(&ss)
    {
        return None;
    }
    Some(days_from_civil(y, m, day) * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Formats Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC), the inverse of [`parse_local_time`].
///
/// ```
/// # use hamr_guest::vendor::nvidia::register::{format_local_time, parse_local_time};
/// assert_eq!(format_local_time(1_795_867_200), "2026-11-28 12:00:00");
/// assert_eq!(parse_local_time("2026-11-28 12:00:00"), Some(1_795_867_200));
/// ```
pub fn format_local_time(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm),
/// the inverse of [`days_from_civil`].
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(annotations: &[(&str, &str)]) -> Node {
        Node {
            name: "n1".into(),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Node::default()
        }
    }

    #[test]
    fn json_registration_with_omitted_fields() {
        let n = node(&[(
            REGISTER,
            r#"[{"id":"GPU-a","count":10,"devmem":40960,"devcore":100,"type":"NVIDIA A100","health":true},
                {"id":"GPU-b","index":1,"count":10,"devmem":40960,"devcore":100,"type":"NVIDIA A100","numa":-1,"mode":"hami-core"}]"#,
        )]);
        let d = parse(&n).expect("parses").expect("has devices");
        assert_eq!(d.len(), 2);
        assert!(
            d[0].health && !d[1].health,
            "a missing health key is unhealthy"
        );
        assert_eq!((d[0].index, d[0].mode.as_str()), (0, ""));
        assert_eq!(d[1].numa, 0, "negative NUMA reads as 0");
    }

    #[test]
    fn legacy_form_with_seven_and_nine_fields() {
        let n = node(&[(
            REGISTER,
            "GPU-a,10,7680,100,NVIDIA-Tesla P4,0,true:GPU-b,10,7680,100,NVIDIA-Tesla P4,1,false,1,mig:",
        )]);
        let d = parse(&n).expect("parses").expect("has devices");
        assert_eq!(
            (d[0].index, d[0].mode.as_str(), d[0].health),
            (0, "hami-core", true)
        );
        assert_eq!(
            (d[1].index, d[1].mode.as_str(), d[1].health),
            (1, "mig", false)
        );
    }

    #[test]
    fn a_device_with_three_fields_names_the_annotation() {
        let err = parse(&node(&[(REGISTER, "GPU-a,10,7680:")])).unwrap_err();
        assert_eq!(err.object, "node/n1");
        assert_eq!(err.field, REGISTER);
        assert!(err.message.contains("3 fields"), "{}", err.message);
    }

    #[test]
    fn legacy_without_separator_is_refused() {
        let err = parse(&node(&[(REGISTER, "GPU-a,10,7680,100,T,0,true")])).unwrap_err();
        assert_eq!(err.message, "node annotation missing device separator");
    }

    #[test]
    fn empty_list_is_no_registration() {
        assert_eq!(parse(&node(&[(REGISTER, "[]")])), Ok(None));
        assert_eq!(parse(&node(&[])), Ok(None));
    }

    #[test]
    fn pair_scores_attach_by_uuid_and_bad_scores_fail() {
        let reg =
            r#"[{"id":"GPU-a","count":1,"devmem":1,"devcore":100,"type":"NVIDIA","health":true}]"#;
        let n = node(&[
            (REGISTER, reg),
            (SCORE, r#"[{"uuid":"GPU-a","score":{"GPU-b":200}}]"#),
        ]);
        let d = parse(&n).expect("parses").expect("has devices");
        assert_eq!(d[0].pair_scores.get("GPU-b"), Some(&200));
        assert!(parse(&node(&[(REGISTER, reg), (SCORE, "{")])).is_err());
    }

    #[test]
    fn a_registration_parsed_again_is_the_registration_parsed() {
        use crate::device::Card;
        let card = |id: &str, health: bool| {
            format!(
                r#"{{"id":"{id}","count":10,"devmem":1024,"devcore":100,"type":"NVIDIA A","health":{health}}}"#
            )
        };
        let reg = |cards: &[String]| format!("[{}]", cards.join(","));
        let scores = r#"[{"uuid":"GPU-a","score":{"GPU-b":200}},{"uuid":"GPU-b","score":{"GPU-a":200}},{"uuid":"GPU-c","score":{"GPU-a":100}}]"#;
        let before = node(&[
            (REGISTER, &reg(&[card("GPU-a", true), card("GPU-b", true)])),
            (SCORE, scores),
        ]);
        let cards: Vec<Card> = parse(&before)
            .expect("parses")
            .expect("cards")
            .into_iter()
            .map(|i| Card::new(super::super::VENDOR, i))
            .collect();
        let cases = [
            (
                "a health flip",
                reg(&[card("GPU-a", false), card("GPU-b", true)]),
                scores,
                true,
            ),
            (
                "other scores",
                reg(&[card("GPU-a", false), card("GPU-b", true)]),
                r#"[{"uuid":"GPU-a","score":{"GPU-b":5}}]"#,
                false,
            ),
            (
                "a new card",
                reg(&[card("GPU-a", true), card("GPU-c", true)]),
                scores,
                false,
            ),
            (
                "a card twice",
                reg(&[card("GPU-a", true), card("GPU-a", true)]),
                scores,
                false,
            ),
            ("cards gone", "[]".to_string(), scores, false),
            ("malformed", "[{".to_string(), scores, false),
        ];
        for (what, register, score, shared) in cases {
            let after = node(&[(REGISTER, &register), (SCORE, score)]);
            let again = parse_again(&after, &before, &cards);
            assert_eq!(again, parse(&after), "{what}");
            if let Ok(Some(devices)) = &again {
                let kept =
                    std::sync::Arc::ptr_eq(&devices[0].pair_scores, &cards[0].info.pair_scores);
                assert_eq!(kept, shared, "{what}");
            }
        }
        // Another vendor's card with the same UUID is not this vendor's.
        let mut foreign = cards.clone();
        for c in &mut foreign {
            c.vendor = "VOLCANO";
        }
        let after = node(&[
            (REGISTER, &reg(&[card("GPU-a", false), card("GPU-b", true)])),
            (SCORE, scores),
        ]);
        let again = parse_again(&after, &before, &foreign)
            .expect("parses")
            .expect("cards");
        assert!(!std::sync::Arc::ptr_eq(
            &again[0].pair_scores,
            &cards[0].info.pair_scores
        ));
        assert_eq!(Ok(Some(again)), parse(&after));
    }

    #[test]
    fn handshake_table_h1_h2_h7_h8() {
        let now = parse_local_time("2026-11-28 12:00:00").expect("valid");
        let cases = [
            // (annotation, allocatable, live)
            ("Requesting_2026-11-28 12:00:00", "0", true), // H1: fresh
            ("Requesting_2026-11-28 10:00:00", "0", false), // H2: expired, nothing allocatable
            ("Requesting_2026-11-28 10:00:00", "4", true), // H3/H4: expired but reporting
            ("Requesting", "0", true),                     // H7: no timestamp
            ("Requesting_yesterday", "0", true),           // H7: unparsable
            ("Reported_2026-11-28 10:00:00", "0", true),   // any other value
            ("Requesting_2026-11-28 10:00:00", "8", true), // H8
            // Years past four digits are not Go's layout (and would overflow): unparsable.
            ("Requesting_99999999999999999-01-01 00:00:00", "0", true),
            ("Requesting_-9999999999999999-01-01 00:00:00", "0", true),
            ("Requesting_2026-11-28 -1:00:00", "0", true),
        ];
        for (value, alloc, live) in cases {
            let mut n = node(&[(HANDSHAKE, value)]);
            n.allocatable = vec![("nvidia.com/gpu".into(), alloc.into())];
            assert_eq!(
                Handshake::read(&n, "nvidia.com/gpu").live(now),
                live,
                "{value} with {alloc} allocatable"
            );
        }
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(parse_local_time("2026-11-28 12:00:00"), Some(1_795_867_200));
        assert_eq!(
            parse_local_time("9999-12-31 23:59:60"),
            Some(253_402_300_800)
        );
        assert_eq!(parse_local_time("10000-01-01 00:00:00"), None);
    }

    #[test]
    fn liveness_is_a_deadline_sixty_seconds_after_the_stamp() {
        let t = parse_local_time("2026-11-28 12:00:00").expect("valid");
        let mut n = node(&[(HANDSHAKE, "Requesting_2026-11-28 12:00:00")]);
        let h = Handshake::read(&n, "nvidia.com/gpu");
        assert_eq!(h.liveness(), crate::vendor::Liveness::Until(t + 60));
        assert!(h.live(t + 59) && !h.live(t + 60));
        n.allocatable = vec![("nvidia.com/gpu".into(), "1".into())];
        let h = Handshake::read(&n, "nvidia.com/gpu");
        assert_eq!(h.liveness(), crate::vendor::Liveness::Live);
    }
}
