//! The NVML MIG backend. nvml-wrapper covers MIG mode, profile info and MIG device handles;
//! GPU/compute-instance create, destroy and enumeration are not wrapped (node-side.md §8), so
//! this file calls them through the raw function table of the loaded library
//! ([`Nvml::lib`], nvml-wrapper-sys's `NvmlLib`). It is the crate's only `unsafe` code: each
//! block states why it is sound, and each raw call is wrapped in a safe function returning
//! [`NvmlError`] (a symbol the installed driver lacks is `FailedToLoadSymbol`, never a panic).
//!
//! nvml-wrapper 0.13's `Device::possible_placements` returns an empty list (it fills a
//! `Vec`'s spare capacity without setting its length), so placements are read here as well.
#![allow(unsafe_code)] // the raw NVML calls below; the crate denies unsafe code elsewhere

use std::mem::MaybeUninit;
use std::sync::Arc;

use hamr_guest::device::Placement;
use nvml_wrapper::error::{NvmlError, nvml_sym, nvml_try};
use nvml_wrapper::{Device, Nvml};
use nvml_wrapper_sys::bindings::{
    NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED, NvmlLib, nvmlComputeInstance_t,
    nvmlComputeInstanceInfo_t, nvmlComputeInstanceProfileInfo_t, nvmlGpuInstance_t,
    nvmlGpuInstanceInfo_t, nvmlGpuInstancePlacement_t,
};

use super::{BASE_PROFILES, GiProfile, Instance, MigControl, MigError, Mode, Process};

/// Compute-instance profile ids by slice count (`NVML_COMPUTE_INSTANCE_PROFILE_N_SLICE`):
/// 1→0, 2→1, 3→2, 4→3, 7→4, 8→5, 6→6.
fn ci_profile_id(slices: u32) -> Option<u32> {
    super::profile_id(slices)
}

/// One GPU instance handle, valid while NVML is initialised (the `&NvmlLib` borrow of the
/// long-lived [`Nvml`]) and until the instance is destroyed. Neither `Copy` nor `Clone`:
/// [`GpuInstance::destroy`] consumes the only copy, so it cannot be used after.
struct GpuInstance<'a> {
    lib: &'a NvmlLib,
    handle: nvmlGpuInstance_t,
}

/// One compute instance handle, with the same validity (and ownership) as [`GpuInstance`].
struct ComputeInstance<'a> {
    lib: &'a NvmlLib,
    handle: nvmlComputeInstance_t,
}

/// How many of a `capacity`-long buffer NVML filled when it reports `count`: a count above the
/// capacity means entries were left out, which is an error (`InsufficientSize`, with the count
/// NVML needs) rather than a silently shortened list.
fn filled(count: u32, capacity: usize) -> Result<usize, NvmlError> {
    let n = count as usize;
    if n > capacity {
        Err(NvmlError::InsufficientSize(Some(n)))
    } else {
        Ok(n)
    }
}

/// The legal placements of GPU-instance profile `profile` on `device`
/// (`nvmlDeviceGetGpuInstancePossiblePlacements_v2`).
pub fn possible_placements(device: &Device<'_>, profile: u32) -> Result<Vec<Placement>, NvmlError> {
    let lib = device.nvml().lib();
    let sym = nvml_sym(lib.nvmlDeviceGetGpuInstancePossiblePlacements_v2.as_ref())?;
    // A GPU instance profile has at most 8 placements (8 memory slices); NVML writes at most
    // `count` entries and sets `count` to how many it wrote.
    let mut buf = [nvmlGpuInstancePlacement_t { start: 0, size: 0 }; 16];
    let mut count: u32 = buf.len() as u32;
    // SAFETY: `device.handle()` is a live handle of the same `Nvml` that owns `lib`; `buf`
    // holds `count` writable elements and `count` is a valid out-pointer.
    nvml_try(unsafe { sym(device.handle(), profile, buf.as_mut_ptr(), &mut count) })?;
    let n = filled(count, buf.len())?;
    Ok(buf[..n]
        .iter()
        .map(|p| Placement {
            start: p.start,
            size: p.size,
        })
        .collect())
}

/// The card's base GPU-instance profiles that it supports (`NOT_SUPPORTED` and
/// `INVALID_ARGUMENT` skip a profile), with their placements; none while MIG is off. Reads
/// only; never changes the MIG mode.
///
/// With MIG off, NVML's placements are not the card's: on an H200 (driver 580.159.04)
/// `nvmlDeviceGetGpuInstancePossiblePlacements_v2` answers `INVALID_ARGUMENT` for the 2-, 3-,
/// 4- and 7-slice profiles and one `{start 0, size 8}` for the 1-slice profile, whose seven
/// instances sit at 0..6 once MIG is on. Publishing that would place pods on slices that do
/// not exist; the MIG start-up enables the mode and rescans (node-side.md §6.6).
pub fn gi_profiles(device: &Device<'_>) -> Vec<GiProfile> {
    let enabled = device
        .mig_mode()
        .is_ok_and(|m| m.current == nvml_wrapper_sys::bindings::NVML_DEVICE_MIG_ENABLE);
    if !enabled {
        return Vec::new();
    }
    BASE_PROFILES
        .iter()
        .filter_map(|&id| {
            let info = device.profile_info(id).ok()?;
            let placements = possible_placements(device, id).ok()?;
            Some(GiProfile {
                id,
                slice_count: info.slice_count,
                instance_count: info.instance_count,
                multiprocessors: info.multiprocessor_count,
                memory_mib: info.memory_size_mb,
                placements,
            })
        })
        .collect()
}

/// The GPU instances of profile `profile` on `device` (`nvmlDeviceGetGpuInstances`).
fn gpu_instances<'a>(device: &Device<'a>, profile: u32) -> Result<Vec<GpuInstance<'a>>, NvmlError> {
    let lib = device.nvml().lib();
    let sym = nvml_sym(lib.nvmlDeviceGetGpuInstances.as_ref())?;
    let mut buf: [nvmlGpuInstance_t; 16] = [std::ptr::null_mut(); 16];
    let mut count: u32 = buf.len() as u32;
    // SAFETY: live device handle; `buf` has room for 16 handles, twice the most GPU instances a card
    // can hold (8 memory slices), and NVML writes `count` of them.
    nvml_try(unsafe { sym(device.handle(), profile, buf.as_mut_ptr(), &mut count) })?;
    let n = filled(count, buf.len())?;
    Ok(buf[..n]
        .iter()
        .map(|&handle| GpuInstance { lib, handle })
        .collect())
}

/// GPU instance `id` of `device` (`nvmlDeviceGetGpuInstanceById`).
fn gpu_instance_by_id<'a>(device: &Device<'a>, id: u32) -> Result<GpuInstance<'a>, NvmlError> {
    let lib = device.nvml().lib();
    let sym = nvml_sym(lib.nvmlDeviceGetGpuInstanceById.as_ref())?;
    let mut handle: nvmlGpuInstance_t = std::ptr::null_mut();
    // SAFETY: live device handle; `handle` is a valid out-pointer.
    nvml_try(unsafe { sym(device.handle(), id, &mut handle) })?;
    Ok(GpuInstance { lib, handle })
}

/// Creates a GPU instance of `profile` at `placement`
/// (`nvmlDeviceCreateGpuInstanceWithPlacement`).
fn create_gpu_instance<'a>(
    device: &Device<'a>,
    profile: u32,
    placement: Placement,
) -> Result<GpuInstance<'a>, NvmlError> {
    let lib = device.nvml().lib();
    let sym = nvml_sym(lib.nvmlDeviceCreateGpuInstanceWithPlacement.as_ref())?;
    let raw = nvmlGpuInstancePlacement_t {
        start: placement.start,
        size: placement.size,
    };
    let mut handle: nvmlGpuInstance_t = std::ptr::null_mut();
    // SAFETY: live device handle; `raw` outlives the call; `handle` is a valid out-pointer.
    nvml_try(unsafe { sym(device.handle(), profile, &raw, &mut handle) })?;
    Ok(GpuInstance { lib, handle })
}

impl<'a> GpuInstance<'a> {
    /// `nvmlGpuInstanceGetInfo`.
    fn info(&self) -> Result<nvmlGpuInstanceInfo_t, NvmlError> {
        let sym = nvml_sym(self.lib.nvmlGpuInstanceGetInfo.as_ref())?;
        let mut info = MaybeUninit::<nvmlGpuInstanceInfo_t>::zeroed();
        // SAFETY: `self.handle` came from NVML for an existing instance; `info` is a writable
        // struct of the size NVML expects, read only after NVML reported success.
        nvml_try(unsafe { sym(self.handle, info.as_mut_ptr()) })?;
        // SAFETY: NVML filled the struct (success above); all-zero is also a valid value.
        Ok(unsafe { info.assume_init() })
    }

    /// `nvmlGpuInstanceDestroy`.
    fn destroy(self) -> Result<(), NvmlError> {
        let sym = nvml_sym(self.lib.nvmlGpuInstanceDestroy.as_ref())?;
        // SAFETY: the handle is live; `self` is consumed so it is not used after.
        nvml_try(unsafe { sym(self.handle) })
    }

    /// `nvmlGpuInstanceGetComputeInstanceProfileInfo` with shared engines.
    fn ci_profile(&self, profile: u32) -> Result<nvmlComputeInstanceProfileInfo_t, NvmlError> {
        let sym = nvml_sym(
            self.lib
                .nvmlGpuInstanceGetComputeInstanceProfileInfo
                .as_ref(),
        )?;
        let mut info = MaybeUninit::<nvmlComputeInstanceProfileInfo_t>::zeroed();
        // SAFETY: live GI handle; `info` is a writable struct of the expected size.
        nvml_try(unsafe {
            sym(
                self.handle,
                profile,
                NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED,
                info.as_mut_ptr(),
            )
        })?;
        // SAFETY: filled by NVML on success; all-zero is also valid.
        Ok(unsafe { info.assume_init() })
    }

    /// `nvmlGpuInstanceCreateComputeInstance`.
    fn create_ci(&self, profile: u32) -> Result<ComputeInstance<'a>, NvmlError> {
        let sym = nvml_sym(self.lib.nvmlGpuInstanceCreateComputeInstance.as_ref())?;
        let mut handle: nvmlComputeInstance_t = std::ptr::null_mut();
        // SAFETY: live GI handle; `handle` is a valid out-pointer.
        nvml_try(unsafe { sym(self.handle, profile, &mut handle) })?;
        Ok(ComputeInstance {
            lib: self.lib,
            handle,
        })
    }

    /// The compute instances of CI profile `profile` (`nvmlGpuInstanceGetComputeInstances`).
    fn compute_instances(&self, profile: u32) -> Result<Vec<ComputeInstance<'a>>, NvmlError> {
        let sym = nvml_sym(self.lib.nvmlGpuInstanceGetComputeInstances.as_ref())?;
        let mut buf: [nvmlComputeInstance_t; 16] = [std::ptr::null_mut(); 16];
        let mut count: u32 = buf.len() as u32;
        // SAFETY: live GI handle; `buf` has room for 16 handles, twice the most compute instances a GI
        // can hold (8 compute slices); NVML writes `count` of them.
        nvml_try(unsafe { sym(self.handle, profile, buf.as_mut_ptr(), &mut count) })?;
        let n = filled(count, buf.len())?;
        Ok(buf[..n]
            .iter()
            .map(|&handle| ComputeInstance {
                lib: self.lib,
                handle,
            })
            .collect())
    }

    /// Every compute instance of this GPU instance, over all CI profiles.
    fn all_compute_instances(&self) -> Vec<ComputeInstance<'a>> {
        (0..8u32)
            .filter_map(|p| self.compute_instances(p).ok())
            .flatten()
            .collect()
    }
}

impl ComputeInstance<'_> {
    /// `nvmlComputeInstanceGetInfo_v2`.
    fn info(&self) -> Result<nvmlComputeInstanceInfo_t, NvmlError> {
        let sym = nvml_sym(self.lib.nvmlComputeInstanceGetInfo_v2.as_ref())?;
        let mut info = MaybeUninit::<nvmlComputeInstanceInfo_t>::zeroed();
        // SAFETY: live CI handle; `info` is a writable struct of the expected size.
        nvml_try(unsafe { sym(self.handle, info.as_mut_ptr()) })?;
        // SAFETY: filled by NVML on success; all-zero (null pointers, zero ids) is also valid.
        Ok(unsafe { info.assume_init() })
    }

    /// `nvmlComputeInstanceDestroy`.
    fn destroy(self) -> Result<(), NvmlError> {
        let sym = nvml_sym(self.lib.nvmlComputeInstanceDestroy.as_ref())?;
        // SAFETY: the handle is live; `self` is consumed so it is not used after.
        nvml_try(unsafe { sym(self.handle) })
    }
}

/// The GPU-instance id of a MIG device handle (`nvmlDeviceGetGpuInstanceId`).
fn mig_gpu_instance_id(mig: &Device<'_>) -> Result<u32, NvmlError> {
    let sym = nvml_sym(mig.nvml().lib().nvmlDeviceGetGpuInstanceId.as_ref())?;
    let mut id: u32 = 0;
    // SAFETY: `mig` is a live MIG device handle of the same NVML; `id` is a valid out-pointer.
    nvml_try(unsafe { sym(mig.handle(), &mut id) })?;
    Ok(id)
}

/// Dynamic MIG on real cards, over the agent's one NVML handle.
pub struct NvmlMig {
    nvml: Arc<Nvml>,
}

impl NvmlMig {
    pub fn new(nvml: Arc<Nvml>) -> NvmlMig {
        NvmlMig { nvml }
    }

    fn device(&self, gpu: &str) -> Result<Device<'_>, MigError> {
        self.nvml.device_by_uuid(gpu).map_err(|e| match e {
            NvmlError::NotFound | NvmlError::InvalidArg => MigError::UnknownCard {
                gpu: gpu.to_string(),
            },
            other => fail(gpu, "nvmlDeviceGetHandleByUUID")(other),
        })
    }

    /// The MIG device UUID and first compute instance of GPU instance `gi`. A MIG UUID that
    /// cannot be read is left empty (logged) rather than failing the card's whole listing: such
    /// an instance is never reused nor matched to a recorded one, and still counts as occupying
    /// its slices.
    fn describe(
        &self,
        gpu: &str,
        device: &Device<'_>,
        instance: GpuInstance<'_>,
    ) -> Result<Instance, MigError> {
        let info = instance
            .info()
            .map_err(fail(gpu, "nvmlGpuInstanceGetInfo"))?;
        let ci = instance
            .all_compute_instances()
            .first()
            .and_then(|c| c.info().ok())
            .map_or(u32::MAX, |c| c.id);
        let uuid = if ci == u32::MAX {
            String::new()
        } else {
            self.mig_uuid(gpu, device, info.id).unwrap_or_else(|error| {
                tracing::warn!(%error, gi = info.id, "MIG device UUID unreadable; listed without it");
                String::new()
            })
        };
        Ok(Instance {
            gpu: gpu.to_string(),
            profile_id: info.profileId,
            placement: Placement {
                start: info.placement.start,
                size: info.placement.size,
            },
            gi: info.id,
            ci,
            uuid,
        })
    }

    /// The UUID of the MIG device of GPU instance `gi` (node-side.md §6.5 step 6).
    fn mig_uuid(&self, gpu: &str, device: &Device<'_>, gi: u32) -> Result<String, MigError> {
        let max = device
            .mig_device_count()
            .map_err(fail(gpu, "nvmlDeviceGetMaxMigDeviceCount"))?;
        for i in 0..max {
            let Ok(mig) = device.mig_device_by_index(i) else {
                continue;
            };
            if mig_gpu_instance_id(&mig).ok() == Some(gi) {
                return mig.uuid().map_err(fail(gpu, "nvmlDeviceGetUUID"));
            }
        }
        Err(MigError::Nvml {
            gpu: gpu.to_string(),
            call: "nvmlDeviceGetMigDeviceHandleByIndex",
            reason: format!("no MIG device for GPU instance {gi}"),
        })
    }
}

/// Maps an NVML error of `call` on `gpu` to [`MigError::Nvml`].
fn fail<'a>(gpu: &'a str, call: &'static str) -> impl Fn(NvmlError) -> MigError + 'a {
    move |e| MigError::Nvml {
        gpu: gpu.to_string(),
        call,
        reason: e.to_string().replace('\n', " "),
    }
}

impl MigControl for NvmlMig {
    fn cards(&self) -> Result<Vec<String>, MigError> {
        let count = self
            .nvml
            .device_count()
            .map_err(fail("*", "nvmlDeviceGetCount"))?;
        let mut out = Vec::new();
        for i in 0..count {
            let Ok(device) = self.nvml.device_by_index(i) else {
                continue;
            };
            // Cards without MIG answer NOT_SUPPORTED.
            if device.mig_mode().is_ok()
                && let Ok(uuid) = device.uuid()
            {
                out.push(uuid);
            }
        }
        Ok(out)
    }

    fn mode(&self, gpu: &str) -> Result<Mode, MigError> {
        let device = self.device(gpu)?;
        match device.mig_mode() {
            Ok(m) => Ok(Mode {
                current: m.current == nvml_wrapper_sys::bindings::NVML_DEVICE_MIG_ENABLE,
                pending: m.pending == nvml_wrapper_sys::bindings::NVML_DEVICE_MIG_ENABLE,
            }),
            Err(NvmlError::NotSupported) => Err(MigError::NotSupported {
                gpu: gpu.to_string(),
            }),
            Err(e) => Err(fail(gpu, "nvmlDeviceGetMigMode")(e)),
        }
    }

    fn enable(&self, gpu: &str) -> Result<(), MigError> {
        let device = self.device(gpu)?;
        device
            .set_mig_mode(true)
            .map_err(fail(gpu, "nvmlDeviceSetMigMode"))?;
        // The switch can reset the card: take a fresh handle and check what it reports.
        let mode = self.mode(gpu)?;
        if !(mode.current && mode.pending) {
            return Err(MigError::PendingModeChange {
                gpu: gpu.to_string(),
                current: mode.current,
                pending: mode.pending,
            });
        }
        Ok(())
    }

    fn profiles(&self, gpu: &str) -> Result<Vec<GiProfile>, MigError> {
        Ok(gi_profiles(&self.device(gpu)?))
    }

    fn instances(&self, gpu: &str) -> Result<Vec<Instance>, MigError> {
        let device = self.device(gpu)?;
        let mut out = Vec::new();
        for profile in BASE_PROFILES {
            let instances = match gpu_instances(&device, profile) {
                Ok(list) => list,
                Err(NvmlError::NotSupported | NvmlError::InvalidArg) => continue,
                Err(e) => return Err(fail(gpu, "nvmlDeviceGetGpuInstances")(e)),
            };
            for instance in instances {
                out.push(self.describe(gpu, &device, instance)?);
            }
        }
        out.sort_by_key(|i| i.gi);
        Ok(out)
    }

    fn create(
        &self,
        gpu: &str,
        profile_id: u32,
        placement: Placement,
    ) -> Result<Instance, MigError> {
        let device = self.device(gpu)?;
        let instance = create_gpu_instance(&device, profile_id, placement)
            .map_err(fail(gpu, "nvmlDeviceCreateGpuInstanceWithPlacement"))?;
        let result = (|| {
            let info = instance
                .info()
                .map_err(fail(gpu, "nvmlGpuInstanceGetInfo"))?;
            let slices = device
                .profile_info(profile_id)
                .map_err(fail(gpu, "nvmlDeviceGetGpuInstanceProfileInfo"))?
                .slice_count;
            let ci_profile = ci_profile_id(slices).ok_or_else(|| MigError::Nvml {
                gpu: gpu.to_string(),
                call: "nvmlGpuInstanceGetComputeInstanceProfileInfo",
                reason: format!("no compute-instance profile for {slices} slices"),
            })?;
            let ci_info = instance
                .ci_profile(ci_profile)
                .map_err(fail(gpu, "nvmlGpuInstanceGetComputeInstanceProfileInfo"))?;
            let ci = instance
                .create_ci(ci_info.id)
                .map_err(fail(gpu, "nvmlGpuInstanceCreateComputeInstance"))?;
            let ci_id = match ci.info() {
                Ok(i) => i.id,
                Err(e) => {
                    let _ = ci.destroy();
                    return Err(fail(gpu, "nvmlComputeInstanceGetInfo")(e));
                }
            };
            match self.mig_uuid(gpu, &device, info.id) {
                Ok(uuid) => Ok(Instance {
                    gpu: gpu.to_string(),
                    profile_id,
                    placement,
                    gi: info.id,
                    ci: ci_id,
                    uuid,
                }),
                Err(e) => {
                    let _ = ci.destroy();
                    Err(e)
                }
            }
        })();
        if result.is_err()
            && let Err(e) = instance.destroy()
        {
            tracing::warn!(card = %gpu, error = %e, "destroying a half-made GPU instance");
        }
        result
    }

    fn destroy(&self, gpu: &str, gi: u32) -> Result<(), MigError> {
        let device = self.device(gpu)?;
        let instance = match gpu_instance_by_id(&device, gi) {
            Ok(i) => i,
            Err(NvmlError::NotFound | NvmlError::InvalidArg) => return Ok(()),
            Err(e) => return Err(fail(gpu, "nvmlDeviceGetGpuInstanceById")(e)),
        };
        for ci in instance.all_compute_instances() {
            match ci.destroy() {
                Ok(()) | Err(NvmlError::NotFound) => {}
                Err(e) => return Err(fail(gpu, "nvmlComputeInstanceDestroy")(e)),
            }
        }
        match instance.destroy() {
            Ok(()) | Err(NvmlError::NotFound) => Ok(()),
            Err(e) => Err(fail(gpu, "nvmlGpuInstanceDestroy")(e)),
        }
    }

    fn processes(&self, gpu: &str) -> Result<Vec<Process>, MigError> {
        let device = self.device(gpu)?;
        let mut out: Vec<Process> = Vec::new();
        let mut add = |list: Vec<nvml_wrapper::struct_wrappers::device::ProcessInfo>,
                       gi: Option<u32>| {
            for p in list {
                let gi = p.gpu_instance_id.or(gi);
                if !out.iter().any(|q| q.pid == p.pid && q.gi == gi) {
                    out.push(Process { pid: p.pid, gi });
                }
            }
        };
        // A list that cannot be read counts as busy: the caller refuses.
        let compute = device
            .running_compute_processes()
            .map_err(fail(gpu, "nvmlDeviceGetComputeRunningProcesses"))?;
        add(compute, None);
        let graphics = device
            .running_graphics_processes()
            .map_err(fail(gpu, "nvmlDeviceGetGraphicsRunningProcesses"))?;
        add(graphics, None);
        // Per MIG device as well: the parent's list needs privileges to show MIG processes.
        if device.mig_mode().is_ok_and(|m| m.current == 1) {
            let max = device.mig_device_count().unwrap_or(0);
            for i in 0..max {
                let Ok(mig) = device.mig_device_by_index(i) else {
                    continue;
                };
                let gi = mig_gpu_instance_id(&mig).ok();
                let compute = mig
                    .running_compute_processes()
                    .map_err(fail(gpu, "nvmlDeviceGetComputeRunningProcesses"))?;
                add(compute, gi);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_above_the_buffer_is_an_error_not_a_shorter_list() {
        assert_eq!(filled(0, 16).ok(), Some(0));
        assert_eq!(filled(16, 16).ok(), Some(16));
        assert!(matches!(
            filled(17, 16),
            Err(NvmlError::InsufficientSize(Some(17)))
        ));
    }

    /// Reads every card's MIG capability and instances without changing anything.
    #[test]
    #[ignore = "needs GPU"]
    fn mig_capability_is_read_without_changing_the_mode() {
        let nvml = Arc::new(Nvml::init().expect("NVML loads on a GPU machine"));
        let mig = NvmlMig::new(nvml.clone());
        let cards = mig.cards().expect("cards");
        for gpu in &cards {
            let before = mig.mode(gpu).expect("mode");
            let profiles = mig.profiles(gpu).expect("profiles");
            let instances = mig.instances(gpu).expect("instances");
            let processes = mig.processes(gpu).expect("processes");
            println!("{gpu}: {before:?} {profiles:?} {instances:?} {processes:?}");
            assert_eq!(
                mig.mode(gpu).expect("mode"),
                before,
                "the mode is unchanged"
            );
            assert_eq!(
                profiles.is_empty(),
                !before.current,
                "profiles exactly when MIG is on: {profiles:?}"
            );
            if before.current {
                for p in &profiles {
                    assert!(!p.placements.is_empty(), "{p:?} has placements");
                    assert!(p.placements.iter().all(|pl| pl.size > 0), "{p:?}");
                }
            }
        }
    }
}
