//! `Metax-SGPU` (spec §2.2): shared cards registered as JSON, limits-only requests, the
//! pod-level admission rules (app class, QoS default), the three-stage fit (filter, MetaXLink or
//! online prioritisation, result) and the policy-neutral node score.

use std::sync::Arc;

use serde_json::Value;

use crate::api::{Container, ContainerRef, Invalid, Mutation, Node, Pairs, Pod};
use crate::config::Config;
use crate::device::{self, Card, ContainerDevice, DeviceInfo, Placed, PodDevices};
use crate::policy::{NodePolicy, parse_go_bool};
use crate::reason::{self, Counter};
use crate::vendor::kit;
use crate::vendor::{DecisionContext, Fit, FitContext, Request, ScoreContext, Slot, Vendor};

use super::*;

/// The shared sGPU MetaX backend.
pub struct MetaxSgpu;

/// The pod's app class: `online`, `offline`, or empty.
fn app_class(pod: &Pod) -> &str {
    pod.annotation(APP_CLASS)
        .filter(|c| matches!(*c, "online" | "offline"))
        .unwrap_or("")
}

/// The QoS a pod asks for; pods that did not pass admission count as the default.
fn pod_qos(pod: &Pod) -> &str {
    pod.annotation(QOS_POLICY).unwrap_or(QOS_VALUES[0])
}

/// A card tag is `<class>|<qos>`; `<qos>` is `-` for online pods (they set no QoS) and empty
/// for exclusive (100-core) devices.
fn tag_parts(tag: &str) -> (&str, Option<&str>) {
    let (class, qos) = tag.split_once('|').unwrap_or(("", "-"));
    (class, (qos != "-").then_some(qos))
}

/// The card's QoS identity: the expected QoS of the last non-online pod booked on it, else the
/// registered `qosPolicy` (spec §2.2 "QoS identity"; the jittery cache made deterministic).
pub fn card_qos(card: &Card) -> &str {
    card.tags
        .iter()
        .rev()
        .find_map(|t| tag_parts(t).1)
        .unwrap_or_else(|| card.info.custom.get("qospolicy").map_or("", String::as_str))
}

/// `checkDeviceQos`: idle cards and exclusive requests pass; else the card's QoS is empty or
/// the pod's.
pub fn qos_ok(card: &Card, req_qos: &str, request: &Request) -> bool {
    if card.used == 0 || request.coresreq == 100 {
        return true;
    }
    let q = card_qos(card);
    q.is_empty() || q == req_qos
}

/// `checkAppClass`: idle cards accept any pod; classed pods only join classed pods, plain pods
/// plain ones, and an offline pod never joins an online one.
pub fn app_class_ok(card: &Card, class: &str) -> bool {
    if card.used == 0 {
        return true;
    }
    let classes: Vec<&str> = card.tags.iter().map(|t| tag_parts(t).0).collect();
    let dev_classed = classes.iter().any(|c| matches!(*c, "online" | "offline"));
    if class == "offline" && classes.contains(&"online") {
        return false;
    }
    dev_classed != class.is_empty()
}

/// The card's MetaXLink zone (`linkZone`, 0 when absent).
pub fn link_zone(card: &Card) -> i64 {
    card.info
        .custom
        .get("linkzone")
        .and_then(|z| z.parse().ok())
        .unwrap_or(0)
}

/// (online, offline) pods on the card.
fn class_counts(card: &Card) -> (i64, i64) {
    card.tags
        .iter()
        .fold((0, 0), |(on, off), t| match tag_parts(t).0 {
            "online" => (on + 1, off),
            "offline" => (on, off + 1),
            _ => (on, off),
        })
}

/// `prioritizeExclusiveDevices`: the smallest link zone that holds `require` cards, else link
/// zones in ascending size, else cards of unknown topology. Equal-size zones are ordered by
/// their lowest card index (ambiguity A2). Returns positions into `cands`.
pub fn by_link_zone(cands: &[&Card], require: usize) -> Vec<usize> {
    let mut zones: Vec<(i64, Vec<usize>)> = Vec::new();
    let mut no_link = Vec::new();
    for (i, c) in cands.iter().enumerate() {
        let z = link_zone(c);
        if z <= 0 {
            no_link.push(i);
        } else if let Some((_, members)) = zones.iter_mut().find(|(zone, _)| *zone == z) {
            members.push(i);
        } else {
            zones.push((z, vec![i]));
        }
    }
    let lowest = |m: &[usize]| m.iter().map(|&i| cands[i].info.index).min().unwrap_or(0);
    zones.sort_by(|a, b| {
        a.1.len()
            .cmp(&b.1.len())
            .then_with(|| lowest(&a.1).cmp(&lowest(&b.1)))
    });
    if let Some((_, m)) = zones.iter().find(|(_, m)| m.len() >= require) {
        return m[..require].to_vec();
    }
    let mut out: Vec<usize> = Vec::new();
    for i in zones.iter().flat_map(|(_, m)| m.iter()).chain(&no_link) {
        out.push(*i);
        if out.len() == require {
            return out;
        }
    }
    (0..require.min(cands.len())).collect()
}

/// `prioritizeOnlineDevices`: cards with only offline pods last (fewer first), else fewer
/// online pods, then fewer offline pods. Returns positions into `cands`.
pub fn by_online_load(cands: &[&Card], require: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..cands.len()).collect();
    order.sort_by(|&a, &b| {
        let (on_a, off_a) = class_counts(cands[a]);
        let (on_b, off_b) = class_counts(cands[b]);
        let only_off = |on: i64, off: i64| off > 0 && on == 0;
        match (only_off(on_a, off_a), only_off(on_b, off_b)) {
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            (true, true) => off_a.cmp(&off_b),
            (false, false) => on_a.cmp(&on_b).then(off_a.cmp(&off_b)),
        }
    });
    order.truncate(require);
    order
}

fn registration(node: &Node, text: &str) -> Result<Vec<DeviceInfo>, Invalid> {
    let bad = |m: String| Invalid::new(format!("node/{}", node.name), REGISTER, text, m);
    let value: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let Value::Array(items) = kit::lower_keys(value) else {
        return Err(bad("want a JSON array of devices".into()));
    };
    let mut out = Vec::with_capacity(items.len());
    for (k, item) in items.iter().enumerate() {
        let int = |key: &str| -> Result<i64, Invalid> {
            match item.get(key) {
                None | Some(Value::Null) => Ok(0),
                Some(v) => v
                    .as_i64()
                    .filter(|n| i32::try_from(*n).is_ok())
                    .ok_or_else(|| bad(format!("device {k}: {key} is not a 32-bit integer"))),
            }
        };
        let text_of = |key: &str| item.get(key).and_then(Value::as_str).unwrap_or_default();
        let uuid = text_of("uuid");
        if uuid.is_empty() {
            return Err(bad(format!("device {k} has no uuid")));
        }
        let mut info = DeviceInfo {
            id: uuid.to_string(),
            index: k as u32,
            count: int("totaldevcount")?,
            devmem: int("totalvram")?,
            devcore: int("totalcompute")?,
            model: SGPU_VENDOR.to_string(),
            numa: int("numa")?,
            health: item
                .get("healthy")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            ..DeviceInfo::default()
        };
        info.custom
            .insert("qospolicy".into(), text_of("qospolicy").to_string());
        info.custom.insert("model".into(), text_of("model").into());
        info.custom
            .insert("linkzone".into(), int("linkzone")?.to_string());
        out.push(info);
    }
    Ok(out)
}

/// Encodes cards as `metax-tech.com/node-gpu-devices`, what [`MetaxSgpu`]'s parser reads: per
/// card, in list order (the parser takes the position as the index), `uuid`, `bdf` (the
/// `custom` key `bdf`, left out when absent), `model`, `totalDevCount` (count),
/// `totalCompute` (devcore), `totalVRam` (devmem), `numa`, `healthy`, `qosPolicy` and
/// `linkZone` (the `custom` keys the parser fills, `qospolicy`, `model`, `linkzone`; an empty
/// QoS is left out, a link zone must be a 32-bit integer).
///
/// ```
/// # use hamr_guest::{device::DeviceInfo, vendor::metax::sgpu::encode_registration};
/// let mut card = DeviceInfo { id: "GPU-123".into(), count: 16, devcore: 100, devmem: 32768,
///     numa: 1, health: true, ..DeviceInfo::default() };
/// card.custom.insert("qospolicy".into(), "fixed-share".into());
/// card.custom.insert("linkzone".into(), "1".into());
/// assert_eq!(encode_registration(&[card]).unwrap(),
///     r#"[{"uuid":"GPU-123","model":"","totalDevCount":16,"totalCompute":100,"totalVRam":32768,"numa":1,"healthy":true,"qosPolicy":"fixed-share","linkZone":1}]"#);
/// ```
pub fn encode_registration(
    devices: &[DeviceInfo],
) -> Result<String, crate::vendor::common::EncodeError> {
    let mut objects = Vec::with_capacity(devices.len());
    for d in devices {
        let bad =
            |field: &'static str, value: &str, message: &str| crate::vendor::common::EncodeError {
                device: d.id.clone(),
                field,
                value: value.to_string(),
                message: message.to_string(),
            };
        if d.id.is_empty() {
            return Err(bad("uuid", "", "is empty"));
        }
        let text = |k: &str| d.custom.get(k).map_or("", String::as_str);
        let link_zone = match text("linkzone") {
            "" => 0,
            z => z
                .trim()
                .parse::<i32>()
                .map_err(|_| bad("linkZone", z, "is not a 32-bit integer"))?,
        };
        let mut fields = vec![format!("\"uuid\":{}", Value::from(d.id.as_str()))];
        if let Some(bdf) = d.custom.get("bdf") {
            fields.push(format!("\"bdf\":{}", Value::from(bdf.as_str())));
        }
        fields.push(format!("\"model\":{}", Value::from(text("model"))));
        fields.push(format!("\"totalDevCount\":{}", d.count));
        fields.push(format!("\"totalCompute\":{}", d.devcore));
        fields.push(format!("\"totalVRam\":{}", d.devmem));
        fields.push(format!("\"numa\":{}", d.numa));
        fields.push(format!("\"healthy\":{}", d.health));
        if !text("qospolicy").is_empty() {
            fields.push(format!("\"qosPolicy\":{}", Value::from(text("qospolicy"))));
        }
        fields.push(format!("\"linkZone\":{link_zone}"));
        objects.push(format!("{{{}}}", fields.join(",")));
    }
    Ok(format!("[{}]", objects.join(",")))
}

/// Whether a quantity string carries a unit (any letter), as opposed to a plain GiB count.
fn has_unit(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_alphabetic())
}

impl Vendor for MetaxSgpu {
    fn key(&self) -> &'static str {
        SGPU_VENDOR
    }

    fn managed_resources(&self, _config: &Config) -> Vec<String> {
        [SGPU_RESOURCE, VCORE_RESOURCE, VMEMORY_RESOURCE]
            .map(String::from)
            .to_vec()
    }

    fn parse_node(&self, node: &Node) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
        match node.annotation(REGISTER) {
            None => Ok(None),
            Some(text) => {
                let devices = registration(node, text)?;
                Ok((!devices.is_empty()).then_some(devices))
            }
        }
    }

    fn liveness(&self, _node: &Node, _config: &Config) -> crate::vendor::Liveness {
        crate::vendor::Liveness::Live
    }

    /// Limits only (ambiguity A16): count 1..2^31−1, vcore default 100, vmemory in GiB when
    /// plain (`16` → 16384 MiB) or bytes with a unit (`1024Mi` → 1024 MiB); no memory means
    /// the whole card. Out-of-range values are refused (HAMi drops the request).
    fn request(
        &self,
        container: &Container,
        slot: Slot<'_>,
        _config: &Config,
    ) -> Result<Option<Request>, Invalid> {
        let Some(n) = kit::int_resource(container, SGPU_RESOURCE, false, slot)? else {
            return Ok(None);
        };
        let max = i128::from(i32::MAX);
        if !(1..=max).contains(&n) {
            return Err(kit::bad_resource(
                slot,
                SGPU_RESOURCE,
                n,
                "must be a card count between 1 and 2147483647",
            ));
        }
        let core = kit::int_resource(container, VCORE_RESOURCE, false, slot)?.unwrap_or(100);
        if !(0..=max).contains(&core) {
            return Err(kit::bad_resource(
                slot,
                VCORE_RESOURCE,
                core,
                "must be between 0 and 2147483647",
            ));
        }
        let mut mem = 0i128;
        if let Some(v) = kit::int_resource(container, VMEMORY_RESOURCE, false, slot)? {
            let raw = crate::api::lookup(&container.limits, VMEMORY_RESOURCE).unwrap_or("");
            mem = if has_unit(raw) {
                v / (1024 * 1024)
            } else if (0..=max / 1024).contains(&v) {
                v * 1024
            } else {
                return Err(kit::bad_resource(
                    slot,
                    VMEMORY_RESOURCE,
                    v,
                    "a plain vmemory is GiB and must be between 0 and 2097151",
                ));
            };
            if !(0..=max).contains(&mem) {
                return Err(kit::bad_resource(
                    slot,
                    VMEMORY_RESOURCE,
                    v,
                    "does not fit 2147483647 MiB",
                ));
            }
        }
        Ok(Some(Request {
            vendor: SGPU_VENDOR,
            nums: n as i64,
            memreq: mem as i64,
            mem_pct: if mem == 0 { 100 } else { 0 },
            coresreq: core as i64,
        }))
    }

    fn admit_container(
        &self,
        container: &Container,
        _slot: Slot<'_>,
        _cref: ContainerRef,
        _config: &Config,
    ) -> Result<(bool, Vec<Mutation>), Invalid> {
        Ok((kit::in_limits(container, SGPU_RESOURCE), Vec::new()))
    }

    /// The webhook's pod rules: an app class must be `online` or `offline` and comes with
    /// exactly one sGPU; pods that are not online get `best-effort` when they name no QoS and
    /// must name one of the three values otherwise.
    fn admit_pod(&self, pod: &Pod, _config: &Config) -> Result<(bool, Vec<Mutation>), Invalid> {
        let counts: Vec<&str> = pod
            .all_containers()
            .filter_map(|c| crate::api::lookup(&c.limits, SGPU_RESOURCE))
            .collect();
        if counts.is_empty() {
            return Ok((false, Vec::new()));
        }
        let deny = |key: &str, value: &str, m: &str| Invalid::new(pod.object(), key, value, m);
        let class = pod.annotation(APP_CLASS);
        if let Some(c) = class {
            if !matches!(c, "online" | "offline") {
                return Err(deny(
                    APP_CLASS,
                    c,
                    "metax-tech.com/sgpu-app-class must be set one of [online, offline]",
                ));
            }
            if let Some(n) = counts
                .iter()
                .find(|n| crate::quantity::parse_integer(n) != Ok(1))
            {
                return Err(deny(
                    SGPU_RESOURCE,
                    n,
                    "app-class pod must request single device",
                ));
            }
        }
        let mut mutations = Vec::new();
        if class != Some("online") {
            match pod.annotation(QOS_POLICY) {
                None => mutations.push(Mutation::SetAnnotation((
                    QOS_POLICY.to_string(),
                    QOS_VALUES[0].to_string(),
                ))),
                Some(q) if QOS_VALUES.contains(&q) => {}
                Some(q) => {
                    return Err(deny(
                        QOS_POLICY,
                        q,
                        "metax-tech.com/sgpu-qos-policy must be set one of [best-effort, fixed-share, burst-share]",
                    ));
                }
            }
        }
        Ok((true, mutations))
    }

    fn owns(&self, card: &Card) -> bool {
        card.vendor == SGPU_VENDOR
    }

    /// `limits.metax-tech.com/vmemory` (GiB: MemoryFactor 1024) and `limits.metax-tech.com/vcore`.
    fn quota_resources<'a>(
        &self,
        _config: &'a Config,
    ) -> Option<crate::vendor::QuotaResources<'a>> {
        Some(crate::vendor::QuotaResources {
            memory: VMEMORY_RESOURCE,
            cores: VCORE_RESOURCE,
            memory_factor: 1024,
        })
    }

    fn fit(&self, cards: &[&Card], request: &Request, ctx: &FitContext<'_>) -> Fit {
        fit(cards, request, ctx)
    }

    fn card_tag(&self, pod: &Pod, device: &ContainerDevice) -> Option<Arc<str>> {
        let class = app_class(pod);
        let qos = if class == "online" {
            "-"
        } else if device.cores == 100 {
            ""
        } else {
            pod_qos(pod)
        };
        Some(format!("{class}|{qos}").into())
    }

    fn rank_is_use_only(&self) -> bool {
        false
    }

    /// Policy-neutral: online pods score fewer co-located online pods higher; with topology
    /// awareness, exclusive cards score `10 × allocatedScore − lossScore`; ×10000 under
    /// binpack and ×−10000 under spread, so both prefer the higher raw value.
    fn score_node(&self, ctx: &ScoreContext<'_>) -> f64 {
        let raw = if app_class(ctx.pod) == "online" {
            online_score(ctx)
        } else if topology_aware(ctx) {
            exclusive_score(ctx)
        } else {
            0
        };
        let weight = match ctx.policy {
            NodePolicy::Binpack => 10000.0,
            NodePolicy::Spread => -10000.0,
        };
        raw as f64 * weight
    }

    fn annotations(&self, devices: &PodDevices) -> Pairs {
        let encoded = device::encode(devices);
        // Field order as the MetaX plugin's struct writes it: uuid, compute, vRam.
        let json: Vec<String> = devices
            .iter()
            .map(|c| {
                let items: Vec<String> = c
                    .iter()
                    .map(|d| {
                        let mut item = format!("{{\"uuid\":{}", Value::from(d.uuid.as_str()));
                        if d.cores != 0 {
                            item.push_str(&format!(",\"compute\":{}", d.cores));
                        }
                        if d.mem != 0 {
                            item.push_str(&format!(",\"vRam\":{}", d.mem));
                        }
                        item.push('}');
                        item
                    })
                    .collect();
                format!("[{}]", items.join(","))
            })
            .collect();
        vec![
            (SGPU_TO_ALLOCATE.to_string(), encoded.clone()),
            (SGPU_ALLOCATED.to_string(), encoded),
            (
                GPU_DEVICES_ALLOCATED.to_string(),
                format!("[{}]", json.join(",")),
            ),
        ]
    }

    fn decision_annotations(&self, devices: &PodDevices, ctx: &DecisionContext<'_>) -> Pairs {
        let mut out = self.annotations(devices);
        out.push((
            PREDICATE_TIME.to_string(),
            (i128::from(ctx.now) * 1_000_000_000).to_string(),
        ));
        out
    }

    fn allocated_key(&self) -> &'static str {
        SGPU_ALLOCATED
    }

    fn decode_pod(&self, pod: &Pod) -> Result<Option<Placed>, Invalid> {
        kit::decode_pod(pod, SGPU_ALLOCATED, SGPU_VENDOR)
    }
}

/// Stage 1 (filter, walked from the end), stage 2 (prioritise) and stage 3 (result).
fn fit(cards: &[&Card], request: &Request, ctx: &FitContext<'_>) -> Fit {
    let pod = ctx.pod;
    let class = app_class(pod);
    let online = class == "online";
    let qos = pod_qos(pod);
    let mut counter = Counter::default();
    let mut cands: Vec<&Card> = Vec::new();
    for &card in cards.iter().rev() {
        let d = &card.info;
        let memreq = if request.memreq > 0 {
            request.memreq
        } else {
            d.devmem * request.mem_pct / 100
        };
        let failure: Option<(&'static str, String)> = if request.vendor != SGPU_VENDOR {
            Some((reason::CARD_TYPE_MISMATCH, "request of another type".into()))
        } else if let Some(r) = kit::unusable(card, CARD_UNHEALTHY) {
            Some((r, "card is unhealthy or cordoned".into()))
        } else if !app_class_ok(card, class) {
            Some((CARD_APP_CLASS_MISMATCH, format!("app class {class:?}")))
        } else if !online && !qos_ok(card, qos, request) {
            Some((
                CARD_QOS_POLICY_MISMATCH,
                format!("card QoS {:?}, pod QoS {qos:?}", card_qos(card)),
            ))
        } else if !kit::uuid_ok(pod, &d.id, USE_UUID, NOUSE_UUID) {
            Some((
                reason::CARD_UUID_MISMATCH,
                "excluded by the UUID lists".into(),
            ))
        } else if d.count <= card.used {
            Some((reason::CARD_TIME_SLICING_EXHAUSTED, "no slot left".into()))
        } else if ctx.policy.is_mutex && card.used > 0 {
            Some((reason::EXCLUSIVE_DEVICE_ALLOCATE_CONFLICT, "mutex".into()))
        } else if d.devmem - card.used_mem < memreq {
            Some((
                reason::CARD_INSUFFICIENT_MEMORY,
                format!("{} MiB free, {memreq} asked", d.devmem - card.used_mem),
            ))
        } else if !online && d.devcore - card.used_cores < request.coresreq {
            Some((reason::CARD_INSUFFICIENT_CORE, "not enough compute".into()))
        } else if !online && d.devcore == 100 && request.coresreq == 100 && card.used > 0 {
            Some((
                reason::EXCLUSIVE_DEVICE_ALLOCATE_CONFLICT,
                "whole card asked on a card in use".into(),
            ))
        } else if !online && d.devcore != 0 && card.used_cores == d.devcore && request.coresreq == 0
        {
            Some((reason::CARD_COMPUTE_UNITS_EXHAUSTED, "compute full".into()))
        } else {
            None
        };
        match failure {
            Some((r, detail)) => {
                kit::reject(&mut counter, ctx, SGPU_VENDOR, card, r, &|| detail.clone())
            }
            None => cands.push(card),
        }
    }
    let nums = request.nums.max(0) as usize;
    if cands.len() < nums {
        if !cands.is_empty() {
            counter.set(
                reason::ALLOCATED_CARDS_INSUFFICIENT_REQUEST,
                cands.len() as u32,
            );
        }
        return Fit::NoFit(counter);
    }
    let best: Vec<usize> = if cands.len() > nums && online {
        by_online_load(&cands, nums)
    } else if cands.len() > nums && pod.annotation(APP_CLASS).is_none() && request.coresreq == 100 {
        by_link_zone(&cands, nums)
    } else {
        (0..nums).collect()
    };
    Fit::Fits(
        best.into_iter()
            .filter_map(|i| cands.get(i))
            .map(|c| ContainerDevice {
                uuid: c.info.id.clone(),
                vendor: SGPU_VENDOR.to_string(),
                mem: if request.memreq > 0 {
                    request.memreq
                } else {
                    c.info.devmem * request.mem_pct / 100
                },
                cores: if online { 0 } else { request.coresreq },
                index: c.info.index,
                mig: None,
            })
            .collect(),
    )
}

/// `scoreOnlineDevices`: per chosen card, −100 per offline pod when it holds only offline
/// pods, else −20 per online and −2 per offline pod.
fn online_score(ctx: &ScoreContext<'_>) -> i64 {
    let chosen: Vec<&str> = ctx
        .devices
        .iter()
        .flatten()
        .map(|d| d.uuid.as_str())
        .collect();
    ctx.previous
        .iter()
        .filter(|c| c.vendor == SGPU_VENDOR && chosen.contains(&c.info.id.as_str()))
        .map(|c| {
            let (on, off) = class_counts(c);
            if off > 0 && on == 0 {
                -100 * off
            } else {
                -20 * on - 2 * off
            }
        })
        .sum()
}

/// `topologyAwareEnable`: at the first exclusive (100-core) device, the config default unless
/// the pod's `sgpu-topology-aware` parses as a bool; false without exclusive devices.
fn topology_aware(ctx: &ScoreContext<'_>) -> bool {
    if !ctx.devices.iter().flatten().any(|d| d.cores == 100) {
        return false;
    }
    ctx.pod
        .annotation(TOPOLOGY_AWARE)
        .and_then(|v| parse_go_bool(v.trim()))
        .unwrap_or(ctx.config.metax.sgpu_topology_aware)
}

/// Sum of pair scores (10 per pair in the same non-zero link zone).
fn link_score(zones: &[i64]) -> i64 {
    let mut s = 0;
    for (i, a) in zones.iter().enumerate() {
        for b in &zones[i + 1..] {
            if *a != 0 && a == b {
                s += 10;
            }
        }
    }
    s
}

/// `scoreExclusiveDevices`: `10 × Score(allocated) − (Score(available) − Score(allocated) −
/// Score(rest))`, over the idle cards before placement.
fn exclusive_score(ctx: &ScoreContext<'_>) -> i64 {
    let zone_of = |uuid: &str| {
        ctx.previous
            .iter()
            .find(|c| c.vendor == SGPU_VENDOR && c.info.id == uuid)
            .map_or(0, link_zone)
    };
    let allocated: Vec<&str> = ctx
        .devices
        .iter()
        .flatten()
        .filter(|d| d.cores == 100)
        .map(|d| d.uuid.as_str())
        .collect();
    let zone = |c: &Card| {
        if c.vendor == SGPU_VENDOR {
            link_zone(c)
        } else {
            0
        }
    };
    let available: Vec<&Card> = ctx.previous.iter().filter(|c| c.used == 0).collect();
    let alloc_zones: Vec<i64> = allocated.iter().map(|u| zone_of(u)).collect();
    let avail_zones: Vec<i64> = available.iter().map(|c| zone(c)).collect();
    let rest_zones: Vec<i64> = available
        .iter()
        .filter(|c| !allocated.contains(&c.info.id.as_str()))
        .map(|c| zone(c))
        .collect();
    let allocated_score = link_score(&alloc_zones);
    let loss = link_score(&avail_zones) - allocated_score - link_score(&rest_zones);
    10 * allocated_score - loss
}
