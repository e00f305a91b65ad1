//! Registration: the node annotation `hami.io/node-nvidia-register` (node-side.md §2.5) built from
//! discovered cards, and the [`Registrar`] that patches it on the Node only when it changed
//! (§2.7).

pub mod vendors;
pub mod volcano;

use std::collections::BTreeMap;
use std::time::Duration;

use hamr_guest::device::DeviceInfo;
use hamr_guest::vendor::common::{Registered, encode_json_registration};
use hamr_guest::vendor::nvidia::register::{REGISTER, SCORE};
use hamr_guest::vendor::volcano::register::REGISTER as VOLCANO_REGISTER;
use tokio::sync::watch;

use crate::annotate::{NodeAnnotations, PatchError};
use crate::config::Config;
use crate::discovery::{Device, NVIDIA};

/// Encodes cards as the `hami.io/node-nvidia-register` JSON value: HAMi's field order, every
/// field Go `omitempty` (a missing `health` means unhealthy).
///
/// ```
/// # use hamr_guest::device::DeviceInfo;
/// let card = DeviceInfo { id: "GPU-a".into(), index: 1, count: 10, devmem: 40960, devcore: 100,
///     model: "NVIDIA A100".into(), mode: "hami-core".into(), health: true, ..DeviceInfo::default() };
/// assert_eq!(hamr_node_agent::register::encode_register(&[card]),
///     r#"[{"id":"GPU-a","index":1,"count":10,"devmem":40960,"devcore":100,"type":"NVIDIA A100","mode":"hami-core","health":true}]"#);
/// ```
pub fn encode_register(devices: &[DeviceInfo]) -> String {
    // HAMi's JSON device list, written by the guest's encoder (the format its parser reads).
    let cards: Vec<Registered> = devices
        .iter()
        .map(|d| Registered {
            info: d.clone(),
            custom: Default::default(),
        })
        .collect();
    encode_json_registration(&cards)
}

/// The registered view of the node's NVIDIA cards (node-side.md §2.5, hami-core mode):
/// `count` = split count, `devmem` = MiB x memory scaling (truncated; unscaled in MIG mode),
/// `devcore` = 100 x core scaling (100 in MIG mode). Cards of other vendors are left out.
///
/// Worked example: a 40960 MiB card with scaling 1.5 registers `devmem` 61440; core scaling 2
/// registers `devcore` 200.
///
/// In `mig` mode (§6.2) a card registers the `migProfiles` that `migProfileAllowlist` allows
/// for its model ([`crate::mig::profiles::registered`]) and `count` = the largest instance
/// count among them; a card with none is left out, as HAMi does.
pub fn nvidia_devices(devices: &[Device], config: &Config) -> Vec<DeviceInfo> {
    let mig = config.operating_mode == "mig";
    devices
        .iter()
        .filter(|d| d.vendor == NVIDIA)
        .filter_map(|d| {
            let (mig_profiles, count) = if mig {
                crate::mig::profiles::registered(
                    &d.model,
                    &d.mig_profiles,
                    &config.mig_profile_allowlist,
                )?
            } else {
                (Vec::new(), config.device_split_count)
            };
            let devmem = if mig {
                d.memory_mib as f64
            } else {
                d.memory_mib as f64 * config.device_memory_scaling
            };
            let devcore = if mig {
                100.0
            } else {
                f64::from(d.cores) * config.device_core_scaling
            };
            Some(DeviceInfo {
                id: d.id.clone(),
                index: d.index,
                count: i64::from(count),
                // Go truncates float64 to int32; saturate instead of wrapping.
                devmem: devmem.min(f64::from(i32::MAX)) as i64,
                devcore: devcore.min(f64::from(i32::MAX)) as i64,
                model: d.model.clone(),
                numa: i64::from(d.numa),
                mode: config.operating_mode.clone(),
                health: d.healthy,
                mig_profiles,
                ..DeviceInfo::default()
            })
        })
        .collect()
}

/// Every registration annotation this node carries, by key: HAMi's
/// `hami.io/node-nvidia-register` and the other vendors' HAMi registrations ([`vendors`])
/// unless `registerHami` is off, and Volcano's `volcano.sh/node-vgpu-register` when
/// `volcano.register` is set.
///
/// The fake backend refuses devices whose registration cannot be written, so the vendors'
/// part cannot fail for what discovery returns; if it did, it is logged and left out.
pub fn registration(devices: &[Device], config: &Config) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if config.register_hami {
        out.insert(
            REGISTER.to_string(),
            encode_register(&nvidia_devices(devices, config)),
        );
        if config.topology_score
            && let Some(scores) = crate::topology::encode_scores(devices)
        {
            out.insert(SCORE.to_string(), scores);
        }
        match vendors::registrations(devices, config) {
            Ok(values) => out.extend(values),
            Err(error) => tracing::warn!(%error, "other vendors' registrations left out"),
        }
    }
    if config.volcano.register {
        out.insert(
            VOLCANO_REGISTER.to_string(),
            crate::register::volcano::encode(devices, config),
        );
    }
    out
}

/// Keeps the node's registration annotations current, patching only what changed (node-side.md
/// §2.7), and shares the values it registered with the usage publisher.
pub struct Registrar {
    node: NodeAnnotations,
    registered: watch::Sender<BTreeMap<String, String>>,
}

impl Registrar {
    pub fn new(client: kube::Client, node: impl Into<String>) -> Registrar {
        Registrar {
            node: NodeAnnotations::new(client, node),
            registered: watch::Sender::new(BTreeMap::new()),
        }
    }

    /// Follows the registration values computed from each scan (the Node's own annotations
    /// are not read back).
    pub fn subscribe(&self) -> watch::Receiver<BTreeMap<String, String>> {
        self.registered.subscribe()
    }

    /// Patches the annotations that differ from the last ones written. Returns whether a patch
    /// was sent.
    pub async fn sync(&mut self, values: &BTreeMap<String, String>) -> Result<bool, PatchError> {
        self.registered.send_if_modified(|current| {
            let changed = current != values;
            if changed {
                current.clone_from(values);
            }
            changed
        });
        self.node.sync(values).await
    }

    /// Keeps the annotations current: on every inventory change and every `interval`, 5 s
    /// after an error. Runs until the inventory is dropped.
    pub async fn run(
        mut self,
        mut devices: watch::Receiver<Vec<Device>>,
        config: Config,
        interval: Duration,
    ) {
        loop {
            let values = registration(&devices.borrow_and_update(), &config);
            let wait = match self.sync(&values).await {
                Ok(sent) => {
                    if sent {
                        tracing::info!(node = %self.node.node(), "registration patched");
                    }
                    interval
                }
                Err(error) => {
                    tracing::warn!(%error, "registration failed");
                    Duration::from_secs(5)
                }
            };
            tokio::select! {
                changed = devices.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
