//! Helpers shared by the HAMi vendor backends of spec `hami-vendors.md`: resource reading,
//! the UUID lists (§1.7), capacity discovery, case-insensitive JSON registrations (§1.3), the
//! handshake rule (§1.7), the generic sharing fit "G-Fit" (§1.8) and card notes for `explain`.

use crate::api::{CardCheck, Container, Invalid, Node, Pod, lookup};
use crate::device::{self, Card, ContainerDevice, Placed};
use crate::quantity;
use crate::reason::{self, Counter};
use crate::vendor::{Fit, FitContext, Request, Slot};

/// The comma list of a UUID annotation, trimmed; `None` when absent or blank.
fn list<'a>(pod: &'a Pod, key: &str) -> Option<Vec<&'a str>> {
    let v = pod.annotation(key)?;
    if v.trim().is_empty() {
        return None;
    }
    Some(v.split(',').map(str::trim).collect())
}

/// HAMi's `CheckUUID`: the id must be in the use list (when given) and not in the no-use list.
pub fn uuid_ok(pod: &Pod, id: &str, use_key: &str, nouse_key: &str) -> bool {
    list(pod, use_key).is_none_or(|l| l.contains(&id))
        && list(pod, nouse_key).is_none_or(|l| !l.contains(&id))
}

/// An integer resource quantity of a container: from `limits` only, or from `limits` else
/// `requests`. `Ok(None)` when absent; an error names the field when it is not an integer.
pub fn int_resource(
    c: &Container,
    name: &str,
    requests_too: bool,
    slot: Slot<'_>,
) -> Result<Option<i128>, Invalid> {
    let (value, list) = match lookup(&c.limits, name) {
        Some(v) => (v, "limits"),
        None if requests_too => match lookup(&c.requests, name) {
            Some(v) => (v, "requests"),
            None => return Ok(None),
        },
        None => return Ok(None),
    };
    quantity::parse_integer(value).map(Some).map_err(|e| {
        Invalid::new(
            slot.object,
            slot.field(&format!("resources.{list}[{name}]")),
            value,
            e.to_string(),
        )
    })
}

/// An error about a container's resource value.
pub fn bad_resource(slot: Slot<'_>, name: &str, value: i128, message: &str) -> Invalid {
    Invalid::new(
        slot.object,
        slot.field(&format!("resources.limits[{name}]")),
        &value.to_string(),
        message,
    )
}

/// Whether the container names `name` in its limits.
pub fn in_limits(c: &Container, name: &str) -> bool {
    lookup(&c.limits, name).is_some()
}

/// The node's `status.capacity[name]` as a card count; 0 when absent, malformed or negative.
pub fn capacity(node: &Node, name: &str) -> i64 {
    lookup(&node.capacity, name)
        .and_then(|q| quantity::parse_integer(q).ok())
        .and_then(|v| i64::try_from(v).ok())
        .unwrap_or(0)
        .max(0)
}

/// Lower-cases every object key of a JSON value, recursively (Go's decoder matches field
/// names case-insensitively).
pub fn lower_keys(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), lower_keys(v)))
                .collect(),
        ),
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(lower_keys).collect())
        }
        other => other,
    }
}

/// Decodes a placed pod's devices from its allocation annotation, `None` if absent.
pub fn decode_pod(pod: &Pod, key: &str, vendor: &str) -> Result<Option<Placed>, Invalid> {
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

/// Records a card check for `explain` (the detail is only built when explaining).
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

/// Counts a failed card and notes it.
pub fn reject(
    counter: &mut Counter,
    ctx: &FitContext<'_>,
    vendor: &str,
    card: &Card,
    reason: &'static str,
    detail: &dyn Fn() -> String,
) {
    counter.add(reason);
    note(ctx, vendor, card, reason, detail);
}

/// Health and cordon, the first checks of every vendor: the reason when the card may not be
/// used at all (`health_reason` is the vendor's token, e.g. `CardNotHealth`).
pub fn unusable(card: &Card, health_reason: &'static str) -> Option<&'static str> {
    if !card.healthy() {
        Some(health_reason)
    } else if card.cordoned {
        Some(reason::CARD_CORDONED)
    } else {
        None
    }
}

/// What varies between the users of [`gfit`].
pub struct GFit<'a> {
    pub vendor: &'static str,
    /// The UUID annotation pair, when the vendor honours one.
    pub uuid_keys: Option<(&'a str, &'a str)>,
    /// Clamp `Coresreq` to 100.
    pub clamp_cores: bool,
    /// An extra per-card rule (`CardNotFoundCustomFilterRule` on failure).
    pub custom: Option<&'a dyn Fn(&Card) -> bool>,
}

/// The generic sharing fit (spec §1.8): cards walked from the end, each check in order.
pub fn gfit(cards: &[&Card], request: &Request, ctx: &FitContext<'_>, g: &GFit<'_>) -> Fit {
    let mut counter = Counter::default();
    let mut picked: Vec<ContainerDevice> = Vec::new();
    let mut remaining = request.nums;
    let mut cores = request.coresreq;
    for card in cards.iter().rev() {
        let d = &card.info;
        let mut fail = |r: &'static str, detail: &dyn Fn() -> String| {
            reject(&mut counter, ctx, g.vendor, card, r, detail);
        };
        if let Some(r) = unusable(card, reason::CARD_NOT_HEALTH) {
            fail(r, &|| "card is unhealthy or cordoned".into());
            continue;
        }
        if request.vendor != g.vendor {
            fail(reason::CARD_TYPE_MISMATCH, &|| {
                "request of another type".into()
            });
            continue;
        }
        if let Some((u, n)) = g.uuid_keys
            && !uuid_ok(ctx.pod, &d.id, u, n)
        {
            fail(reason::CARD_UUID_MISMATCH, &|| {
                format!("excluded by {u} / {n}")
            });
            continue;
        }
        if d.count <= card.used {
            fail(reason::CARD_TIME_SLICING_EXHAUSTED, &|| {
                format!("{} of {} slots used", card.used, d.count)
            });
            continue;
        }
        if ctx.policy.is_mutex && card.used > 0 {
            fail(reason::EXCLUSIVE_DEVICE_ALLOCATE_CONFLICT, &|| {
                "mutex policy and the card is in use".into()
            });
            continue;
        }
        if g.clamp_cores && cores > 100 {
            cores = 100;
        }
        let memreq = if request.memreq > 0 {
            request.memreq
        } else if request.mem_pct != 101 {
            d.devmem * request.mem_pct / 100
        } else {
            0
        };
        if d.devmem - card.used_mem < memreq {
            fail(reason::CARD_INSUFFICIENT_MEMORY, &|| {
                format!("{} MiB free, {memreq} asked", d.devmem - card.used_mem)
            });
            continue;
        }
        if d.devcore - card.used_cores < cores {
            fail(reason::CARD_INSUFFICIENT_CORE, &|| {
                format!("{} cores free, {cores} asked", d.devcore - card.used_cores)
            });
            continue;
        }
        if d.devcore == 100 && cores == 100 && card.used > 0 {
            fail(reason::EXCLUSIVE_DEVICE_ALLOCATE_CONFLICT, &|| {
                "a whole card is asked and the card is in use".into()
            });
            continue;
        }
        if d.devcore != 0 && card.used_cores == d.devcore && cores == 0 {
            fail(reason::CARD_COMPUTE_UNITS_EXHAUSTED, &|| {
                "all compute is used".into()
            });
            continue;
        }
        if let Some(rule) = g.custom
            && !rule(card)
        {
            fail(CARD_NOT_FOUND_CUSTOM_FILTER_RULE, &|| {
                "the pod's earlier containers hold another card".into()
            });
            continue;
        }
        picked.push(ContainerDevice {
            uuid: d.id.clone(),
            vendor: g.vendor.to_string(),
            mem: memreq,
            cores,
            index: d.index,
            mig: None,
        });
        remaining -= 1;
        if remaining <= 0 {
            return Fit::Fits(picked);
        }
    }
    if !picked.is_empty() {
        counter.set(
            reason::ALLOCATED_CARDS_INSUFFICIENT_REQUEST,
            picked.len() as u32,
        );
    }
    Fit::NoFit(counter)
}

pub const CARD_NOT_FOUND_CUSTOM_FILTER_RULE: &str = "CardNotFoundCustomFilterRule";
