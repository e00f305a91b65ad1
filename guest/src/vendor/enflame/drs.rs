//! Enflame DRS profile slicing (spec §4.2): the capacity registration, profile names, profile
//! choice and the fit.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::api::{Invalid, Node};
use crate::device::{Card, ContainerDevice, DeviceInfo};
use crate::reason::{self, Counter};
use crate::vendor::kit;
use crate::vendor::{Fit, FitContext, Request};

use super::{DRS_CAPACITY, KIND, KIND_DRS, MODE_DRS_DIRECT, NOUSE_UUID, SHARED_VENDOR, USE_UUID};

/// `<size>g.<mem>gb`, case-insensitive: `None` without a `.` or with a non-numeric size; a
/// non-numeric memory part is 0.
pub fn parse_profile(name: &str) -> Option<(i64, i64)> {
    let lower = name.to_ascii_lowercase();
    let (size, mem) = lower.split_once('.')?;
    let size: i64 = size.strip_suffix('g').unwrap_or(size).parse().ok()?;
    let mem = mem.strip_suffix("gb").unwrap_or(mem).parse().unwrap_or(0);
    Some((size, mem))
}

/// A profile a card can host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub id: String,
    pub size: i64,
    pub mem_gb: i64,
    pub core_percent: i64,
}

/// Parses `enflame.com/gcu-drs-capacity` (EF-01: capacity 6 with 1g.6gb, 3g.20gb, 6g.40gb
/// gives count 6 and 40960 MiB).
pub fn registration(node: &Node, text: &str) -> Result<Vec<DeviceInfo>, Invalid> {
    let bad = |m: String| Invalid::new(format!("node/{}", node.name), DRS_CAPACITY, text, m);
    let value: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let value = kit::lower_keys(value);
    let mut profiles: BTreeMap<String, String> = BTreeMap::new();
    if let Some(Value::Object(map)) = value.get("profiles") {
        for (name, id) in map {
            let id = match id {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            profiles.insert(name.clone(), id);
        }
    }
    let parsed: Vec<(i64, i64)> = profiles.keys().filter_map(|n| parse_profile(n)).collect();
    let max_slice = parsed.iter().map(|p| p.0).max().unwrap_or(0);
    if max_slice <= 0 {
        return Err(bad("no profile with a positive size".into()));
    }
    let mut max_mem = parsed.iter().map(|p| p.1).max().unwrap_or(0);
    if max_mem <= 0 {
        max_mem = max_slice;
    }
    let devmem = max_mem.saturating_mul(1024).min(i64::from(i32::MAX));
    let profiles_json = serde_json::to_string(&profiles).unwrap_or_default();
    let empty = Vec::new();
    let devices = value
        .get("devices")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let mut out = Vec::with_capacity(devices.len());
    for (k, d) in devices.iter().enumerate() {
        let text_or_number = |key: &str| match d.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let index: u32 = text_or_number("index")
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(k as u32);
        let capacity = match d.get("capacity") {
            Some(Value::Number(n)) => n
                .as_i64()
                .filter(|v| i32::try_from(*v).is_ok())
                .ok_or_else(|| bad(format!("device {k}: capacity {n} is not a 32-bit integer")))?,
            Some(Value::String(s)) => match s.trim().parse::<i128>() {
                Ok(v) => v.min(i128::from(i32::MAX)) as i64,
                Err(_) => return Err(bad(format!("device {k}: capacity {s:?} is not a number"))),
            },
            _ => return Err(bad(format!("device {k}: capacity is missing"))),
        };
        if capacity <= 0 {
            return Err(bad(format!(
                "device {k}: capacity {capacity} is not positive"
            )));
        }
        let minor = text_or_number("minor").unwrap_or_else(|| index.to_string());
        let mut info = DeviceInfo {
            id: format!("{}-enflame-drs-{index}", node.name),
            index,
            count: capacity,
            devmem,
            devcore: 100,
            model: SHARED_VENDOR.to_string(),
            health: true,
            ..DeviceInfo::default()
        };
        info.custom.insert(KIND.into(), KIND_DRS.into());
        info.custom.insert("minor".into(), minor);
        info.custom.insert("index".into(), index.to_string());
        info.custom.insert("profiles".into(), profiles_json.clone());
        info.custom.insert("maxslice".into(), max_slice.to_string());
        out.push(info);
    }
    Ok(out)
}

/// One card of `enflame.com/gcu-drs-capacity` as a device plugin writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrsCard {
    pub index: u32,
    pub minor: String,
    /// DRS slices the card holds (the registered `count`).
    pub capacity: i64,
}

/// Encodes `enflame.com/gcu-drs-capacity`, what [`registration`] reads: the cards (`index`
/// and `minor` as strings, `capacity` as a number) and the node's profile names with their
/// ids.
///
/// ```
/// # use hamr_guest::vendor::enflame::drs::{DrsCard, encode_registration};
/// let profiles = [("1g.6gb".to_string(), "0".to_string())].into_iter().collect();
/// let card = DrsCard { index: 0, minor: "0".into(), capacity: 6 };
/// assert_eq!(encode_registration(&[card], &profiles),
///     r#"{"devices":[{"index":"0","minor":"0","capacity":6}],"profiles":{"1g.6gb":"0"}}"#);
/// ```
pub fn encode_registration(cards: &[DrsCard], profiles: &BTreeMap<String, String>) -> String {
    let devices: Vec<String> = cards
        .iter()
        .map(|c| {
            format!(
                "{{\"index\":{},\"minor\":{},\"capacity\":{}}}",
                Value::from(c.index.to_string()),
                Value::from(c.minor.as_str()),
                c.capacity
            )
        })
        .collect();
    let profiles = serde_json::to_string(profiles).unwrap_or_else(|_| "{}".into());
    format!(
        "{{\"devices\":[{}],\"profiles\":{profiles}}}",
        devices.join(",")
    )
}

/// The candidate profiles of the cards, de-duplicated by name, by size then memory.
pub fn candidates(cards: &[&Card]) -> Vec<Profile> {
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut max_slice = 0i64;
    for c in cards {
        if let Some(p) = c.info.custom.get("profiles")
            && let Ok(map) = serde_json::from_str::<BTreeMap<String, String>>(p)
        {
            for (k, v) in map {
                names.entry(k).or_insert(v);
            }
        }
        if let Some(m) = c.info.custom.get("maxslice").and_then(|m| m.parse().ok()) {
            max_slice = max_slice.max(m);
        }
    }
    if max_slice <= 0 {
        max_slice = names
            .keys()
            .filter_map(|n| parse_profile(n))
            .map(|p| p.0)
            .max()
            .unwrap_or(0);
    }
    let mut out: Vec<Profile> = names
        .into_iter()
        .filter_map(|(name, id)| {
            let (size, mem_gb) = parse_profile(&name)?;
            (size > 0 && mem_gb > 0 && max_slice > 0).then(|| Profile {
                core_percent: ceil_div(i128::from(size) * 100, i128::from(max_slice)) as i64,
                name,
                id,
                size,
                mem_gb,
            })
        })
        .collect();
    out.sort_by(|a, b| a.size.cmp(&b.size).then(a.mem_gb.cmp(&b.mem_gb)));
    out
}

/// `⌈a / b⌉` for a positive `b`.
fn ceil_div(a: i128, b: i128) -> i128 {
    (a + b - 1).div_euclid(b)
}

/// The requested memory in GB: MiB when above twice the largest profile, else GB.
pub fn requested_gb(memreq: i64, max_mem_gb: i64) -> i64 {
    if memreq <= 0 {
        0
    } else if memreq > 2 * max_mem_gb {
        ceil_div(i128::from(memreq), 1024) as i64
    } else {
        memreq
    }
}

/// Chooses the profile for a request (direct: by size; by spec: memory and cores).
pub fn choose(profiles: &[Profile], request: &Request) -> Option<Profile> {
    let p = if request.mem_pct == MODE_DRS_DIRECT {
        profiles.iter().find(|p| p.size == request.memreq)?
    } else {
        let max_mem = profiles.last()?.mem_gb;
        let gb = requested_gb(request.memreq, max_mem);
        profiles.iter().find(|p| {
            (gb <= 0 || p.mem_gb >= gb)
                && (request.coresreq <= 0 || p.core_percent >= request.coresreq)
        })?
    };
    let max = i64::from(i32::MAX);
    let ok = (1..=max).contains(&p.size)
        && p.mem_gb > 0
        && p.mem_gb < max / 1024
        && p.core_percent <= max;
    ok.then(|| p.clone())
}

/// One DRS instance per container (ambiguity A19): the profile, then the backward walk.
pub fn fit(cards: &[&Card], request: &Request, ctx: &FitContext<'_>) -> Fit {
    let Some(profile) = choose(&candidates(cards), request) else {
        let mut c = Counter::default();
        c.add(super::MODE_NOT_FIT);
        return Fit::NoFit(c);
    };
    let mib = profile.mem_gb * 1024;
    let core = profile.core_percent;
    let mut counter = Counter::default();
    for card in cards.iter().rev() {
        let d = &card.info;
        let failure = if let Some(r) = kit::unusable(card, reason::CARD_NOT_HEALTH) {
            Some(r)
        } else if request.vendor != SHARED_VENDOR
            || d.custom.get(KIND).map(String::as_str) != Some(KIND_DRS)
        {
            Some(reason::CARD_TYPE_MISMATCH)
        } else if !kit::uuid_ok(ctx.pod, &d.id, USE_UUID, NOUSE_UUID) {
            Some(reason::CARD_UUID_MISMATCH)
        } else if d.count <= card.used {
            Some(reason::CARD_TIME_SLICING_EXHAUSTED)
        } else if ctx.policy.is_mutex && card.used > 0 {
            Some(reason::EXCLUSIVE_DEVICE_ALLOCATE_CONFLICT)
        } else if d.devmem - card.used_mem < mib {
            Some(reason::CARD_INSUFFICIENT_MEMORY)
        } else if d.devcore > 0 && d.devcore - card.used_cores < core {
            Some(reason::CARD_INSUFFICIENT_CORE)
        } else {
            None
        };
        if let Some(r) = failure {
            kit::reject(&mut counter, ctx, SHARED_VENDOR, card, r, &|| {
                format!("profile {}", profile.name)
            });
            continue;
        }
        return Fit::Fits(vec![ContainerDevice {
            uuid: d.id.clone(),
            vendor: SHARED_VENDOR.to_string(),
            mem: mib,
            cores: core,
            index: d.index,
            mig: None,
        }]);
    }
    Fit::NoFit(counter)
}

/// The profile a placed device holds on its card: the one with its memory and cores.
pub fn profile_of(card: &Card, device: &ContainerDevice) -> Option<Profile> {
    candidates(&[card])
        .into_iter()
        .find(|p| p.mem_gb * 1024 == device.mem && p.core_percent == device.cores)
}
