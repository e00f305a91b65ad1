//! The admission decision for a new pod (spec §3, quota §10.3).

use crate::api::{Admission, ContainerRef, Error, Mutation, Pod};
use crate::ledger::Ledger;
use crate::schedule;
use crate::vendor::{Slot, VENDORS};

pub const DEFAULT_SCHEDULER: &str = "default-scheduler";

fn allow(mutations: Vec<Mutation>, managed: bool, message: &str) -> Admission {
    Admission {
        allowed: true,
        message: message.to_string(),
        mutations,
        managed,
    }
}

fn deny(message: String) -> Admission {
    Admission {
        allowed: false,
        message,
        mutations: Vec::new(),
        managed: true,
    }
}

/// Admits a pod being created: HAMi's webhook rules, in its order.
pub fn admit(ledger: &Ledger, pod: &Pod) -> Result<Admission, Error> {
    let cfg = &ledger.config;
    if pod.containers.is_empty() {
        return Ok(deny("pod has no containers".to_string()));
    }
    if let Some(name) = pod.scheduler_name.as_deref().filter(|n| !n.is_empty()) {
        let takeover = name == DEFAULT_SCHEDULER && cfg.force_overwrite_default_scheduler;
        let ours = !cfg.scheduler_name.is_empty() && name == cfg.scheduler_name;
        if !takeover && !ours {
            return Ok(allow(
                Vec::new(),
                false,
                "pod already has different scheduler assigned",
            ));
        }
    }
    let object = pod.object();
    let mut mutations = Vec::new();
    let mut managed = false;
    let mut runtime_class: Option<&str> = None;
    for (init, list) in [(true, &pod.init_containers), (false, &pod.containers)] {
        for (index, c) in list.iter().enumerate() {
            let slot = Slot {
                object: &object,
                init,
                index,
            };
            let cref = ContainerRef {
                init,
                index: index as u32,
            };
            for v in VENDORS {
                let (has, m) = v
                    .admit_pod_container(pod, c, slot, cref, ledger)
                    .map_err(Error::InvalidInput)?;
                managed |= has;
                if has && runtime_class.is_none() {
                    runtime_class = v.runtime_class_name(cfg).filter(|n| !n.is_empty());
                }
                mutations.extend(m);
            }
        }
    }
    // Pod-level rules (those that read the pod's annotations), once per vendor.
    for v in VENDORS {
        let (has, m) = v.admit_pod(pod, cfg).map_err(Error::InvalidInput)?;
        managed |= has;
        mutations.extend(m);
    }
    if managed {
        if let Some(c) = pod.all_containers().find(|c| c.privileged) {
            return Ok(deny(format!("container {} is privileged", c.name)));
        }
        if let Some(name) = runtime_class.filter(|_| pod.runtime_class_name.is_none()) {
            mutations.push(Mutation::SetRuntimeClassName(name.to_string()));
        }
        if !cfg.scheduler_name.is_empty() {
            if pod.node_name.is_some() {
                return Ok(deny("pod has node assigned".to_string()));
            }
            if pod.scheduler_name.as_deref() != Some(cfg.scheduler_name.as_str()) {
                mutations.push(Mutation::SetSchedulerName(cfg.scheduler_name.clone()));
            }
        }
        let mutated = apply(pod, &mutations);
        if !quota_fits(ledger, &mutated)? {
            return Ok(deny("exceeding resource quota".to_string()));
        }
    }
    Ok(allow(mutations, managed, ""))
}

/// Applies the limit mutations to a copy of the pod (what the scheduler will see).
pub fn apply(pod: &Pod, mutations: &[Mutation]) -> Pod {
    let mut out = pod.clone();
    for m in mutations {
        match m {
            Mutation::SetLimit(l) => {
                let list = if l.container.init {
                    &mut out.init_containers
                } else {
                    &mut out.containers
                };
                if let Some(c) = list.get_mut(l.container.index as usize) {
                    c.limits.retain(|(k, _)| k != &l.name);
                    c.limits.push((l.name.clone(), l.value.clone()));
                }
            }
            Mutation::SetRequest(l) => {
                let list = if l.container.init {
                    &mut out.init_containers
                } else {
                    &mut out.containers
                };
                if let Some(c) = list.get_mut(l.container.index as usize) {
                    c.requests.retain(|(k, _)| k != &l.name);
                    c.requests.push((l.name.clone(), l.value.clone()));
                }
            }
            Mutation::SetAnnotation((k, v)) => {
                out.annotations.retain(|(key, _)| key != k);
                out.annotations.push((k.clone(), v.clone()));
            }
            Mutation::SetSchedulerName(n) => out.scheduler_name = Some(n.clone()),
            Mutation::SetRuntimeClassName(n) => out.runtime_class_name = Some(n.clone()),
            Mutation::AddEnv(e) => {
                let list = if e.container.init {
                    &mut out.init_containers
                } else {
                    &mut out.containers
                };
                if let Some(c) = list.get_mut(e.container.index as usize) {
                    c.env_names.push(e.name.clone());
                }
            }
        }
    }
    out
}

/// Spec §10.3: per vendor, app containers sum `memreq × nums` and `cores × nums`, init
/// containers take the peak, the request is the larger; percentage-only memory counts 0.
fn quota_fits(ledger: &Ledger, pod: &Pod) -> Result<bool, Error> {
    let reqs = schedule::requests(ledger, pod)?;
    let init_count = pod.init_containers.len();
    for q in schedule::QuotaView::for_pod(ledger, pod) {
        let (mut app_mem, mut app_cores, mut init_mem, mut init_cores) = (0i64, 0i64, 0i64, 0i64);
        for (position, list) in reqs.iter().enumerate() {
            for r in list.iter().filter(|r| r.vendor == q.vendor) {
                let (m, c) = (r.memreq * r.nums, r.coresreq * r.nums);
                if position < init_count {
                    init_mem = init_mem.max(m);
                    init_cores = init_cores.max(c);
                } else {
                    app_mem += m;
                    app_cores += c;
                }
            }
        }
        let (mem, cores) = (app_mem.max(init_mem), app_cores.max(init_cores));
        if (mem != 0 || cores != 0) && !q.fits(mem, cores) {
            return Ok(false);
        }
    }
    Ok(true)
}
