//! The `hamr` command line: `simulate`, `explain` and `conformance`.
//!
//! Exit codes: 0 when all went well, 1 when a conformance scenario failed or an engine
//! faulted, 2 for malformed input or usage. Every error is one line on stderr, `error: ...`,
//! naming the file or object and the field.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::{Args, Parser, Subcommand, ValueEnum};
use hamr::conformance;
use hamr::engine::EngineKind;
use hamr::input::{self, Kind, Objects};
use hamr::place::{Cluster, PlaceError};
use hamr::simulate::SimulateError;

#[derive(Parser)]
#[command(
    name = "hamr",
    version,
    about = "GPU-sharing scheduling for Kubernetes: simulate, explain and check decisions offline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Place pods on a cluster snapshot; print each decision and the cards' use.
    Simulate(SimulateArgs),
    /// Why a pod fits or does not fit each node, card by card.
    Explain(ExplainArgs),
    /// Run scenario files through the engines; print one line per scenario and engine.
    Conformance(ConformanceArgs),
    /// Serve kube-scheduler's extender, the admission webhook and metrics, fed by the cluster
    /// (or by a cluster file with --snapshot).
    Serve(ServeArgs),
    /// Print a scheduler's configuration stanza, generated from the guest's managed resources.
    Config(ConfigArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address of the extender and webhook listener.
    #[arg(long, default_value = "0.0.0.0:8443", env = "HAMR_LISTEN")]
    listen: std::net::SocketAddr,
    /// A second, plain-HTTP listener for /metrics, /healthz and /readyz ("" for none).
    #[arg(long, default_value = "0.0.0.0:9395", env = "HAMR_METRICS_LISTEN")]
    metrics_listen: String,
    /// An extra plain-HTTP listener with every route (for Volcano's extender plugin, which
    /// cannot speak TLS, or a kube-scheduler on loopback).
    #[arg(long, value_name = "ADDR")]
    plain_listen: Option<std::net::SocketAddr>,
    /// TLS certificate chain (PEM) for the main listener; with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Scheduler configuration (YAML or JSON; the keys of hamr's config file).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineOpts,
    /// Feed the caches from a cluster file (the `simulate` format) instead of an API server;
    /// patches, bindings and events go to memory and the log.
    #[arg(long, value_name = "FILE")]
    snapshot: Option<PathBuf>,
    /// Release an allocation assumed at /filter that is not bound within this many seconds.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    bind_timeout: u64,
    /// How long /filter waits for the caches' first sync before answering with an error.
    #[arg(long, default_value_t = 25, value_name = "SECONDS")]
    sync_wait: u64,
    /// Largest request body accepted (bytes); larger ones get HTTP 400.
    #[arg(long, default_value_t = 8 << 20, value_name = "BYTES")]
    max_body_bytes: usize,
    /// Event source and scheduler name in logs.
    #[arg(long, default_value = "hamr-scheduler")]
    scheduler_name: String,
    /// Stamp a node's handshake annotations (`Requesting_<time>`) at most once per this many
    /// seconds; 0 leaves the handshake to another scheduler (e.g. HAMi's, side by side).
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    handshake_interval: u64,
    /// Elect a leader on a coordination.k8s.io Lease; only the leader decides.
    #[arg(long)]
    leader_elect: bool,
    /// The Lease's name.
    #[arg(long, default_value = "hamr-scheduler")]
    lease_name: String,
    /// The Lease's namespace (the pod's namespace in a Deployment).
    #[arg(long, env = "POD_NAMESPACE", default_value = "kube-system")]
    lease_namespace: String,
    /// This replica's identity in the Lease (the pod name in a Deployment).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

#[derive(Args)]
struct ConfigArgs {
    /// Which scheduler's stanza.
    #[arg(value_enum)]
    target: ConfigTarget,
    /// Scheduler configuration (its device resource names decide the managed resources).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where kube-scheduler or Volcano reach `hamr serve`.
    #[arg(long, default_value = "https://hamr-scheduler.kube-system.svc:443")]
    url: String,
    #[command(flatten)]
    engine: EngineOpts,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ConfigTarget {
    /// A KubeSchedulerConfiguration with the extender stanza.
    KubeScheduler,
    /// A volcano-scheduler.conf using the extender plugin.
    Volcano,
    /// The MutatingWebhookConfiguration, scoped to device pods.
    Webhook,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EngineArg {
    Component,
    Native,
    WasmExtension,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EnginesArg {
    Native,
    Component,
    /// A `hamr serve` on loopback (around the component), driven over HTTP.
    Http,
    WasmExtension,
    All,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Args)]
struct EngineOpts {
    /// The engine that decides: the WebAssembly component or the native library.
    #[arg(long, value_enum, default_value = "component")]
    engine: EngineArg,
    /// A component file to load instead of the one embedded in the binary.
    #[arg(long, value_name = "FILE")]
    component: Option<PathBuf>,
}

impl EngineOpts {
    fn kind(&self) -> EngineKind {
        match self.engine {
            EngineArg::Native => EngineKind::Native,
            EngineArg::Component => EngineKind::Component(self.component.clone()),
            EngineArg::WasmExtension => EngineKind::WasmExtension,
        }
    }
}

#[derive(Args)]
struct SimulateArgs {
    /// Nodes, pods and ResourceQuotas already on the cluster (YAML or JSON; a
    /// `kubectl get nodes,pods -A -o yaml` dump works as is).
    #[arg(long, value_name = "FILE")]
    cluster: PathBuf,
    /// Pods to place, in order (and ResourceQuotas); objects without `kind` are pods. A folder
    /// means every YAML/JSON file in it, in name order.
    #[arg(long, value_name = "FILE|DIR")]
    pods: PathBuf,
    /// Scheduler configuration (YAML or JSON; the keys of hamr's config file).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    #[command(flatten)]
    engine: EngineOpts,
    /// The time handed to the guest (RFC 3339); the current time by default.
    #[arg(long, value_name = "RFC3339")]
    now: Option<String>,
}

#[derive(Args)]
struct ExplainArgs {
    /// Nodes, pods and ResourceQuotas on the cluster.
    #[arg(long, value_name = "FILE")]
    cluster: PathBuf,
    /// The pod to explain (one Pod; `kind` may be omitted).
    #[arg(long, value_name = "FILE")]
    pod: PathBuf,
    /// Explain this node only.
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    #[command(flatten)]
    engine: EngineOpts,
    /// The time handed to the guest (RFC 3339); the current time by default.
    #[arg(long, value_name = "RFC3339")]
    now: Option<String>,
}

#[derive(Args)]
struct ConformanceArgs {
    /// Scenario files, or folders searched recursively for `*.yaml` and `*.yml`.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// The engines to run; with `all`, engines that observe differently fail too.
    #[arg(long, value_enum, default_value = "all")]
    engine: EnginesArg,
    /// A component file to load instead of the one embedded in the binary.
    #[arg(long, value_name = "FILE")]
    component: Option<PathBuf>,
}

/// An error that maps to a given exit code (the others exit with 2).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct Failure {
    code: u8,
    message: String,
}

fn main() -> ExitCode {
    // Structured logs on stderr (guest traps and rebuilds are logged there); `RUST_LOG`
    // adjusts the level, warnings and errors by default.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let message = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {message}");
            ExitCode::from(exit_code(&e))
        }
    }
}

fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.code;
        }
        if let Some(SimulateError::Place(PlaceError::Fault(_))) = cause.downcast_ref() {
            return 1;
        }
    }
    2
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Simulate(a) => simulate(a),
        Command::Explain(a) => explain(a),
        Command::Conformance(a) => run_conformance(a),
        Command::Serve(a) => serve(a),
        Command::Config(a) => print_config(a),
    }
}

fn serve(a: ServeArgs) -> Result<ExitCode> {
    let metrics_listen = match a.metrics_listen.trim() {
        "" => None,
        text => Some(
            text.parse()
                .with_context(|| format!("--metrics-listen {text:?} is not an address"))?,
        ),
    };
    let identity = match a.identity {
        Some(i) => i,
        None => {
            std::env::var("HOSTNAME").unwrap_or_else(|_| format!("hamr-{}", std::process::id()))
        }
    };
    let options = hamr::serve::Options {
        listen: a.listen,
        metrics_listen,
        plain_listen: a.plain_listen,
        tls: a.tls_cert.zip(a.tls_key),
        config: config_text(a.config.as_deref())?,
        engine: a.engine.kind(),
        snapshot: a.snapshot,
        settings: hamr::serve::Settings {
            bind_timeout: std::time::Duration::from_secs(a.bind_timeout),
            sync_wait: std::time::Duration::from_secs(a.sync_wait),
            max_body_bytes: a.max_body_bytes,
            component: a.scheduler_name,
            handshake_interval: std::time::Duration::from_secs(a.handshake_interval),
        },
        election: a
            .leader_elect
            .then_some((a.lease_namespace, a.lease_name, identity)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(hamr::serve::run(options)).map_err(|e| {
        anyhow!(Failure {
            code: 1,
            message: format!("{e:#}")
        })
    })?;
    Ok(ExitCode::SUCCESS)
}

fn print_config(a: ConfigArgs) -> Result<ExitCode> {
    use hamr_guest::api::Scheduler;
    let mut engine = a.engine.kind().start().map_err(|e| {
        anyhow!(Failure {
            code: 1,
            message: e.to_string()
        })
    })?;
    let config = config_text(a.config.as_deref())?;
    engine
        .configure(&config)
        .map_err(|e| {
            anyhow!(Failure {
                code: 1,
                message: e.to_string()
            })
        })?
        .map_err(|e| anyhow!("scheduler configuration: {e}"))?;
    let resources = engine.managed_resources().map_err(|e| {
        anyhow!(Failure {
            code: 1,
            message: e.to_string()
        })
    })?;
    let text = match a.target {
        ConfigTarget::KubeScheduler => {
            let name = serde_json::from_str::<serde_json::Value>(&config)
                .ok()
                .and_then(|v| {
                    v.get("schedulerName")
                        .and_then(|n| n.as_str())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "hamr-scheduler".to_string());
            hamr::deploy::kube_scheduler(&a.url, &name, &resources)
        }
        ConfigTarget::Volcano => hamr::deploy::volcano(&a.url, &resources),
        ConfigTarget::Webhook => hamr::deploy::webhook("kube-system", "hamr-scheduler", &resources),
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// The config file as JSON text for `configure`; `{}` without one.
fn config_text(path: Option<&Path>) -> Result<String> {
    let Some(path) = path else {
        return Ok("{}".to_string());
    };
    let value = input::read_value(path)?;
    if !value.is_object() {
        return Err(anyhow!(
            "{}: the configuration must be a mapping",
            path.display()
        ));
    }
    Ok(value.to_string())
}

fn now(arg: Option<&str>) -> Result<i64> {
    match arg {
        Some(text) => {
            hamr::conformance::scenario::parse_time(text).map_err(|e| anyhow!("--now: {e}"))
        }
        None => {
            let since = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("the system clock is before 1970")?;
            Ok(i64::try_from(since.as_secs()).context("the system clock is past year 292e9")?)
        }
    }
}

fn read_objects(path: &Path, default_kind: Option<Kind>) -> Result<Objects> {
    let objects = input::read_objects(path, default_kind)?;
    if !objects.skipped.is_empty() {
        let shown: Vec<&str> = objects.skipped.iter().take(5).map(String::as_str).collect();
        let more = if objects.skipped.len() > 5 {
            ", ..."
        } else {
            ""
        };
        eprintln!(
            "note: {}: skipped {} object(s) of other kinds: {}{more}",
            path.display(),
            objects.skipped.len(),
            shown.join(", ")
        );
    }
    Ok(objects)
}

/// Names the config file in a refused configuration.
fn with_config_file(e: SimulateError, config: Option<&Path>) -> anyhow::Error {
    match (&e, config) {
        (SimulateError::Place(PlaceError::Config(_)), Some(path)) => {
            anyhow::Error::new(e).context(path.display().to_string())
        }
        _ => anyhow::Error::new(e),
    }
}

fn print(text: &str) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .context("writing the output")?;
    Ok(ExitCode::SUCCESS)
}

fn simulate(a: SimulateArgs) -> Result<ExitCode> {
    let mut objects = read_objects(&a.cluster, None)?;
    let to_place = read_objects(&a.pods, Some(Kind::Pod))?;
    if let Some(n) = to_place.nodes.first() {
        return Err(anyhow!(
            "{}: node/{}: nodes belong in the --cluster file",
            a.pods.display(),
            n.name
        ));
    }
    objects.quotas.extend(to_place.quotas);
    let config = config_text(a.config.as_deref())?;
    let now = now(a.now.as_deref())?;
    let mut engine = a.engine.kind().start().map_err(|f| Failure {
        code: 1,
        message: f.to_string(),
    })?;
    let cluster = Cluster {
        nodes: &objects.nodes,
        pods: &objects.pods,
        quotas: &objects.quotas,
    };
    let mut progress = |done: usize, total: usize| eprintln!("progress: {done}/{total} pods");
    let report = hamr::simulate::simulate(
        &mut engine,
        &config,
        cluster,
        &to_place.pods,
        now,
        &mut progress,
    )
    .map_err(|e| with_config_file(e, a.config.as_deref()))?;
    match a.format {
        Format::Text => print(&hamr::simulate::render_text(&report)),
        Format::Json => print(&format!("{}\n", serde_json::to_string_pretty(&report)?)),
    }
}

fn explain(a: ExplainArgs) -> Result<ExitCode> {
    let objects = read_objects(&a.cluster, None)?;
    let pods = read_objects(&a.pod, Some(Kind::Pod))?.pods;
    let [pod] = pods.as_slice() else {
        return Err(anyhow!(
            "{}: expected exactly one Pod, found {}",
            a.pod.display(),
            pods.len()
        ));
    };
    let nodes: Vec<String> = a.node.iter().cloned().collect();
    if let Some(name) = &a.node
        && !objects.nodes.iter().any(|n| &n.name == name)
    {
        return Err(anyhow!("{}: no node named {name}", a.cluster.display()));
    }
    let config = config_text(a.config.as_deref())?;
    let now = now(a.now.as_deref())?;
    let mut engine = a.engine.kind().start().map_err(|f| Failure {
        code: 1,
        message: f.to_string(),
    })?;
    let cluster = Cluster {
        nodes: &objects.nodes,
        pods: &objects.pods,
        quotas: &objects.quotas,
    };
    let explanation = hamr::explain::explain(&mut engine, &config, cluster, pod, &nodes, now)
        .map_err(|e| with_config_file(e, a.config.as_deref()))?;
    match a.format {
        Format::Text => print(&hamr::explain::render_text(&explanation)),
        Format::Json => print(&format!(
            "{}\n",
            serde_json::to_string_pretty(&explanation)?
        )),
    }
}

fn run_conformance(a: ConformanceArgs) -> Result<ExitCode> {
    let component = EngineKind::Component(a.component.clone());
    let engines = match a.engine {
        EnginesArg::Native => vec![EngineKind::Native],
        EnginesArg::Component => vec![component],
        EnginesArg::Http => vec![EngineKind::Http(Box::new(component))],
        EnginesArg::WasmExtension => vec![EngineKind::WasmExtension],
        EnginesArg::All => vec![
            EngineKind::Native,
            component.clone(),
            EngineKind::Http(Box::new(component)),
            EngineKind::WasmExtension,
        ],
    };
    let files = conformance::find(&a.paths)?;
    let mut out = std::io::stdout().lock();
    let summary = conformance::run(&files, &engines, &mut out).context("writing the output")?;
    Ok(if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
