//! `hamr-node-agent`: discovers devices, keeps the node's registration annotation current and
//! serves kubelet's device plugin API. `--print-registration` only prints the annotation.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use hamr_guest::vendor::nvidia::register::REGISTER;
use hamr_node_agent::allocate::Allocator;
use hamr_node_agent::config::Config;
use hamr_node_agent::discovery::fake::FakeDiscovery;
use hamr_node_agent::discovery::nvml::NvmlDiscovery;
use hamr_node_agent::discovery::{Discovery, Inventory};
use hamr_node_agent::plugin::{Plugin, register_with_kubelet, unix_channel};
use hamr_node_agent::pods::KubePods;
use hamr_node_agent::register::{Registrar, encode_register, nvidia_devices};

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
    let discovery: Arc<dyn Discovery> = match &args.fake {
        Some(path) => Arc::new(FakeDiscovery::new(path)),
        None => Arc::new(NvmlDiscovery::init()?),
    };
    let inventory = Inventory::new(discovery)?;

    if args.print_registration {
        let value = encode_register(&nvidia_devices(&inventory.current(), &config));
        println!("{REGISTER}: {value}");
        return Ok(());
    }
    anyhow::ensure!(
        !args.node_name.is_empty(),
        "the node name is unknown: set NODE_NAME or --node-name"
    );
    run(args.node_name, config, inventory).await
}

async fn run(node: String, config: Config, inventory: Inventory) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("building the Kubernetes client: {e}"))?;

    let registrar = Registrar::new(client.clone(), node.clone());
    let interval = Duration::from_secs(config.register_interval_seconds);
    tokio::spawn(registrar.run(inventory.subscribe(), config.clone(), interval));

    let health = inventory.clone();
    let every = Duration::from_secs(config.health_interval_seconds.max(1));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if let Err(error) = health.refresh() {
                tracing::warn!(%error, "device scan failed; keeping the last list");
            }
        }
    });

    let allocator = Arc::new(Allocator::new(node, config.clone(), KubePods::new(client)));
    let plugin = Plugin::new(inventory.subscribe(), allocator);
    let options = plugin.options();
    let socket_name = config.socket_name();
    let socket = config.plugin_dir.join(&socket_name);
    let server = tokio::spawn({
        let socket = socket.clone();
        async move {
            let stop = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            plugin.serve(&socket, stop).await
        }
    });
    // kubelet dials back at once: register only when our socket answers (5 s at most).
    let mut ready = false;
    for _ in 0..50 {
        if unix_channel(&socket).await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::ensure!(
        ready,
        "the device plugin socket {} did not answer within 5 s",
        socket.display()
    );
    register_with_kubelet(
        &config.plugin_dir.join("kubelet.sock"),
        &socket_name,
        &config.resource_name,
        options,
    )
    .await?;
    tracing::info!(socket = %socket.display(), resource = %config.resource_name, "registered with kubelet");
    server
        .await
        .map_err(|e| anyhow::anyhow!("the device plugin server stopped: {e}"))??;
    Ok(())
}
