//! Cards, their use, and the per-container device lists written on pods (spec §5, §6.9, §8.2).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A legal MIG placement: slices `[start, start + size)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub start: u32,
    pub size: u32,
}

impl Placement {
    pub fn overlaps(&self, other: &Placement) -> bool {
        self.start < other.start + other.size && other.start < self.start + self.size
    }
}

/// A MIG profile a card can host (spec §9.2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MigProfile {
    pub name: String,
    #[serde(rename = "memoryMB")]
    pub memory_mb: i64,
    pub core: i64,
    pub slice_count: u32,
    pub placements: Vec<Placement>,
}

/// One registered card, as the node's registration annotation describes it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceInfo {
    pub id: String,
    pub index: u32,
    /// Slots (split count).
    pub count: i64,
    /// Memory, MiB.
    pub devmem: i64,
    /// Cores, percent (100 = one whole card).
    pub devcore: i64,
    /// The model string HAMi calls `type`, e.g. `NVIDIA A100-SXM4-80GB`.
    pub model: String,
    pub numa: i64,
    /// `hami-core`, `mig`, `mps`, or empty.
    pub mode: String,
    pub health: bool,
    pub mig_profiles: Vec<MigProfile>,
    /// Pair scores to other cards by UUID (`hami.io/node-nvidia-score`); shared, so that a
    /// registration parsed again under the same score annotation keeps them.
    pub pair_scores: Arc<BTreeMap<String, i64>>,
    /// Vendor-specific registration facts (HAMi's `custominfo`), e.g. MetaX `linkZone`.
    pub custom: BTreeMap<String, String>,
}

/// A MIG slice in use on a card (from a reservation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigInUse {
    pub profile: String,
    pub placement: Placement,
}

/// A card with its current use on one node: HAMi's `DeviceUsage`.
#[derive(Clone, Debug, PartialEq)]
pub struct Card {
    pub vendor: &'static str,
    /// Shared, so that the per-pod copies of a node's cards cost no string copies.
    pub info: Arc<DeviceInfo>,
    /// Whether `vendor` takes the card as its own ([`crate::vendor::Vendor::owns`]), read
    /// once here: it depends on the registration only, and `filter` asks it of every card.
    pub owned: bool,
    pub cordoned: bool,
    /// Set when the usage rebuild finds an inconsistent MIG state (fail-closed, spec §8.3).
    pub forced_unhealthy: bool,
    pub used: i64,
    pub used_mem: i64,
    pub used_cores: i64,
    pub mig_in_use: Vec<MigInUse>,
    /// One entry per device entry of a pod on this card, from [`crate::vendor::Vendor::card_tag`]
    /// (MetaX: the pod's app class and QoS); empty for vendors that tag nothing.
    pub tags: Vec<Arc<str>>,
}

impl Card {
    pub fn new(vendor: &'static str, info: DeviceInfo) -> Card {
        let mut card = Card {
            vendor,
            info: Arc::new(info),
            owned: false,
            cordoned: false,
            forced_unhealthy: false,
            used: 0,
            used_mem: 0,
            used_cores: 0,
            mig_in_use: Vec::new(),
            tags: Vec::new(),
        };
        card.owned = crate::vendor::by_key(vendor).is_some_and(|v| v.owns(&card));
        card
    }

    pub fn healthy(&self) -> bool {
        self.info.health && !self.forced_unhealthy
    }
}

/// One card given to one container: an item of `hami.io/vgpu-devices-allocated`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerDevice {
    pub uuid: String,
    /// The vendor key written in the annotation (`NVIDIA`).
    pub vendor: String,
    pub mem: i64,
    pub cores: i64,
    /// Card index (not encoded; known when the scheduler chose the card).
    pub index: u32,
    /// MIG slice chosen for this device, if any.
    pub mig: Option<MigInUse>,
}

/// Per container position (init containers first), the devices of one vendor.
pub type PodDevices = Vec<Vec<ContainerDevice>>;

/// A placed pod's devices of one vendor, as its annotations describe them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placed {
    pub devices: PodDevices,
    /// MIG slices reserved for the pod that match no decoded device, by GPU UUID.
    pub stray_slices: Vec<(String, MigInUse)>,
}

/// Why a device list annotation could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("pod annotation format error, missing fields in {0:?}")]
    MissingFields(String),
    #[error("{0:?} is not a 32-bit integer")]
    NotInt32(String),
}

/// Encodes a device list: per container `<uuid>,<TYPE>,<mem>,<cores>:` items, each container
/// terminated by `;`.
///
/// ```
/// # use hamr_guest::device::*;
/// let d = |u: &str| ContainerDevice { uuid: u.into(), vendor: "NVIDIA".into(), mem: 1000, cores: 30, index: 0, mig: None };
/// assert_eq!(encode(&vec![vec![d("UUID1"), d("UUID2")]]), "UUID1,NVIDIA,1000,30:UUID2,NVIDIA,1000,30:;");
/// assert_eq!(encode(&vec![vec![], vec![d("UUID1")]]), ";UUID1,NVIDIA,1000,30:;");
/// ```
pub fn encode(devices: &PodDevices) -> String {
    let mut out = String::new();
    for container in devices {
        for d in container {
            out.push_str(&format!("{},{},{},{}:", d.uuid, d.vendor, d.mem, d.cores));
        }
        out.push(';');
    }
    out
}

/// Decodes a device list. Splitting on `;` keeps empty entries so positions hold; the entry
/// after the final `;` is dropped (it is not a container).
pub fn decode(text: &str) -> Result<PodDevices, CodecError> {
    let mut parts: Vec<&str> = text.split(';').collect();
    if parts.len() > 1 && parts.last().is_some_and(|p| p.trim().is_empty()) {
        parts.pop();
    }
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        let mut container = Vec::new();
        for item in part.split(':').filter(|s| s.contains(',')) {
            let fields: Vec<&str> = item.split(',').collect();
            if fields.len() < 4 {
                return Err(CodecError::MissingFields(item.to_string()));
            }
            let int = |s: &str| {
                s.trim()
                    .parse::<i32>()
                    .map(i64::from)
                    .map_err(|_| CodecError::NotInt32(s.to_string()))
            };
            container.push(ContainerDevice {
                uuid: fields[0].trim().to_string(),
                vendor: fields[1].trim().to_string(),
                mem: int(fields[2])?,
                cores: int(fields[3])?,
                index: 0,
                mig: None,
            });
        }
        out.push(container);
    }
    Ok(out)
}

/// Effective use of one card by one pod after collapsing its containers (spec §8.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    pub uuid: String,
    pub mem: i64,
    pub cores: i64,
    pub slots: i64,
}

/// Collapses per-container devices into one entry per card, sorted by UUID: init containers
/// (positions below `init_count`) contribute their peak, app containers their sum, and the
/// effective use is the larger of the two (slots at least 1). With `app_only`, init containers
/// are ignored (they have all completed).
///
/// ```
/// # use hamr_guest::device::*;
/// let d = |m, c| ContainerDevice { uuid: "gpu0".into(), vendor: "NVIDIA".into(), mem: m, cores: c, index: 0, mig: None };
/// // init(100,10), app(200,20), app(300,30) -> (500, 50, 2)
/// let pod = vec![vec![d(100, 10)], vec![d(200, 20)], vec![d(300, 30)]];
/// assert_eq!(collapse(&pod, 1, false), vec![Usage { uuid: "gpu0".into(), mem: 500, cores: 50, slots: 2 }]);
/// ```
pub fn collapse(devices: &PodDevices, init_count: usize, app_only: bool) -> Vec<Usage> {
    #[derive(Default)]
    struct Acc {
        init_mem: i64,
        init_cores: i64,
        init_slots: i64,
        app_mem: i64,
        app_cores: i64,
        app_slots: i64,
    }
    let mut by_uuid: BTreeMap<&str, Acc> = BTreeMap::new();
    for (position, container) in devices.iter().enumerate() {
        let init = position < init_count;
        if init && app_only {
            continue;
        }
        for d in container {
            let acc = by_uuid.entry(d.uuid.as_str()).or_default();
            if init {
                acc.init_mem = acc.init_mem.max(d.mem);
                acc.init_cores = acc.init_cores.max(d.cores);
                acc.init_slots = 1;
            } else {
                acc.app_mem += d.mem;
                acc.app_cores += d.cores;
                acc.app_slots += 1;
            }
        }
    }
    by_uuid
        .into_iter()
        .map(|(uuid, a)| Usage {
            uuid: uuid.to_string(),
            mem: a.init_mem.max(a.app_mem),
            cores: a.init_cores.max(a.app_cores),
            slots: a.init_slots.max(a.app_slots).max(1),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(uuid: &str, mem: i64, cores: i64) -> ContainerDevice {
        ContainerDevice {
            uuid: uuid.into(),
            vendor: "NVIDIA".into(),
            mem,
            cores,
            index: 0,
            mig: None,
        }
    }

    fn one(mem: i64, cores: i64, slots: i64) -> Vec<Usage> {
        vec![Usage {
            uuid: "gpu0".into(),
            mem,
            cores,
            slots,
        }]
    }

    #[test]
    fn collapse_table_from_the_spec() {
        let d = |m, c| vec![dev("gpu0", m, c)];
        // (containers, init count, app only, expected)
        let table: Vec<(PodDevices, usize, bool, Vec<Usage>)> = vec![
            (vec![d(100, 10), d(200, 20)], 0, false, one(300, 30, 2)),
            (vec![d(100, 10), d(200, 30)], 2, false, one(200, 30, 1)),
            (vec![d(500, 50), d(100, 10)], 1, false, one(500, 50, 1)),
            (
                vec![d(100, 10), d(200, 20), d(300, 30)],
                1,
                false,
                one(500, 50, 2),
            ),
            (
                vec![d(100, 10), d(100, 10), d(100, 10)],
                0,
                false,
                one(300, 30, 3),
            ),
            (
                vec![d(999, 99), d(100, 10), d(200, 20)],
                1,
                true,
                one(300, 30, 2),
            ),
        ];
        for (i, (pod, init, app_only, want)) in table.into_iter().enumerate() {
            assert_eq!(collapse(&pod, init, app_only), want, "row {i}");
        }
    }

    #[test]
    fn round_trips_keep_container_positions() {
        let a = dev("UUID1", 1000, 30);
        let cases: Vec<(PodDevices, &str)> = vec![
            (vec![vec![a.clone()]], "UUID1,NVIDIA,1000,30:;"),
            (
                vec![vec![a.clone()], vec![a.clone()]],
                "UUID1,NVIDIA,1000,30:;UUID1,NVIDIA,1000,30:;",
            ),
            (vec![vec![], vec![a.clone()]], ";UUID1,NVIDIA,1000,30:;"),
        ];
        for (devices, text) in cases {
            assert_eq!(encode(&devices), text);
            assert_eq!(decode(text).expect("decodes"), devices, "decoding {text:?}");
        }
    }

    #[test]
    fn three_fields_is_an_error() {
        assert_eq!(
            decode("uuid,type,100:;"),
            Err(CodecError::MissingFields("uuid,type,100".into()))
        );
        assert_eq!(
            decode("u,NVIDIA,x,1:;"),
            Err(CodecError::NotInt32("x".into()))
        );
    }

    #[test]
    fn empty_annotation_is_one_empty_container() {
        assert_eq!(
            decode("").expect("decodes"),
            vec![Vec::<ContainerDevice>::new()]
        );
    }
}
