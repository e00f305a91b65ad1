//! What the non-NVIDIA vendors share (spec hami-vendors.md §1): the UUID and card-type
//! selectors, the JSON and colon registration formats, the handshake rule, reading a
//! container's resources, the allocation codec, and the generic sharing fit "G-Fit" (§1.8).

use serde_json::{Map, Value};

use crate::api::{CardCheck, Container, Invalid, Node, Pod, lookup};
use crate::device::{self, Card, ContainerDevice, DeviceInfo, Placed};
use crate::quantity::{self, QuantityError};
use crate::reason::{self, Counter};
use crate::vendor::nvidia::register::{HANDSHAKE_GRACE_SECONDS, parse_local_time};
use crate::vendor::{Fit, FitContext, Request, Slot};

/// Ascend: a hami-core pod on a node that does not allow soft split.
pub const MODE_NOT_FIT: &str = "ModeNotFit";
/// Mthreads (and MetaX-GPU): the vendor's custom filter refused the card.
pub const CARD_NOT_FOUND_CUSTOM_FILTER_RULE: &str = "CardNotFoundCustomFilterRule";

/// A comma list annotation: trimmed, empty items dropped; `None` when absent or blank.
pub fn list<'a>(pod: &'a Pod, key: &str) -> Option<Vec<&'a str>> {
    let v = pod.annotation(key)?;
    if v.trim().is_empty() {
        return None;
    }
    Some(
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect(),
    )
}

/// HAMi's `CheckUUID` (§1.7): the id must be in the use list (when given) and not in the
/// no-use list (when given). Blank values are no constraint.
pub fn uuid_allowed(pod: &Pod, id: &str, use_key: &str, nouse_key: &str) -> bool {
    list(pod, use_key).is_none_or(|l| l.contains(&id))
        && list(pod, nouse_key).is_none_or(|l| !l.contains(&id))
}

/// HAMi's `CheckType` (§1.7): upper-cased substring match of the card's model against the use
/// list (when given) and the no-use list (when given). A list made only of commas is a present
/// constraint without usable entries: as a use list it rejects every card.
pub fn card_type_allowed(pod: &Pod, model: &str, use_key: &str, nouse_key: &str) -> bool {
    let present = |key: &str| {
        pod.annotation(key)
            .filter(|v| !v.trim().is_empty())
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
            })
    };
    let hit = |items: &[&str]| {
        items
            .iter()
            .any(|t| crate::policy::contains_ignore_case(model, t))
    };
    present(use_key).is_none_or(|l| hit(&l)) && present(nouse_key).is_none_or(|l| !hit(&l))
}

/// One device of a JSON registration with its `custominfo` object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Registered {
    pub info: DeviceInfo,
    pub custom: Map<String, Value>,
}

/// Parses a JSON registration (§1.3): an array of objects whose keys match case-insensitively
/// (`"ID"`, `"Count"` …). `Ok(None)` when the annotation is absent or the list is empty.
pub fn parse_json_registration(node: &Node, key: &str) -> Result<Option<Vec<Registered>>, Invalid> {
    let Some(text) = node.annotation(key) else {
        return Ok(None);
    };
    let object = format!("node/{}", node.name);
    let bad = |m: String| Invalid::new(&object, key, text, m);
    if text.trim().is_empty() {
        return Ok(None);
    }
    let list: Vec<Map<String, Value>> =
        serde_json::from_str(text).map_err(|e| bad(format!("not a device list: {e}")))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, raw) in list.into_iter().enumerate() {
        let obj: Map<String, Value> = raw
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        let field = |name: &str| obj.get(name).filter(|v| !v.is_null());
        let string = |name: &str| -> Result<String, Invalid> {
            match field(name) {
                None => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(v) => Err(bad(format!("device {i}: {name} {v} is not a string"))),
            }
        };
        let int = |name: &str, min: i64, max: i64| -> Result<i64, Invalid> {
            match field(name) {
                None => Ok(0),
                Some(v) => v
                    .as_i64()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| {
                        bad(format!(
                            "device {i}: {name} {v} is not an integer in {min}..={max}"
                        ))
                    }),
            }
        };
        let id = string("id")?;
        if id.is_empty() {
            return Err(bad(format!("device {i} has no id")));
        }
        let health = match field("health") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => return Err(bad(format!("device {id}: health {v} is not a bool"))),
        };
        let custom = match field("custominfo") {
            None => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(v) => return Err(bad(format!("device {id}: custominfo {v} is not an object"))),
        };
        let max = i64::from(i32::MAX);
        let info = DeviceInfo {
            index: int("index", 0, i64::from(u32::MAX))? as u32,
            count: int("count", 0, max)?,
            devmem: int("devmem", 0, max)?,
            devcore: int("devcore", 0, max)?,
            model: string("type")?,
            numa: int("numa", i64::MIN, i64::MAX)?.max(0),
            mode: string("mode")?,
            health,
            id,
            ..DeviceInfo::default()
        };
        out.push(Registered { info, custom });
    }
    Ok((!out.is_empty()).then_some(out))
}

/// A card a registration encoder cannot write: the field would break the format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodeError {
    /// The card's id.
    pub device: String,
    /// The field, as the format names it (`type`, `linkZone`, ...).
    pub field: &'static str,
    pub value: String,
    pub message: String,
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "device {:?}: {} {:?} {}",
            self.device, self.field, self.value, self.message
        )
    }
}

impl std::error::Error for EncodeError {}

/// Encodes cards as a JSON registration (§1.3), what [`parse_json_registration`] reads: one
/// object per card in HAMi's `DeviceInfo` field order (`id, index, count, devmem, devcore,
/// type, numa, mode, health`, then `migProfiles` and `custominfo`), every field left out when
/// zero, false or empty (Go `omitempty`, as HAMi's plugins write it).
///
/// ```
/// # use hamr_guest::{device::DeviceInfo, vendor::common::{Registered, encode_json_registration}};
/// let card = Registered {
///     info: DeviceInfo { id: "7-0".into(), count: 1, devmem: 32768, model: "Biren".into(),
///         health: true, ..DeviceInfo::default() },
///     custom: Default::default(),
/// };
/// assert_eq!(encode_json_registration(&[card]),
///     r#"[{"id":"7-0","count":1,"devmem":32768,"type":"Biren","health":true}]"#);
/// ```
pub fn encode_json_registration(devices: &[Registered]) -> String {
    let objects: Vec<String> = devices
        .iter()
        .map(|r| {
            let d = &r.info;
            // Written field by field: a serde_json `Map` only keeps insertion order with the
            // `preserve_order` feature, and HAMi's order is part of what the test pins.
            let fields: [(&str, Value, bool); 11] = [
                ("id", Value::from(d.id.as_str()), d.id.is_empty()),
                ("index", Value::from(d.index), d.index == 0),
                ("count", Value::from(d.count), d.count == 0),
                ("devmem", Value::from(d.devmem), d.devmem == 0),
                ("devcore", Value::from(d.devcore), d.devcore == 0),
                ("type", Value::from(d.model.as_str()), d.model.is_empty()),
                ("numa", Value::from(d.numa), d.numa == 0),
                ("mode", Value::from(d.mode.as_str()), d.mode.is_empty()),
                ("health", Value::Bool(d.health), !d.health),
                (
                    "migProfiles",
                    serde_json::to_value(&d.mig_profiles).unwrap_or(Value::Null),
                    d.mig_profiles.is_empty(),
                ),
                (
                    "custominfo",
                    Value::Object(r.custom.clone()),
                    r.custom.is_empty(),
                ),
            ];
            let written: Vec<String> = fields
                .into_iter()
                .filter(|(_, _, empty)| !empty)
                .map(|(k, v, _)| format!("{}:{v}", Value::from(k)))
                .collect();
            format!("{{{}}}", written.join(","))
        })
        .collect();
    format!("[{}]", objects.join(","))
}

/// Encodes cards in the colon registration format (§1.3), what
/// [`parse_colon_registration`] reads: always the 9 fields
/// `id,count,devmem,devcore,type,numa,health,index,mode`, each card ended by `:`. A field that
/// holds `,` or `:` cannot be written.
///
/// ```
/// # use hamr_guest::{device::DeviceInfo, vendor::common::encode_colon_registration};
/// let card = DeviceInfo { id: "test-0".into(), count: 1, devmem: 1024, devcore: 100,
///     model: "DCU".into(), health: true, mode: "test".into(), ..DeviceInfo::default() };
/// assert_eq!(encode_colon_registration(&[card]).unwrap(), "test-0,1,1024,100,DCU,0,true,0,test:");
/// ```
pub fn encode_colon_registration(devices: &[DeviceInfo]) -> Result<String, EncodeError> {
    let mut out = String::new();
    for d in devices {
        for (field, value) in [("id", &d.id), ("type", &d.model), ("mode", &d.mode)] {
            if value.contains([',', ':']) {
                return Err(EncodeError {
                    device: d.id.clone(),
                    field,
                    value: value.clone(),
                    message: "holds ',' or ':', the separators of the colon format".into(),
                });
            }
        }
        if d.id.trim().is_empty() {
            return Err(EncodeError {
                device: d.id.clone(),
                field: "id",
                value: d.id.clone(),
                message: "is empty".into(),
            });
        }
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{}:",
            d.id, d.count, d.devmem, d.devcore, d.model, d.numa, d.health, d.index, d.mode
        ));
    }
    Ok(out)
}

/// Parses a colon registration (§1.3, GN-07/08): `id,count,devmem,devcore,type,numa,health`
/// with optional `,index,mode`, devices separated by `:`. `Ok(None)` when absent or empty.
pub fn parse_colon_registration(
    node: &Node,
    key: &str,
) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
    let Some(text) = node.annotation(key) else {
        return Ok(None);
    };
    let object = format!("node/{}", node.name);
    let bad = |m: String| Invalid::new(&object, key, text, m);
    if !text.contains(':') {
        return Err(bad("node annotation missing device separator".to_string()));
    }
    let mut out = Vec::new();
    for segment in text.split(':').filter(|s| !s.trim().is_empty()) {
        let f: Vec<&str> = segment.split(',').map(str::trim).collect();
        if f.len() != 7 && f.len() != 9 {
            return Err(bad(format!(
                "device {segment:?} has {} fields, want 7 or 9",
                f.len()
            )));
        }
        let int = |s: &str, name: &str| -> Result<i64, Invalid> {
            s.parse::<i32>()
                .map(i64::from)
                .map_err(|_| bad(format!("device {}: {name} {s:?} is not an integer", f[0])))
        };
        let health = match f[6].to_ascii_lowercase().as_str() {
            "true" | "1" | "t" => true,
            "false" | "0" | "f" => false,
            _ => {
                return Err(bad(format!(
                    "device {}: health {:?} is not a bool",
                    f[0], f[6]
                )));
            }
        };
        let (index, mode) = if f.len() == 9 {
            let index = f[7]
                .parse::<u32>()
                .map_err(|_| bad(format!("device {}: index {:?} is not >= 0", f[0], f[7])))?;
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
            health,
            ..DeviceInfo::default()
        });
    }
    Ok((!out.is_empty()).then_some(out))
}

/// The handshake rule of §1.7 for `hami.io/node-handshake-<x>`: a `Requesting_<t>` older
/// than 60 s on a node without allocatable `count_resource` means the device plugin is gone.
pub fn handshake_liveness(node: &Node, key: &str, count_resource: &str) -> crate::vendor::Liveness {
    let since = node
        .annotation(key)
        .filter(|v| v.contains("Requesting"))
        .and_then(|v| v.split_once('_'))
        .and_then(|(_, t)| parse_local_time(t.trim()));
    match since {
        Some(t) if node_quantity(&node.allocatable, count_resource) <= 0 => {
            crate::vendor::Liveness::Until(t.saturating_add(HANDSHAKE_GRACE_SECONDS))
        }
        _ => crate::vendor::Liveness::Live,
    }
}

/// A whole-number node quantity (capacity, allocatable); 0 when absent or malformed.
pub fn node_quantity(pairs: &crate::api::Pairs, name: &str) -> i64 {
    lookup(pairs, name)
        .and_then(|q| quantity::parse_integer(q).ok())
        .and_then(|v| i64::try_from(v).ok())
        .unwrap_or(0)
}

/// Reads one container's resources and names the field in errors (HAMi drops a malformed
/// value silently; hamr refuses it, DEVIATIONS.md Q5).
pub struct Resources<'a> {
    pub container: &'a Container,
    pub slot: Slot<'a>,
}

impl<'a> Resources<'a> {
    /// `(field, value)` of `name` from limits, else (unless `limits_only`) requests.
    pub fn get(&self, name: &str, limits_only: bool) -> Option<(String, &'a str)> {
        let (list, v) = self.find(name, limits_only)?;
        Some((self.field(list, name), v))
    }

    /// The value of `name` and the list it is in (`limits`, `requests`). The field's name is
    /// written only for an error: `filter` reads every request on every call.
    pub(crate) fn find(&self, name: &str, limits_only: bool) -> Option<(&'static str, &'a str)> {
        if name.is_empty() {
            return None;
        }
        if let Some(v) = lookup(&self.container.limits, name) {
            return Some(("limits", v));
        }
        if limits_only {
            return None;
        }
        lookup(&self.container.requests, name).map(|v| ("requests", v))
    }

    /// The field's name for an error: `containers[0].limits[nvidia.com/gpumem]`.
    pub(crate) fn field(&self, list: &str, name: &str) -> String {
        self.slot.field(&format!("{list}[{name}]"))
    }

    pub fn in_limits(&self, name: &str) -> bool {
        !name.is_empty() && lookup(&self.container.limits, name).is_some()
    }

    /// Parses `name` as a whole number within `min..=max`, naming the field otherwise.
    pub fn integer(
        &self,
        name: &str,
        min: i64,
        max: i64,
        limits_only: bool,
    ) -> Result<Option<i64>, Invalid> {
        let Some((list, value)) = self.find(name, limits_only) else {
            return Ok(None);
        };
        let bad = |m: String| Invalid::new(self.slot.object, self.field(list, name), value, m);
        let n = quantity::parse_integer(value).map_err(|e| {
            bad(match e {
                QuantityError::NotInteger => "must be a whole number".to_string(),
                other => other.to_string(),
            })
        })?;
        if n < i128::from(min) || n > i128::from(max) {
            return Err(bad(format!("must be between {min} and {max}")));
        }
        Ok(Some(n as i64))
    }

    /// An error about `name` (which must be present).
    pub fn invalid(&self, name: &str, message: impl Into<String>) -> Invalid {
        let (field, value) = self
            .get(name, false)
            .unwrap_or_else(|| (self.slot.field(&format!("limits[{name}]")), ""));
        Invalid::new(self.slot.object, field, value, message)
    }
}

/// Decodes a placed pod's devices from `key`, typing them with `vendor`.
pub fn decode_allocated(pod: &Pod, key: &str, vendor: &str) -> Result<Option<Placed>, Invalid> {
    let Some(text) = pod.annotation(key) else {
        return Ok(None);
    };
    let mut devices =
        device::decode(text).map_err(|e| Invalid::new(pod.object(), key, text, e.to_string()))?;
    devices
        .iter_mut()
        .flatten()
        .for_each(|d| d.vendor = vendor.to_string());
    Ok(Some(Placed {
        devices,
        stray_slices: Vec::new(),
    }))
}

/// Records one card check for `explain`; `detail` is only formatted when explaining.
pub fn note(
    ctx: &FitContext<'_>,
    vendor: &str,
    card: &Card,
    reason: &str,
    detail: &dyn Fn() -> String,
) {
    if let Some(cell) = ctx.explain {
        cell.borrow_mut().push(CardCheck {
            container: ctx.position,
            vendor: vendor.to_string(),
            uuid: card.info.id.clone(),
            index: card.info.index,
            reason: reason.to_string(),
            detail: detail(),
        });
    }
}

/// The checks every vendor starts with: health (§1.8 step 1), then the device cordon
/// (`hami.io/device-cordon`, hamr's addition for every vendor). Counts and notes the failure.
pub fn unusable(ctx: &FitContext<'_>, vendor: &str, card: &Card, counter: &mut Counter) -> bool {
    if !card.healthy() {
        counter.add(reason::CARD_NOT_HEALTH);
        note(ctx, vendor, card, reason::CARD_NOT_HEALTH, &|| {
            "card is unhealthy".into()
        });
        return true;
    }
    if card.cordoned {
        counter.add(reason::CARD_CORDONED);
        note(ctx, vendor, card, reason::CARD_CORDONED, &|| {
            "listed in hami.io/device-cordon".into()
        });
        return true;
    }
    false
}

/// The knobs of G-Fit that differ between vendors (spec §17 item 2).
pub struct Sharing<'a> {
    /// The common word: the only request type this backend takes, also the type written.
    pub vendor: &'static str,
    /// UUID selector keys (`use`, `nouse`).
    pub uuid_keys: (&'a str, &'a str),
    /// Card-type selector keys (Hygon), matched with [`card_type_allowed`].
    pub type_keys: Option<(&'a str, &'a str)>,
    /// Check the namespace quota per card (Cambricon, step 9).
    pub quota: bool,
    /// Keep the pod on one card: every device given to earlier containers for this vendor
    /// must be the candidate itself (Mthreads' custom filter, A11).
    pub same_card: bool,
    /// Collect every fitting card instead of stopping at `nums` (Ascend topology and 910C).
    pub collect_all: bool,
    /// Use this as every card's total cores (Ascend hami-core: 100).
    pub total_core: Option<i64>,
}

/// The result of a G-Fit walk: the picked devices with their cards, in pick order.
pub struct Walk<'c> {
    pub picked: Vec<(ContainerDevice, &'c Card)>,
    pub counter: Counter,
    /// `nums` cards were picked before the walk ended (never set with `collect_all`).
    pub done: bool,
}

impl Walk<'_> {
    /// G-Fit's ending: success when done, else `AllocatedCardsInsufficientRequest` set to the
    /// number picked.
    pub fn finish(mut self) -> Fit {
        if self.done {
            return Fit::Fits(self.picked.into_iter().map(|(d, _)| d).collect());
        }
        if !self.picked.is_empty() {
            self.counter.set(
                reason::ALLOCATED_CARDS_INSUFFICIENT_REQUEST,
                self.picked.len() as u32,
            );
        }
        Fit::NoFit(self.counter)
    }
}

/// The generic sharing fit (§1.8), walking `cards` backward.
///
/// Worked example (AS-09): two idle cards of 128 MiB / 100 cores, a request of 1 × 64 MiB and
/// 50 cores: the last card (`dev-1`) is tried first and fits, so the pick is `[dev-1]`.
pub fn gfit<'c>(
    cards: &[&'c Card],
    request: &Request,
    ctx: &FitContext<'_>,
    s: &Sharing<'_>,
) -> Walk<'c> {
    let pod = ctx.pod;
    let mut counter = Counter::default();
    let mut picked: Vec<(ContainerDevice, &'c Card)> = Vec::new();
    let mut nums = request.nums;
    let mut coresreq = request.coresreq;
    let earlier: Vec<&str> = if s.same_card {
        ctx.earlier
            .iter()
            .filter(|(_, d)| d.vendor == s.vendor)
            .map(|(_, d)| d.uuid.as_str())
            .collect()
    } else {
        Vec::new()
    };
    for &card in cards.iter().rev() {
        let d = &card.info;
        if unusable(ctx, s.vendor, card, &mut counter) {
            continue;
        }
        let mut fail = |r: &'static str, detail: &dyn Fn() -> String| {
            counter.add(r);
            note(ctx, s.vendor, card, r, detail);
        };
        let type_ok = request.vendor == s.vendor
            && s.type_keys
                .is_none_or(|(u, n)| card_type_allowed(pod, &d.model, u, n));
        if !type_ok {
            fail(reason::CARD_TYPE_MISMATCH, &|| {
                format!("model {:?} excluded by the pod's type selectors", d.model)
            });
            continue;
        }
        if !uuid_allowed(pod, &d.id, s.uuid_keys.0, s.uuid_keys.1) {
            fail(reason::CARD_UUID_MISMATCH, &|| {
                format!("excluded by {} / {}", s.uuid_keys.0, s.uuid_keys.1)
            });
            continue;
        }
        if d.count <= card.used {
            fail(reason::CARD_TIME_SLICING_EXHAUSTED, &|| {
                format!("all {} slots in use", d.count)
            });
            continue;
        }
        if ctx.policy.is_mutex && card.used > 0 {
            fail(reason::EXCLUSIVE_DEVICE_ALLOCATE_CONFLICT, &|| {
                format!("mutex policy, {} tasks on the card", card.used)
            });
            continue;
        }
        coresreq = coresreq.min(100);
        let memreq = if request.memreq > 0 {
            request.memreq
        } else if request.mem_pct != 101 {
            d.devmem * request.mem_pct / 100
        } else {
            0
        };
        let tmp: Vec<ContainerDevice> = picked.iter().map(|(d, _)| d.clone()).collect();
        if s.quota && !(ctx.quota)(&tmp, &d.id, memreq, coresreq) {
            fail(reason::RESOURCE_QUOTA_NOT_FIT, &|| {
                format!("{memreq} MiB / {coresreq} cores would exceed the namespace quota")
            });
            continue;
        }
        let free_mem = d.devmem - card.used_mem;
        if free_mem < memreq {
            fail(reason::CARD_INSUFFICIENT_MEMORY, &|| {
                format!("asked {memreq} MiB, free {free_mem} of {} MiB", d.devmem)
            });
            continue;
        }
        let total_core = s.total_core.unwrap_or(d.devcore);
        let free_cores = total_core - card.used_cores;
        if free_cores < coresreq {
            fail(reason::CARD_INSUFFICIENT_CORE, &|| {
                format!("asked {coresreq} cores, free {free_cores} of {total_core}")
            });
            continue;
        }
        if total_core == 100 && coresreq == 100 && card.used > 0 {
            fail(reason::EXCLUSIVE_DEVICE_ALLOCATE_CONFLICT, &|| {
                format!("whole-card request, {} tasks on the card", card.used)
            });
            continue;
        }
        if total_core != 0 && card.used_cores == total_core && coresreq == 0 {
            fail(reason::CARD_COMPUTE_UNITS_EXHAUSTED, &|| {
                format!("0-core request, all {total_core} cores booked")
            });
            continue;
        }
        if s.same_card && earlier.iter().any(|u| *u != d.id) {
            fail(CARD_NOT_FOUND_CUSTOM_FILTER_RULE, &|| {
                "the pod's earlier containers hold another card".into()
            });
            continue;
        }
        note(ctx, s.vendor, card, "", &|| {
            format!(
                "fits: asked {memreq} MiB and {coresreq} cores, free {free_mem} MiB and {free_cores} cores"
            )
        });
        picked.push((
            ContainerDevice {
                uuid: d.id.clone(),
                vendor: s.vendor.to_string(),
                mem: memreq,
                cores: coresreq,
                index: d.index,
                mig: None,
            },
            card,
        ));
        if !s.collect_all {
            nums -= 1;
            if nums <= 0 {
                return Walk {
                    picked,
                    counter,
                    done: true,
                };
            }
        }
    }
    Walk {
        picked,
        counter,
        done: false,
    }
}

#[cfg(test)]
mod tests;

/// The slot-only walk of Biren and VastAI (§11, §13): health, cordon, type, UUID, slots,
/// mutex (plus `busy`, VastAI's die rule), then pick with no memory or cores. Stops at `nums`
/// unless `collect_all`.
pub fn slot_walk<'c>(
    cards: &[&'c Card],
    request: &Request,
    ctx: &FitContext<'_>,
    vendor: &'static str,
    uuid_keys: (&str, &str),
    collect_all: bool,
    busy: &dyn Fn(&Card) -> bool,
) -> Walk<'c> {
    let mut counter = Counter::default();
    let mut picked = Vec::new();
    let mut nums = request.nums;
    for &card in cards.iter().rev() {
        let d = &card.info;
        if unusable(ctx, vendor, card, &mut counter) {
            continue;
        }
        let mut fail = |r: &'static str, detail: &dyn Fn() -> String| {
            counter.add(r);
            note(ctx, vendor, card, r, detail);
        };
        if request.vendor != vendor {
            fail(reason::CARD_TYPE_MISMATCH, &|| {
                format!("request type {}", request.vendor)
            });
            continue;
        }
        if !uuid_allowed(ctx.pod, &d.id, uuid_keys.0, uuid_keys.1) {
            fail(reason::CARD_UUID_MISMATCH, &|| {
                format!("excluded by {} / {}", uuid_keys.0, uuid_keys.1)
            });
            continue;
        }
        if d.count <= card.used {
            fail(reason::CARD_TIME_SLICING_EXHAUSTED, &|| {
                format!("all {} slots in use", d.count)
            });
            continue;
        }
        if ctx.policy.is_mutex && (card.used > 0 || busy(card)) {
            fail(reason::EXCLUSIVE_DEVICE_ALLOCATE_CONFLICT, &|| {
                format!("mutex policy, {} tasks on the card or its board", card.used)
            });
            continue;
        }
        note(ctx, vendor, card, "", &|| "fits".into());
        picked.push((
            ContainerDevice {
                uuid: d.id.clone(),
                vendor: vendor.to_string(),
                mem: 0,
                cores: 0,
                index: d.index,
                mig: None,
            },
            card,
        ));
        if !collect_all {
            nums -= 1;
            if nums <= 0 {
                return Walk {
                    picked,
                    counter,
                    done: true,
                };
            }
        }
    }
    Walk {
        picked,
        counter,
        done: false,
    }
}

/// Fills `nums` devices from the largest groups first (`group` of each picked device; devices
/// without a group are left out); equal groups by their lowest device index (A2), collection
/// order inside a group.
pub fn fill_by_group<K: PartialEq>(
    picked: Vec<ContainerDevice>,
    group: impl Fn(&ContainerDevice) -> Option<K>,
    nums: usize,
) -> Vec<ContainerDevice> {
    let mut groups: Vec<(K, Vec<ContainerDevice>)> = Vec::new();
    for d in picked {
        let Some(k) = group(&d) else {
            continue;
        };
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, l)) => l.push(d),
            None => groups.push((k, vec![d])),
        }
    }
    let low = |g: &[ContainerDevice]| g.iter().map(|d| d.index).min().unwrap_or(u32::MAX);
    groups.sort_by(|a, b| {
        b.1.len()
            .cmp(&a.1.len())
            .then_with(|| low(&a.1).cmp(&low(&b.1)))
    });
    groups.into_iter().flat_map(|(_, g)| g).take(nums).collect()
}

/// The share of a container's devices in its largest group; `None` when a device has none.
pub fn largest_group_share<K: PartialEq>(
    container: &[ContainerDevice],
    group: impl Fn(&ContainerDevice) -> Option<K>,
) -> Option<f64> {
    let mut sizes: Vec<(K, usize)> = Vec::new();
    for d in container {
        let k = group(d)?;
        match sizes.iter_mut().find(|(g, _)| *g == k) {
            Some((_, s)) => *s += 1,
            None => sizes.push((k, 1)),
        }
    }
    let largest = sizes.iter().map(|(_, s)| *s).max().unwrap_or(0);
    Some(largest as f64 / container.len().max(1) as f64)
}

/// A vendor's two allocation keys with the same encoded value.
pub fn allocation_pairs(
    to_allocate: &str,
    allocated: &str,
    devices: &crate::device::PodDevices,
) -> crate::api::Pairs {
    let encoded = device::encode(devices);
    vec![
        (to_allocate.to_string(), encoded.clone()),
        (allocated.to_string(), encoded),
    ]
}
