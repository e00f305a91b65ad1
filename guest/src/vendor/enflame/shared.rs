//! The shared Enflame backend (`Enflame`): DRS profiles (§4.2) and v2.7 vGCU percentage
//! slices (§4.3). The request's `MemPercentagereq` says which mode it is in.

use std::collections::BTreeMap;

use crate::api::{
    Container, ContainerLimit, ContainerRef, Invalid, Mutation, Node, Pairs, Pod, lookup,
};
use crate::config::Config;
use crate::device::{self, Card, ContainerDevice, DeviceInfo, Placed, PodDevices};
use crate::ledger::Ledger;
use crate::vendor::kit::{self, GFit};
use crate::vendor::{DecisionContext, Fit, FitContext, Request, Slot, Vendor};

use super::*;

/// The shared Enflame backend.
pub struct EnflameShared;

/// v2.7 discovery: `capacity[enflame.com/gcu-count]` cards `<node>-enflame-<i>`, 100 percent
/// units of memory and cores each.
fn vgcu_cards(node: &Node) -> Vec<DeviceInfo> {
    let n = kit::capacity(node, GCU_COUNT).min(i64::from(u16::MAX));
    // Slices per card: `capacity[shared-gcu] / cards` (what admission rounds to, EF-15).
    let slices = if n > 0 {
        kit::capacity(node, SHARED_GCU) / n
    } else {
        0
    };
    (0..n)
        .map(|i| {
            let mut info = DeviceInfo {
                id: format!("{}-enflame-{i}", node.name),
                index: i as u32,
                count: 100,
                devmem: 100,
                devcore: 100,
                model: SHARED_VENDOR.to_string(),
                health: true,
                ..DeviceInfo::default()
            };
            info.custom.insert(KIND.into(), KIND_VGCU.into());
            if slices > 0 {
                info.custom.insert(SLICES.into(), slices.to_string());
            }
            info
        })
        .collect()
}

fn int32(slot: Slot<'_>, name: &str, v: i128) -> Result<i64, Invalid> {
    i32::try_from(v)
        .map(i64::from)
        .map_err(|_| kit::bad_resource(slot, name, v, "does not fit a 32-bit integer"))
}

/// Copies a value present on one side (limits or requests) to the other.
fn mirror(c: &Container, cref: ContainerRef, name: &str, out: &mut Vec<Mutation>) {
    let item = |value: &str| ContainerLimit {
        container: cref,
        name: name.to_string(),
        value: value.to_string(),
    };
    match (lookup(&c.limits, name), lookup(&c.requests, name)) {
        (Some(l), None) => out.push(Mutation::SetRequest(item(l))),
        (None, Some(r)) => out.push(Mutation::SetLimit(item(r))),
        _ => {}
    }
}

/// The slices per card admission rounds v2.7 percentages to: the fewest any known v2.7 node
/// registered (a boundary of coarser slices is one of finer ones when the counts divide each
/// other, as 1, 2 and 4 do); `None` while no v2.7 node with 1..=100 slices per card is known.
fn slices_per_card(ledger: &Ledger) -> Option<i64> {
    ledger
        .nodes
        .values()
        .flat_map(|e| e.cards.iter())
        .filter(|c| c.vendor == SHARED_VENDOR)
        .filter_map(|c| c.info.custom.get(SLICES)?.parse::<i64>().ok())
        // More slices than percent points is no slicing HAMi could express; ignored.
        .filter(|s| (1..=100).contains(s))
        .min()
}

/// v2.7's webhook (spec §4.3, EF-15): a multi-card request takes whole cards (100 percent,
/// `slices × count` shared-gcu); one card's percentage (default 100, at least 1, at most 100)
/// is rounded up to the next slice boundary, `shared-gcu` set to the slices it takes; both in
/// limits and requests. Integer arithmetic: `k = ⌈p·slices/100⌉`, `p' = ⌊100·k/slices⌋` (HAMi's
/// `int(slice·(i+1))` with `slice = 100/slices`).
pub(super) fn round_vgcu(
    c: &Container,
    slot: Slot<'_>,
    cref: ContainerRef,
    slices: i64,
    out: &mut Vec<Mutation>,
) -> Result<(), Invalid> {
    let Some(n) = either(c, VGCU_RESOURCE, slot)?.filter(|n| *n > 0) else {
        return Ok(());
    };
    let n = int32(slot, VGCU_RESOURCE, n)?;
    let (pct, shared) = if n > 1 {
        (100, slices * n)
    } else {
        let p = match either(c, VGCU_PERCENTAGE, slot)? {
            Some(p) => int32(slot, VGCU_PERCENTAGE, p)?.clamp(1, 100),
            None => 100,
        };
        let k = (p * slices + 99) / 100;
        (100 * k / slices, k)
    };
    for (name, value) in [(VGCU_PERCENTAGE, pct), (SHARED_GCU, shared)] {
        let item = ContainerLimit {
            container: cref,
            name: name.to_string(),
            value: value.to_string(),
        };
        out.push(Mutation::SetLimit(item.clone()));
        out.push(Mutation::SetRequest(item));
    }
    Ok(())
}

/// A resource from limits, else requests.
fn either(c: &Container, name: &str, slot: Slot<'_>) -> Result<Option<i128>, Invalid> {
    kit::int_resource(c, name, true, slot)
}

impl Vendor for EnflameShared {
    fn key(&self) -> &'static str {
        SHARED_VENDOR
    }

    fn managed_resources(&self, _config: &Config) -> Vec<String> {
        [
            DRS_RESOURCE,
            GCU_MEMORY,
            GCU_CORE,
            VGCU_RESOURCE,
            VGCU_PERCENTAGE,
        ]
        .map(String::from)
        .to_vec()
    }

    fn parse_node(&self, node: &Node) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
        let mut cards = match node.annotation(DRS_CAPACITY) {
            Some(text) => drs::registration(node, text)?,
            None => Vec::new(),
        };
        cards.extend(vgcu_cards(node));
        Ok((!cards.is_empty()).then_some(cards))
    }

    fn liveness(&self, _node: &Node, _config: &Config) -> crate::vendor::Liveness {
        crate::vendor::Liveness::Live
    }

    /// DRS: `drs-gcu = n` is one instance of size n; memory/core ask by spec. v2.7: `vgcu`
    /// cards of `vgcu-percentage` percent (100 when absent or when more than one card).
    fn request(
        &self,
        container: &Container,
        slot: Slot<'_>,
        _config: &Config,
    ) -> Result<Option<Request>, Invalid> {
        let one = |memreq, mem_pct, coresreq| Request {
            vendor: SHARED_VENDOR,
            nums: 1,
            memreq,
            mem_pct,
            coresreq,
        };
        if let Some(n) = either(container, DRS_RESOURCE, slot)? {
            if n <= 0 {
                return Ok(None);
            }
            return Ok(Some(one(int32(slot, DRS_RESOURCE, n)?, MODE_DRS_DIRECT, 0)));
        }
        let mem = either(container, GCU_MEMORY, slot)?;
        let core = either(container, GCU_CORE, slot)?;
        if mem.is_some() || core.is_some() {
            let mem = int32(slot, GCU_MEMORY, mem.unwrap_or(0))?;
            let core = int32(slot, GCU_CORE, core.unwrap_or(0))?;
            return Ok(Some(one(mem, MODE_DRS_SPEC, core)));
        }
        let Some(n) = either(container, VGCU_RESOURCE, slot)? else {
            return Ok(None);
        };
        if n <= 0 {
            return Ok(None);
        }
        let n = int32(slot, VGCU_RESOURCE, n)?;
        let pct = match either(container, VGCU_PERCENTAGE, slot)? {
            Some(p) if n == 1 => int32(slot, VGCU_PERCENTAGE, p)?.clamp(1, 100),
            _ => 100,
        };
        Ok(Some(Request {
            vendor: SHARED_VENDOR,
            nums: n,
            memreq: pct,
            mem_pct: MODE_VGCU,
            coresreq: 0,
        }))
    }

    /// v2.7 requests are rounded to the registered slices ([`round_vgcu`]), which needs the
    /// ledger's nodes; the rest is [`Vendor::admit_container`].
    fn admit_pod_container(
        &self,
        _pod: &Pod,
        container: &Container,
        slot: Slot<'_>,
        cref: ContainerRef,
        ledger: &Ledger,
    ) -> Result<(bool, Vec<Mutation>), Invalid> {
        let (found, mut out) = self.admit_container(container, slot, cref, &ledger.config)?;
        // The DRS resources take precedence, as in `request`.
        let drs = [DRS_RESOURCE, GCU_MEMORY, GCU_CORE].iter().any(|r| {
            lookup(&container.limits, r)
                .or(lookup(&container.requests, r))
                .is_some()
        });
        let vgcu = found && !drs && kit::in_limits(container, VGCU_RESOURCE);
        if let Some(slices) = slices_per_card(ledger).filter(|_| vgcu) {
            round_vgcu(container, slot, cref, slices, &mut out)?;
        }
        Ok((found, out))
    }

    /// DRS: positive sizes, memory > 0, cores in (0, 100], each value mirrored between limits
    /// and requests. v2.7: found when limits ask `vgcu`.
    fn admit_container(
        &self,
        container: &Container,
        slot: Slot<'_>,
        cref: ContainerRef,
        _config: &Config,
    ) -> Result<(bool, Vec<Mutation>), Invalid> {
        let mut out = Vec::new();
        if let Some(n) = either(container, DRS_RESOURCE, slot)? {
            if n <= 0 {
                return Err(kit::bad_resource(
                    slot,
                    DRS_RESOURCE,
                    n,
                    "enflame.com/drs-gcu must be greater than 0",
                ));
            }
            mirror(container, cref, DRS_RESOURCE, &mut out);
            return Ok((true, out));
        }
        let mem = either(container, GCU_MEMORY, slot)?;
        let core = either(container, GCU_CORE, slot)?;
        if mem.is_some() || core.is_some() {
            if let Some(m) = mem.filter(|m| *m <= 0) {
                return Err(kit::bad_resource(
                    slot,
                    GCU_MEMORY,
                    m,
                    "enflame.com/gcu-memory must be greater than 0",
                ));
            }
            if let Some(c) = core.filter(|c| !(1..=100).contains(c)) {
                return Err(kit::bad_resource(
                    slot,
                    GCU_CORE,
                    c,
                    "enflame.com/gcu-core must be in range (0,100]",
                ));
            }
            mirror(container, cref, GCU_MEMORY, &mut out);
            mirror(container, cref, GCU_CORE, &mut out);
            return Ok((true, out));
        }
        Ok((kit::in_limits(container, VGCU_RESOURCE), out))
    }

    fn owns(&self, card: &Card) -> bool {
        card.vendor == SHARED_VENDOR
    }

    fn fit(&self, cards: &[&Card], request: &Request, ctx: &FitContext<'_>) -> Fit {
        if request.mem_pct != MODE_VGCU {
            return drs::fit(cards, request, ctx);
        }
        let vgcu: Vec<&Card> = cards
            .iter()
            .copied()
            .filter(|c| c.info.custom.get(KIND).map(String::as_str) == Some(KIND_VGCU))
            .collect();
        let fit = kit::gfit(
            &vgcu,
            request,
            ctx,
            &GFit {
                vendor: SHARED_VENDOR,
                uuid_keys: Some((USE_UUID, NOUSE_UUID)),
                clamp_cores: true,
                custom: None,
            },
        );
        match fit {
            // DRS cards cannot host percentage slices.
            Fit::NoFit(mut counter) => {
                let other = (cards.len() - vgcu.len()) as u32;
                counter.add_n(crate::reason::CARD_TYPE_MISMATCH, other);
                Fit::NoFit(counter)
            }
            fits => fits,
        }
    }

    /// DRS: `Used` grows by the profile's slice count (A6: rebuilt use adds 1); v2.7: by 1.
    fn add_usage(&self, card: &mut Card, device: &ContainerDevice) {
        let slices =
            drs::profile_of(card, device).map_or(1, |p| p.size.clamp(1, i64::from(i32::MAX)));
        card.used = card.used.saturating_add(slices).min(i64::from(i32::MAX));
        card.used_mem += device.mem;
        card.used_cores += device.cores;
    }

    fn annotations(&self, devices: &PodDevices) -> Pairs {
        vec![(VGPU_ALLOCATED.to_string(), device::encode(devices))]
    }

    fn decision_annotations(&self, devices: &PodDevices, ctx: &DecisionContext<'_>) -> Pairs {
        let mut out = self.annotations(devices);
        out.push((ASSIGNED.to_string(), "false".to_string()));
        out.push((
            ASSIGNED_TIME.to_string(),
            (i128::from(ctx.now) * 1_000_000_000).to_string(),
        ));
        let card_of = |d: &ContainerDevice| ctx.cards.iter().find(|c| c.info.id == d.uuid);
        let first = devices.iter().find(|c| !c.is_empty());
        let drs = first
            .and_then(|c| c.first())
            .and_then(card_of)
            .is_some_and(|c| c.info.custom.get(KIND).map(String::as_str) == Some(KIND_DRS));
        if !drs {
            if let Some(c) = first {
                let idx: Vec<String> = c.iter().map(|d| d.index.to_string()).collect();
                out.push((ASSIGNED_ID.to_string(), idx.join(",")));
            }
            return out;
        }
        let names: Vec<&str> = ctx.pod.all_containers().map(|c| c.name.as_str()).collect();
        let mut containers: BTreeMap<String, String> = BTreeMap::new();
        let mut keys: Vec<(&str, String)> = Vec::new();
        for (i, c) in devices.iter().enumerate() {
            let Some(d) = c.first() else { continue };
            let Some(card) = card_of(d) else { continue };
            let profile = drs::profile_of(card, d);
            let size = profile.as_ref().map_or(0, |p| p.size);
            let custom = |k: &str| card.info.custom.get(k).cloned().unwrap_or_default();
            for (key, value) in [
                (ASSIGNED_INDEX, custom("index")),
                (ASSIGNED_ID, custom("index")),
                (ASSIGNED_MINOR, custom("minor")),
                (REQUEST_SIZE, size.to_string()),
            ] {
                if !keys.iter().any(|(k, _)| *k == key) {
                    keys.push((key, value));
                }
            }
            let name = names
                .get(i)
                .map_or_else(|| format!("container-{i}"), |n| n.to_string());
            let (pid, pname) = profile.map_or((String::new(), String::new()), |p| (p.id, p.name));
            containers.insert(
                name,
                format!(
                    "{{\"allocated\":false,\"request\":{size},\"profileID\":{},\"profileName\":{}}}",
                    serde_json::Value::from(pid),
                    serde_json::Value::from(pname)
                ),
            );
        }
        out.extend(keys.into_iter().map(|(k, v)| (k.to_string(), v)));
        let body: Vec<String> = containers
            .iter()
            .map(|(k, v)| format!("{}:{v}", serde_json::Value::from(k.as_str())))
            .collect();
        out.push((
            ASSIGNED_CONTAINERS.to_string(),
            format!("{{{}}}", body.join(",")),
        ));
        out
    }

    fn allocated_key(&self) -> &'static str {
        VGPU_ALLOCATED
    }

    fn decode_pod(&self, pod: &Pod) -> Result<Option<Placed>, Invalid> {
        kit::decode_pod(pod, VGPU_ALLOCATED, SHARED_VENDOR)
    }
}
