//! The in-memory MIG backend: the MIG cards of the fake devices file (cards with
//! `mig: {profiles: [...]}`), whose instances live in memory so that tests and demos can watch
//! them being created and destroyed. MIG device UUIDs are `MIG-<card uuid without GPU->/<gi>/<ci>`
//! (the shape of NVIDIA's legacy MIG names), so they are predictable.

use std::collections::BTreeMap;
use std::sync::Mutex;

use hamr_guest::device::Placement;

use super::{GiProfile, Instance, MigControl, MigError, Mode, Process};
use crate::discovery::Device;

/// MIG cards held in memory.
#[derive(Default)]
pub struct FakeMig {
    cards: Mutex<BTreeMap<String, Card>>,
}

#[derive(Clone, Debug)]
struct Card {
    mode: Mode,
    profiles: Vec<GiProfile>,
    instances: Vec<Instance>,
    processes: Vec<Process>,
}

impl FakeMig {
    /// The MIG cards among `devices` (those with profiles), with their mode as discovered.
    pub fn from_devices(devices: &[Device]) -> FakeMig {
        let cards = devices
            .iter()
            .filter(|d| !d.mig_profiles.is_empty())
            .map(|d| {
                (
                    d.id.clone(),
                    Card {
                        mode: Mode {
                            current: d.mig_enabled,
                            pending: d.mig_pending,
                        },
                        profiles: d.mig_profiles.clone(),
                        instances: Vec::new(),
                        processes: Vec::new(),
                    },
                )
            })
            .collect();
        FakeMig {
            cards: Mutex::new(cards),
        }
    }

    /// Sets the processes running on card `gpu` (ignored for an unknown card).
    pub fn set_processes(&self, gpu: &str, processes: Vec<Process>) {
        if let Some(card) = self.lock().get_mut(gpu) {
            card.processes = processes;
        }
    }

    /// Places an instance on the card as if someone else had created it (start-up tests).
    pub fn insert(&self, instance: Instance) {
        if let Some(card) = self.lock().get_mut(&instance.gpu) {
            card.instances.push(instance);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Card>> {
        self.cards.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with<T>(
        &self,
        gpu: &str,
        f: impl FnOnce(&mut Card) -> Result<T, MigError>,
    ) -> Result<T, MigError> {
        let mut cards = self.lock();
        let card = cards.get_mut(gpu).ok_or_else(|| MigError::UnknownCard {
            gpu: gpu.to_string(),
        })?;
        f(card)
    }
}

impl MigControl for FakeMig {
    fn cards(&self) -> Result<Vec<String>, MigError> {
        Ok(self.lock().keys().cloned().collect())
    }

    fn mode(&self, gpu: &str) -> Result<Mode, MigError> {
        self.with(gpu, |c| Ok(c.mode))
    }

    fn enable(&self, gpu: &str) -> Result<(), MigError> {
        self.with(gpu, |c| {
            if c.mode.current != c.mode.pending {
                return Err(MigError::PendingModeChange {
                    gpu: gpu.to_string(),
                    current: c.mode.current,
                    pending: c.mode.pending,
                });
            }
            c.mode = Mode {
                current: true,
                pending: true,
            };
            Ok(())
        })
    }

    fn profiles(&self, gpu: &str) -> Result<Vec<GiProfile>, MigError> {
        self.with(gpu, |c| Ok(c.profiles.clone()))
    }

    fn instances(&self, gpu: &str) -> Result<Vec<Instance>, MigError> {
        self.with(gpu, |c| Ok(c.instances.clone()))
    }

    fn create(
        &self,
        gpu: &str,
        profile_id: u32,
        placement: Placement,
    ) -> Result<Instance, MigError> {
        self.with(gpu, |c| {
            let nvml = |reason: &str| MigError::Nvml {
                gpu: gpu.to_string(),
                call: "nvmlDeviceCreateGpuInstanceWithPlacement",
                reason: reason.to_string(),
            };
            if !c.mode.current {
                return Err(nvml("Not Supported (MIG mode is off)"));
            }
            let legal = c
                .profiles
                .iter()
                .any(|p| p.id == profile_id && p.placements.contains(&placement));
            if !legal {
                return Err(nvml("Invalid Argument"));
            }
            if c.instances.iter().any(|i| i.placement.overlaps(&placement)) {
                return Err(nvml("Insufficient Resources"));
            }
            // NVML numbers GPU instances from 1 and reuses freed ids; the lowest free id here.
            let gi = (1..)
                .find(|id| c.instances.iter().all(|i| i.gi != *id))
                .unwrap_or(u32::MAX);
            let instance = Instance {
                gpu: gpu.to_string(),
                profile_id,
                placement,
                gi,
                ci: 0,
                uuid: format!("MIG-{}/{gi}/0", gpu.trim_start_matches("GPU-")),
            };
            c.instances.push(instance.clone());
            Ok(instance)
        })
    }

    fn destroy(&self, gpu: &str, gi: u32) -> Result<(), MigError> {
        self.with(gpu, |c| {
            c.instances.retain(|i| i.gi != gi);
            Ok(())
        })
    }

    fn processes(&self, gpu: &str) -> Result<Vec<Process>, MigError> {
        self.with(gpu, |c| Ok(c.processes.clone()))
    }
}
