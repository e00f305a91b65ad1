//! The registrations of the vendors other than NVIDIA, each under its HAMi key and in its HAMi
//! format (hami-vendors.md §0, §1.3), for the devices discovery found (the `fake` backend
//! describes any vendor). The formats are the guest library's: its encoders write what its
//! parsers read, and the tests parse every value back through the guest's vendor.
//!
//! | vendor key | annotation | format |
//! | --- | --- | --- |
//! | `Metax-SGPU` | `metax-tech.com/node-gpu-devices` | MetaX's JSON (`uuid`, `totalVRam`, ...) |
//! | `XPU` (Kunlunxin vXPU) | `hami.io/node-register-xpu` | JSON |
//! | `Enflame` (DRS) | `enflame.com/gcu-drs-capacity` | `{"devices":[...],"profiles":{...}}` |
//! | `Ascend910A` ... `Ascend910C` | `hami.io/node-register-<chip>` | JSON, `custominfo.NetworkID` a number |
//! | `DCU` (Hygon) | `hami.io/node-dcu-register` | colon |
//! | `MR-V100`, `MR-V50`, `BI-V150`, `BI-V100` (Iluvatar) | `hami.io/node-<chip>-register` | colon |
//! | `Biren` | `hami.io/node-biren-register` | JSON |
//! | `AMD` | `hami.io/node-amd-register` | JSON |
//! | `Vastai` | `hami.io/node-va-register` | JSON, `custominfo` `DeviceStrategy`, `AIC` |
//!
//! Per device: `count` = the device's `count` (the slots its vendor's plugin offers), else
//! `deviceSplitCount`; `devmem` = its MiB; `devcore` = its cores in the vendor's unit (AMD: the
//! CU count). `deviceMemoryScaling` and `deviceCoreScaling` belong to HAMi's `nvidia:` section
//! and are not applied. `type` = the model, or the vendor key when the model is empty. Extras
//! go into `custominfo` as strings (Ascend's `NetworkID` as a number).
//!
//! Vendors HAMi reads from node capacity (`Metax-GPU`, `kunlun`, `GCU`, `AWSNeuron`, `MLU`,
//! `Mthreads`) have no registration annotation; their kubelet resources are their own device
//! plugins' business. No handshake key is written: HAMi's plugins write none any more
//! (node-side.md §2.8); the scheduler stamps `Requesting_<t>` and then reads allocatable.

use std::collections::BTreeMap;

use hamr_guest::device::DeviceInfo;
use hamr_guest::vendor::common::{
    EncodeError, Registered, encode_colon_registration, encode_json_registration,
};
use hamr_guest::vendor::enflame::drs::{DrsCard, encode_registration as encode_drs, parse_profile};
use hamr_guest::vendor::{amd, ascend, biren, enflame, hygon, iluvatar, kunlun, metax, vastai};
use serde_json::{Map, Value};

use crate::config::Config;
use crate::discovery::{Device, NVIDIA};

/// How one vendor's cards are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// HAMi's JSON device list (§1.3).
    Json,
    /// HAMi's colon list (§1.3).
    Colon,
    /// `metax-tech.com/node-gpu-devices`.
    MetaxSgpu,
    /// `enflame.com/gcu-drs-capacity`.
    EnflameDrs,
}

/// The annotation key and format of a vendor key; `None` for NVIDIA (see [`super`]) and for
/// vendors without a registration annotation.
pub fn format_of(vendor: &str) -> Option<(&'static str, Format)> {
    let ascend = [
        &ascend::ASCEND_910A,
        &ascend::ASCEND_910B2,
        &ascend::ASCEND_910B3,
        &ascend::ASCEND_910B4_1,
        &ascend::ASCEND_910B4,
        &ascend::ASCEND_310P,
        &ascend::ASCEND_910C,
    ];
    if let Some(chip) = ascend.iter().find(|c| c.common == vendor) {
        return Some((chip.register, Format::Json));
    }
    let iluvatar = [
        &iluvatar::MR_V100,
        &iluvatar::MR_V50,
        &iluvatar::BI_V150,
        &iluvatar::BI_V100,
    ];
    if let Some(chip) = iluvatar.iter().find(|c| c.common == vendor) {
        return Some((chip.register, Format::Colon));
    }
    Some(match vendor {
        metax::SGPU_VENDOR => (metax::REGISTER, Format::MetaxSgpu),
        kunlun::VXPU_VENDOR => (kunlun::REGISTER, Format::Json),
        enflame::SHARED_VENDOR => (enflame::DRS_CAPACITY, Format::EnflameDrs),
        hygon::VENDOR => (hygon::REGISTER, Format::Colon),
        biren::VENDOR => (biren::REGISTER, Format::Json),
        amd::VENDOR => (amd::REGISTER, Format::Json),
        vastai::VENDOR => (vastai::REGISTER, Format::Json),
        _ => return None,
    })
}

/// The extra that carries Enflame's profiles: `name=id` pairs, comma-separated.
pub const ENFLAME_PROFILES: &str = "profiles";
/// Enflame's device minor (default: the index).
pub const ENFLAME_MINOR: &str = "minor";
/// MetaX's QoS policy and MetaXLink zone.
pub const METAX_QOS: &str = "qosPolicy";
pub const METAX_LINK_ZONE: &str = "linkZone";
/// Ascend's HCCS network id.
pub const ASCEND_NETWORK_ID: &str = "NetworkID";

/// A device whose registration cannot be written; `field` is relative to the device
/// (`model`, `extras.NetworkID`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("device {id:?} ({vendor}): {field} {value:?} {message}")]
pub struct VendorError {
    pub id: String,
    pub vendor: String,
    pub field: String,
    pub value: String,
    pub message: String,
}

impl VendorError {
    fn new(d: &Device, field: impl Into<String>, value: &str, message: impl Into<String>) -> Self {
        VendorError {
            id: d.id.clone(),
            vendor: d.vendor.clone(),
            field: field.into(),
            value: value.to_string(),
            message: message.into(),
        }
    }

    /// An encoder's error, named after the device it is about (the first one if it names none
    /// of `cards`).
    fn encode(cards: &[&Device], e: EncodeError) -> Self {
        let d = cards.iter().find(|d| d.id == e.device).unwrap_or(&cards[0]);
        let field = match e.field {
            "type" => "model".to_string(),
            "uuid" => "id".to_string(),
            "linkZone" => format!("extras.{METAX_LINK_ZONE}"),
            other => other.to_string(),
        };
        VendorError::new(d, field, &e.value, e.message)
    }
}

/// Every non-NVIDIA registration annotation for `devices`, by key. Devices of vendors without
/// a registration annotation are left out.
///
/// ```
/// # use hamr_node_agent::{config::Config, discovery::Device, register::vendors::registrations};
/// let dcu = Device { id: "DCU-0".into(), vendor: "DCU".into(), model: "DCU-K100_AI".into(),
///     memory_mib: 65536, cores: 100, healthy: true, count: Some(4), ..Device::default() };
/// let values = registrations(&[dcu], &Config::default()).unwrap();
/// assert_eq!(values["hami.io/node-dcu-register"], "DCU-0,4,65536,100,DCU-K100_AI,0,true,0,hami-core:");
/// ```
pub fn registrations(
    devices: &[Device],
    config: &Config,
) -> Result<BTreeMap<String, String>, VendorError> {
    let mut by_key: BTreeMap<&'static str, (Format, Vec<&Device>)> = BTreeMap::new();
    for d in devices.iter().filter(|d| d.vendor != NVIDIA) {
        if let Some((key, format)) = format_of(&d.vendor) {
            by_key.entry(key).or_insert((format, Vec::new())).1.push(d);
        }
    }
    let mut out = BTreeMap::new();
    for (key, (format, mut cards)) in by_key {
        cards.sort_by_key(|d| d.index);
        let value = match format {
            Format::Json => encode_json_registration(
                &cards
                    .iter()
                    .map(|d| json_card(d, config))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Format::Colon => {
                let infos: Vec<DeviceInfo> = cards
                    .iter()
                    .map(|d| DeviceInfo {
                        // The 7-field form's implied mode, written out.
                        mode: "hami-core".to_string(),
                        ..info(d, config)
                    })
                    .collect();
                encode_colon_registration(&infos).map_err(|e| VendorError::encode(&cards, e))?
            }
            Format::MetaxSgpu => metax_value(&cards, config)?,
            Format::EnflameDrs => enflame_value(&cards)?,
        };
        out.insert(key.to_string(), value);
    }
    Ok(out)
}

/// The generic fields of a device's registration.
fn info(d: &Device, config: &Config) -> DeviceInfo {
    DeviceInfo {
        id: d.id.clone(),
        index: d.index,
        count: i64::from(d.count.unwrap_or(config.device_split_count)),
        // HAMi's fields are int32.
        devmem: d.memory_mib.min(i32::MAX as u64) as i64,
        devcore: i64::from(d.cores.min(i32::MAX as u32)),
        model: if d.model.is_empty() {
            d.vendor.clone()
        } else {
            d.model.clone()
        },
        numa: i64::from(d.numa),
        health: d.healthy,
        ..DeviceInfo::default()
    }
}

/// A device of a JSON registration with its `custominfo`.
fn json_card(d: &Device, config: &Config) -> Result<Registered, VendorError> {
    let info = info(d, config);
    // The scheduler finds a vendor's cards by their type (hami-vendors.md A13, §3.3).
    let must_contain = match d.vendor.as_str() {
        amd::VENDOR => Some("amd"),
        kunlun::VXPU_VENDOR => Some("xpu"),
        _ => None,
    };
    if let Some(word) = must_contain
        && !info.model.to_ascii_lowercase().contains(word)
    {
        return Err(VendorError::new(
            d,
            "model",
            &info.model,
            format!(
                "must contain {word:?} (case-insensitive): the scheduler finds these cards by their type"
            ),
        ));
    }
    let mut custom = Map::new();
    for (k, v) in &d.extras {
        let value = if k.eq_ignore_ascii_case(ASCEND_NETWORK_ID) {
            let n: f64 = v
                .trim()
                .parse()
                .map_err(|_| VendorError::new(d, format!("extras.{k}"), v, "is not a number"))?;
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                // Go writes a whole float64 without a fraction (`3`, not `3.0`).
                Value::from(n as i64)
            } else {
                serde_json::Number::from_f64(n)
                    .map(Value::Number)
                    .ok_or_else(|| {
                        VendorError::new(d, format!("extras.{k}"), v, "is not a finite number")
                    })?
            }
        } else {
            Value::String(v.clone())
        };
        custom.insert(k.clone(), value);
    }
    Ok(Registered { info, custom })
}

/// `metax-tech.com/node-gpu-devices` (the position in the list is the index HAMi reads).
fn metax_value(cards: &[&Device], config: &Config) -> Result<String, VendorError> {
    let mut infos = Vec::with_capacity(cards.len());
    for d in cards {
        let mut info = info(d, config);
        info.custom.insert("model".into(), d.model.clone());
        if let Some(bdf) = &d.pci_bus_id {
            info.custom.insert("bdf".into(), bdf.clone());
        }
        for (k, v) in &d.extras {
            if k == METAX_QOS {
                if !v.is_empty() && !metax::QOS_VALUES.contains(&v.as_str()) {
                    return Err(VendorError::new(
                        d,
                        format!("extras.{k}"),
                        v,
                        format!("is not one of {:?}", metax::QOS_VALUES),
                    ));
                }
                info.custom.insert("qospolicy".into(), v.clone());
            } else if k == METAX_LINK_ZONE {
                info.custom.insert("linkzone".into(), v.clone());
            } else {
                return Err(VendorError::new(
                    d,
                    format!("extras.{k}"),
                    v,
                    format!("is not a MetaX fact (want {METAX_QOS} or {METAX_LINK_ZONE})"),
                ));
            }
        }
        infos.push(info);
    }
    metax::sgpu::encode_registration(&infos).map_err(|e| VendorError::encode(cards, e))
}

/// `enflame.com/gcu-drs-capacity`: every card must carry the node's profile list
/// (`extras.profiles: "1g.6gb=0,3g.20gb=1"`); a card's capacity is its `count`, else the
/// largest profile's slices.
fn enflame_value(cards: &[&Device]) -> Result<String, VendorError> {
    let mut node_profiles: Option<(BTreeMap<String, String>, &Device)> = None;
    let mut out = Vec::with_capacity(cards.len());
    for d in cards {
        let field = format!("extras.{ENFLAME_PROFILES}");
        let text = d.extras.get(ENFLAME_PROFILES).ok_or_else(|| {
            VendorError::new(
                d,
                &field,
                "",
                "is missing: want name=id pairs like 1g.6gb=0,3g.20gb=1",
            )
        })?;
        let mut profiles = BTreeMap::new();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, id)) = pair.split_once('=') else {
                return Err(VendorError::new(d, &field, pair, "is not name=id"));
            };
            let (name, id) = (name.trim(), id.trim());
            match parse_profile(name) {
                Some((size, _)) if size > 0 => {}
                _ => {
                    return Err(VendorError::new(
                        d,
                        &field,
                        name,
                        "is not a profile name <slices>g.<memory>gb",
                    ));
                }
            }
            profiles.insert(name.to_string(), id.to_string());
        }
        if profiles.is_empty() {
            return Err(VendorError::new(d, &field, text, "names no profile"));
        }
        for k in d.extras.keys() {
            if k != ENFLAME_PROFILES && k != ENFLAME_MINOR {
                return Err(VendorError::new(
                    d,
                    format!("extras.{k}"),
                    &d.extras[k],
                    format!("is not an Enflame fact (want {ENFLAME_PROFILES} or {ENFLAME_MINOR})"),
                ));
            }
        }
        match &node_profiles {
            Some((first, other)) if *first != profiles => {
                return Err(VendorError::new(
                    d,
                    &field,
                    text,
                    format!(
                        "differs from device {:?}'s: the node registers one profile list",
                        other.id
                    ),
                ));
            }
            Some(_) => {}
            None => node_profiles = Some((profiles.clone(), d)),
        }
        let max_slice = profiles
            .keys()
            .filter_map(|n| parse_profile(n))
            .map(|p| p.0)
            .max()
            .unwrap_or(1);
        let capacity = d.count.map_or(max_slice, i64::from);
        if capacity <= 0 || capacity > i64::from(i32::MAX) {
            return Err(VendorError::new(
                d,
                "count",
                &capacity.to_string(),
                "must be in 1..=2147483647",
            ));
        }
        out.push(DrsCard {
            index: d.index,
            minor: d
                .extras
                .get(ENFLAME_MINOR)
                .cloned()
                .unwrap_or_else(|| d.index.to_string()),
            capacity,
        });
    }
    let profiles = node_profiles.map(|p| p.0).unwrap_or_default();
    Ok(encode_drs(&out, &profiles))
}

#[cfg(test)]
mod tests;
