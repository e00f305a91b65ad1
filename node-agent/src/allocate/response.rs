//! The container response of Allocate in hami-core mode (node-side.md §3.4): environment for
//! HAMi-core, the isolation library mounts, and CDI device names.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hamr_guest::device::ContainerDevice;

use crate::api::{CdiDevice, ContainerAllocateResponse, Mount};
use crate::config::Config;

/// Who the devices are for: the pod UID and container name key the per-container directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    pub pod_uid: &'a str,
    pub container: &'a str,
    /// The container asked for no isolation (`CUDA_DISABLE_CONTROL`): no `/etc/ld.so.preload`.
    pub disable_control: bool,
}

/// The host directory mounted at `<hook>/vgpu` in the container, holding its shared region:
/// `<hook>/vgpu/containers/<podUID>_<container>`.
pub fn container_dir(config: &Config, target: &Target<'_>) -> PathBuf {
    config
        .vgpu_dir()
        .join("containers")
        .join(format!("{}_{}", target.pod_uid, target.container))
}

/// Builds the response for one container's devices.
///
/// For `GPU-a,NVIDIA,10240,30` given to container `main` of pod `uid-1` with the default hook
/// path: `NVIDIA_VISIBLE_DEVICES=GPU-a`, `CUDA_DEVICE_MEMORY_LIMIT_0=10240m`,
/// `CUDA_DEVICE_SM_LIMIT=30`, `CUDA_DEVICE_MEMORY_SHARED_CACHE=/usr/local/vgpu/uid-1.cache`, and
/// the mounts `/usr/local/vgpu/libvgpu.so` (ro), `/usr/local/vgpu` ←
/// `/usr/local/vgpu/containers/uid-1_main`, `/tmp/vgpulock`, `/etc/ld.so.preload` (ro).
///
/// The cache file name is the pod UID, not HAMi's random UUID: the directory is already private
/// to the container and wiped on every Allocate, so the name only has to end in `.cache`.
pub fn container_response(
    config: &Config,
    target: &Target<'_>,
    devices: &[ContainerDevice],
) -> ContainerAllocateResponse {
    let vgpu = config.vgpu_dir();
    let mut envs = HashMap::new();
    let uuids: Vec<&str> = devices.iter().map(|d| d.uuid.as_str()).collect();
    envs.insert("NVIDIA_VISIBLE_DEVICES".to_string(), uuids.join(","));
    for (i, d) in devices.iter().enumerate() {
        envs.insert(
            format!("CUDA_DEVICE_MEMORY_LIMIT_{i}"),
            format!("{}m", d.mem),
        );
    }
    if let Some(first) = devices.first() {
        // HAMi-core applies one SM limit to every device: the first device's cores.
        envs.insert("CUDA_DEVICE_SM_LIMIT".to_string(), first.cores.to_string());
    }
    envs.insert(
        "CUDA_DEVICE_MEMORY_SHARED_CACHE".to_string(),
        display(&vgpu.join(format!("{}.cache", target.pod_uid))),
    );
    if config.device_memory_scaling > 1.0 {
        envs.insert("CUDA_OVERSUBSCRIBE".to_string(), "true".to_string());
    }
    if let Some(level) = config.lib_cuda_log_level {
        envs.insert("LIBCUDA_LOG_LEVEL".to_string(), level.to_string());
    }
    if config.disable_core_limit {
        envs.insert(
            "GPU_CORE_UTILIZATION_POLICY".to_string(),
            "disable".to_string(),
        );
    }

    let mount = |container: &Path, host: &Path, read_only: bool| Mount {
        container_path: display(container),
        host_path: display(host),
        read_only,
    };
    let library = vgpu.join("libvgpu.so");
    let mut mounts = vec![
        mount(&library, &library, true),
        mount(&vgpu, &container_dir(config, target), false),
        mount(Path::new("/tmp/vgpulock"), &config.lock_dir, false),
    ];
    if !target.disable_control {
        mounts.push(mount(
            Path::new("/etc/ld.so.preload"),
            &vgpu.join("ld.so.preload"),
            true,
        ));
    }
    if vgpu.join("license").exists() {
        mounts.push(mount(
            Path::new("/tmp/license"),
            &vgpu.join("license"),
            true,
        ));
        mounts.push(mount(
            Path::new("/usr/bin/vgpuvalidator"),
            &vgpu.join("vgpuvalidator"),
            true,
        ));
    }

    ContainerAllocateResponse {
        envs,
        mounts,
        devices: Vec::new(),
        annotations: HashMap::new(),
        cdi_devices: devices
            .iter()
            .map(|d| CdiDevice {
                name: format!("nvidia.com/gpu={}", d.uuid),
            })
            .collect(),
    }
}

/// The response for a container given MIG devices (node-side.md §6.5): the runtime is told
/// the MIG device UUIDs in `NVIDIA_VISIBLE_DEVICES`, as HAMi does; nothing of HAMi-core. No
/// CDI names: CDI specs generated at install time cannot list MIG devices created later, and
/// containerd with CDI enabled refuses a container naming an unknown CDI device.
pub fn mig_response(instances: &[crate::mig::Instance]) -> ContainerAllocateResponse {
    let uuids: Vec<&str> = instances.iter().map(|i| i.uuid.as_str()).collect();
    ContainerAllocateResponse {
        envs: HashMap::from([("NVIDIA_VISIBLE_DEVICES".to_string(), uuids.join(","))]),
        mounts: Vec::new(),
        devices: Vec::new(),
        annotations: HashMap::new(),
        cdi_devices: Vec::new(),
    }
}

fn display(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Makes the per-container directory empty (deleted and recreated, mode 0777) and the lock
/// directory present (mode 0777), as HAMi does on every Allocate.
pub async fn prepare_dirs(config: &Config, target: &Target<'_>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = container_dir(config, target);
    match tokio::fs::remove_dir_all(&dir).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    for d in [&dir, &config.lock_dir] {
        tokio::fs::create_dir_all(d).await?;
        tokio::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).await?;
    }
    Ok(())
}
