//! Iluvatar (spec hami-vendors.md §9): one backend per chip of the chart's `iluvatars` list,
//! colon registration, G-Fit; multi-card requests are made exclusive at admission.

use crate::api::{
    Container, ContainerEnv, ContainerLimit, ContainerRef, Invalid, Mutation, Node, Pairs, Pod,
};
use crate::config::Config;
use crate::device::{self, Card, DeviceInfo, Placed, PodDevices};
use crate::vendor::common::{self, Resources, Sharing};
use crate::vendor::{Fit, FitContext, QuotaResources, Request, Slot, Vendor};

/// MiB per memory unit.
pub const MEMORY_UNIT: i64 = 256;
/// The container-name variable the runtime reads (the typo is HAMi's).
pub const CONTAINER_NAME_ENV: &str = "SOL_CONTINER_NAME";

/// One Iluvatar chip; its keys derive from the common word `C`.
pub struct Iluvatar {
    pub common: &'static str,
    pub resource: &'static str,
    pub resource_memory: &'static str,
    pub resource_core: &'static str,
    pub register: &'static str,
    pub handshake: &'static str,
    pub use_uuid: &'static str,
    pub nouse_uuid: &'static str,
    pub to_allocate: &'static str,
    pub allocated: &'static str,
}

macro_rules! chip {
    ($name:ident, $c:literal) => {
        pub static $name: Iluvatar = Iluvatar {
            common: $c,
            resource: concat!("iluvatar.ai/", $c, "-vgpu"),
            resource_memory: concat!("iluvatar.ai/", $c, ".vMem"),
            resource_core: concat!("iluvatar.ai/", $c, ".vCore"),
            register: concat!("hami.io/node-", $c, "-register"),
            handshake: concat!("hami.io/node-handshake-", $c),
            use_uuid: concat!("hami.io/use-", $c, "-uuid"),
            nouse_uuid: concat!("hami.io/no-use-", $c, "-uuid"),
            to_allocate: concat!("hami.io/", $c, "-devices-to-allocate"),
            allocated: concat!("hami.io/", $c, "-devices-allocated"),
        };
    };
}

chip!(MR_V100, "MR-V100");
chip!(MR_V50, "MR-V50");
chip!(BI_V150, "BI-V150");
chip!(BI_V100, "BI-V100");

impl Vendor for Iluvatar {
    fn key(&self) -> &'static str {
        self.common
    }

    fn managed_resources(&self, _config: &Config) -> Vec<String> {
        vec![
            self.resource.to_string(),
            self.resource_memory.to_string(),
            self.resource_core.to_string(),
        ]
    }

    fn parse_node(&self, node: &Node) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
        common::parse_colon_registration(node, self.register)
    }

    fn liveness(&self, node: &Node, _config: &Config) -> crate::vendor::Liveness {
        common::handshake_liveness(node, self.handshake, self.resource)
    }

    fn handshake_key(&self) -> Option<&'static str> {
        Some(self.handshake)
    }

    /// Memory in units of 256 MiB, cores default 0: vMem 1000 and vCore 100 give 256000 MiB
    /// and 100 cores (IL-01).
    fn request(
        &self,
        c: &Container,
        slot: Slot<'_>,
        _config: &Config,
    ) -> Result<Option<Request>, Invalid> {
        let r = Resources { container: c, slot };
        let nums = r.integer(self.resource, 0, i64::from(i32::MAX), false)?;
        let mem = r.integer(
            self.resource_memory,
            0,
            i64::from(i32::MAX) / MEMORY_UNIT,
            false,
        )?;
        let core = r.integer(self.resource_core, 0, i64::from(i32::MAX), false)?;
        let Some(nums) = nums.filter(|n| *n > 0) else {
            return Ok(None);
        };
        let memreq = mem.unwrap_or(0) * MEMORY_UNIT;
        Ok(Some(Request {
            vendor: self.common,
            nums,
            memreq,
            mem_pct: if memreq == 0 { 100 } else { 0 },
            coresreq: core.unwrap_or(0),
        }))
    }

    /// A multi-card request gets `count*100` cores (exclusive cards); the container's name is
    /// passed as `SOL_CONTINER_NAME`.
    fn admit_container(
        &self,
        c: &Container,
        slot: Slot<'_>,
        cref: ContainerRef,
        config: &Config,
    ) -> Result<(bool, Vec<Mutation>), Invalid> {
        self.request(c, slot, config)?;
        let r = Resources { container: c, slot };
        if !r.in_limits(self.resource) {
            return Ok((false, Vec::new()));
        }
        let mut mutations = Vec::new();
        let count = r
            .integer(self.resource, 0, i64::from(i32::MAX), true)?
            .unwrap_or(0);
        if count > 1 {
            mutations.push(Mutation::SetLimit(ContainerLimit {
                container: cref,
                name: self.resource_core.to_string(),
                value: (count * 100).to_string(),
            }));
        }
        if !c.name.is_empty() && !c.env_names.iter().any(|n| n == CONTAINER_NAME_ENV) {
            mutations.push(Mutation::AddEnv(ContainerEnv {
                container: cref,
                name: CONTAINER_NAME_ENV.to_string(),
                value: c.name.clone(),
            }));
        }
        Ok((true, mutations))
    }

    fn owns(&self, card: &Card) -> bool {
        card.vendor == self.common
    }

    fn quota_resources<'a>(&self, _config: &'a Config) -> Option<QuotaResources<'a>> {
        Some(QuotaResources {
            memory: self.resource_memory,
            cores: self.resource_core,
            memory_factor: MEMORY_UNIT,
        })
    }

    fn fit(&self, cards: &[&Card], request: &Request, ctx: &FitContext<'_>) -> Fit {
        let sharing = Sharing {
            vendor: self.common,
            uuid_keys: (self.use_uuid, self.nouse_uuid),
            type_keys: None,
            quota: false,
            same_card: false,
            collect_all: false,
            total_core: None,
        };
        common::gfit(cards, request, ctx, &sharing).finish()
    }

    fn annotations(&self, devices: &PodDevices) -> Pairs {
        let encoded = device::encode(devices);
        vec![
            (self.to_allocate.to_string(), encoded.clone()),
            (self.allocated.to_string(), encoded),
        ]
    }

    fn allocated_key(&self) -> &'static str {
        self.allocated
    }

    fn decode_pod(&self, pod: &Pod) -> Result<Option<Placed>, Invalid> {
        common::decode_allocated(pod, self.allocated, self.common)
    }
}
