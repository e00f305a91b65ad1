//! `hamr-node-agent`: discovers devices, keeps the node's registration annotation current and
//! serves kubelet's device plugin API. `--print-registration` only prints the annotation.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::Parser;
use hamr_node_agent::allocate::Allocator;
use hamr_node_agent::complete::Completer;
use hamr_node_agent::config::Config;
use hamr_node_agent::discovery::fake::FakeDiscovery;
use hamr_node_agent::discovery::nvml::{NvmlDiscovery, XidWatcher};
use hamr_node_agent::discovery::{Discovery, Inventory, NVIDIA};
use hamr_node_agent::filter::Filtered;
use hamr_node_agent::health::XidPolicy;
use hamr_node_agent::kubelet::{KubeletLink, supervise};
use hamr_node_agent::mig::fake::FakeMig;
use hamr_node_agent::mig::profiles::allow_entry;
use hamr_node_agent::mig::volcano::Geometries;
use hamr_node_agent::mig::{MigControl, MigManager};
use hamr_node_agent::plugin::Plugin;
use hamr_node_agent::plugin::counted::spawn_volcano;
use hamr_node_agent::pods::{KubePods, PodSource};
use hamr_node_agent::register::{Registrar, registration};
use hamr_node_agent::usage::UsagePublisher;

/// The MIG backend, when the node runs dynamic MIG.
type Mig = Arc<dyn MigControl>;

#[derive(Parser)]
#[command(
    version,
    about = "hamr's node agent: discovery, registration, kubelet device plugin"
)]
struct Args {
    /// Devices described in a YAML file instead of NVML (see examples/node-agent/devices.yaml).
    #[arg(long, value_name = "FILE")]
    fake: Option<PathBuf>,
    /// The agent's configuration (see examples/node-agent/config.yaml); chart defaults if absent.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// This node's name (the DaemonSet sets it from the downward API).
    #[arg(long, env = "NODE_NAME", default_value = "")]
    node_name: String,
    /// Print the registration annotation this node would get, and exit.
    #[arg(long)]
    print_registration: bool,
}

#[tokio::main]
async fn main() {
    // One line, never a backtrace: these errors are about the node, not about our code.
    if let Err(error) = agent().await {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

async fn agent() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    // Read once: a malformed per-node file stops the agent here, before it serves anything,
    // rather than sharing cards the administrator meant to withhold or split differently.
    let node_file = config.node_config_path.clone();
    let config = config.load_for_node(&node_file, &args.node_name)?;
    let mig_mode = config.operating_mode == "mig";
    let (discovery, xids, mut mig): (Arc<dyn Discovery>, Option<XidWatcher>, Option<Mig>) =
        match &args.fake {
            Some(path) => (Arc::new(FakeDiscovery::new(path)), None, None),
            None => {
                let nvml = NvmlDiscovery::init()?.with_topology(config.topology_score);
                let xids = nvml.xid_watcher();
                let mig: Option<Arc<dyn MigControl>> =
                    mig_mode.then(|| Arc::new(nvml.mig_control()) as Arc<dyn MigControl>);
                (Arc::new(nvml), Some(xids), mig)
            }
        };
    let policy = XidPolicy::from_process_env()?;
    let recovery =
        (config.xid_recovery_seconds > 0).then(|| Duration::from_secs(config.xid_recovery_seconds));
    let discovery = Arc::new(Filtered::new(
        discovery,
        config.filter_devices.clone(),
        config.pre_configured_device_memory,
    ));
    let inventory = Inventory::new(discovery)?.with_recovery(recovery);
    if mig_mode && args.fake.is_some() {
        // The fake file's MIG cards, with their instances in memory.
        mig = Some(Arc::new(FakeMig::from_devices(&inventory.current())));
    }

    if args.print_registration {
        for (key, value) in registration(&inventory.current(), &config) {
            println!("{key}: {value}");
        }
        return Ok(());
    }
    anyhow::ensure!(
        !args.node_name.is_empty(),
        "the node name is unknown: set NODE_NAME or --node-name"
    );
    if let Some(xids) = xids {
        let inventory = inventory.clone();
        let stop = Arc::new(AtomicBool::new(false));
        std::thread::Builder::new()
            .name("xid-events".into())
            .spawn(move || xids.run(policy, inventory, stop))
            .map_err(|e| anyhow::anyhow!("starting the XID event thread: {e}"))?;
    }
    run(args.node_name, config, inventory, mig).await
}

async fn run(
    node: String,
    config: Config,
    inventory: Inventory,
    mig: Option<Arc<dyn MigControl>>,
) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("building the Kubernetes client: {e}"))?;
    let pods = KubePods::new(client.clone()).on_node(node.clone());
    let mig = match mig {
        Some(control) => Some(start_mig(control, &config, &inventory, &pods, &node).await),
        None => None,
    };

    // Discovery: re-scan periodically; health changes reach ListAndWatch and the registration
    // through the inventory.
    let scans = inventory.clone();
    let every = Duration::from_secs(config.health_interval_seconds.max(1));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if let Err(error) = scans.refresh() {
                tracing::warn!(%error, "device scan failed; keeping the last list");
            }
        }
    });

    // Registration, then the usage annotation derived from it and the node's pods.
    let registrar = Registrar::new(client.clone(), node.clone());
    let registered = registrar.subscribe();
    let interval = Duration::from_secs(config.register_interval_seconds.max(1));
    tokio::spawn(registrar.run(inventory.subscribe(), config.clone(), interval));
    if config.publish_usage {
        let registered = registered.clone();
        tokio::spawn(UsagePublisher::new(client.clone(), node.clone(), registered).run());
    }

    // The device plugin, kept registered across kubelet restarts until SIGTERM or Ctrl-C; it
    // completes the decisions of schedulers that bind pods without writing them.
    let mut allocator = Allocator::new(node.clone(), config.clone(), pods.clone());
    if let Some(manager) = mig {
        allocator = allocator.with_mig(manager);
    }
    let complete = &config.complete_decisions;
    if !complete.scheduler_names.is_empty() {
        let completer = Arc::new(Completer::new(node, complete, registered, pods)?);
        let watcher = completer.clone();
        tokio::spawn(async move { watcher.run(client).await });
        allocator = allocator.with_completer(completer);
    }
    let allocator = Arc::new(allocator);
    let plugin = Plugin::new(inventory.subscribe(), allocator);
    let link = KubeletLink {
        plugin_dir: config.plugin_dir.clone(),
        socket_name: config.socket_name(),
        resource: config.resource_name.clone(),
        poll: Duration::from_secs(1),
        retry: Duration::from_secs(5),
    };
    // With `volcano.register`, Volcano's three resources on their own sockets: vgpu-number
    // served by the same plugin, memory and cores units that only count.
    let (quit, quitting) = tokio::sync::watch::channel(false);
    let mut extra = tokio::task::JoinSet::new();
    let poll = Duration::from_secs(1);
    spawn_volcano(
        &mut extra,
        &config,
        plugin.clone(),
        &inventory,
        poll,
        &quitting,
    );
    let result = tokio::select! {
        result = supervise(plugin, link, stopped()) => result,
        Some(Ok(Err(error))) = extra.join_next() => Err(error),
    };
    let _ = quit.send(true);
    while extra.join_next().await.is_some() {}
    result?;
    tracing::info!("stopped");
    Ok(())
}

/// Dynamic MIG start-up (node-side.md §6.6): when every NVIDIA card's model is in
/// `migProfileAllowlist`, idle cards are reset and recorded instances adopted; then the
/// reconciler runs every `migReconcileSeconds`. Failures are logged: start-up goes on.
async fn start_mig(
    control: Arc<dyn MigControl>,
    config: &Config,
    inventory: &Inventory,
    pods: &KubePods,
    node: &str,
) -> Arc<MigManager> {
    // Volcano's slices are placed by the geometry groups of each card's model.
    let cards = inventory.current();
    let geometries = Geometries::new(
        config.volcano.geometries(),
        cards
            .iter()
            .filter(|d| d.vendor == NVIDIA)
            .map(|d| (d.id.as_str(), d.model.as_str())),
    );
    let manager = Arc::new(MigManager::new(control).with_volcano(geometries));
    // The reset needs every card's model in the allowlist (NVML names such as "NVIDIA H100
    // 80GB HBM3" may match no entry); adoption does not: it only tracks what active pods
    // recorded, so that their instances are destroyed once the pods are gone.
    let reset = cards
        .iter()
        .filter(|d| d.vendor == NVIDIA)
        .all(|d| allow_entry(&config.mig_profile_allowlist, &d.model).is_some());
    if !reset {
        tracing::warn!("MIG start-up reset skipped: a card's model is not in migProfileAllowlist");
    }
    let list = match pods.pods_on(node).await {
        Ok(list) => Some(list),
        Err(error) => {
            tracing::warn!(%error, "MIG start-up: pods unreadable, every card counts as in use");
            None
        }
    };
    let worker = manager.clone();
    match tokio::task::spawn_blocking(move || worker.start(list.as_deref(), reset)).await {
        Ok(errors) => {
            for error in errors {
                tracing::warn!(%error, "MIG start-up");
            }
        }
        Err(error) => tracing::warn!(%error, "MIG start-up failed"),
    }
    if reset {
        // Modes may have changed: publish the cards' MIG profiles now.
        if let Err(error) = inventory.refresh() {
            tracing::warn!(%error, "device scan failed after MIG start-up");
        }
    }
    let every = Duration::from_secs(config.mig_reconcile_seconds.max(1));
    tokio::spawn(manager.clone().run(pods.clone(), node.to_string(), every));
    manager
}

/// Resolves on SIGTERM (the kubelet stopping the pod) or Ctrl-C.
async fn stopped() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
