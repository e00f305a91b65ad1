//! Plain Rust mirrors of the WIT types in `wit/scheduler.wit`, item for item.
//!
//! Every engine speaks these types: the native library directly, the component through the
//! conversions in `component.rs` (guest side) and `hamr::runtime` (host side). Field names and
//! meanings are those of the WIT; see its comments.

use serde::{Deserialize, Serialize};

/// Name/value pairs (labels, annotations, resource lists with quantity strings).
pub type Pairs = Vec<(String, String)>;

/// Looks a key up in a pair list (the first match wins).
pub fn lookup<'a>(pairs: &'a Pairs, key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub name: String,
    pub limits: Pairs,
    pub requests: Pairs,
    pub privileged: bool,
    pub env_names: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub name: String,
    pub terminated_exit_code: Option<i32>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodPhase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub labels: Pairs,
    pub annotations: Pairs,
    pub scheduler_name: Option<String>,
    pub node_name: Option<String>,
    pub runtime_class_name: Option<String>,
    pub phase: PodPhase,
    pub deleting: bool,
    pub init_containers: Vec<Container>,
    pub containers: Vec<Container>,
    pub init_container_statuses: Vec<ContainerStatus>,
}

impl Pod {
    /// `pod/<namespace>/<name>`, the object name used in errors.
    pub fn object(&self) -> String {
        format!("pod/{}/{}", self.namespace, self.name)
    }

    /// Init containers then regular containers, the order of every per-container list.
    pub fn all_containers(&self) -> impl Iterator<Item = &Container> {
        self.init_containers.iter().chain(self.containers.iter())
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        lookup(&self.annotations, key)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub labels: Pairs,
    pub annotations: Pairs,
    pub allocatable: Pairs,
    pub capacity: Pairs,
}

impl Node {
    pub fn annotation(&self, key: &str) -> Option<&str> {
        lookup(&self.annotations, key)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub namespace: String,
    pub name: String,
    pub hard: Pairs,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delta {
    NodeUpsert(Node),
    NodeRemove(String),
    PodUpsert(Pod),
    PodRemove(String),
    QuotaUpsert(Quota),
    QuotaRemove((String, String)),
}

/// A precise description of a malformed input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalid {
    pub object: String,
    pub field: String,
    pub value: String,
    pub message: String,
}

impl Invalid {
    /// Builds an `Invalid`, truncating the value to 200 bytes on a character boundary.
    pub fn new(
        object: impl Into<String>,
        field: impl Into<String>,
        value: &str,
        message: impl Into<String>,
    ) -> Self {
        let mut end = value.len().min(200);
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        Invalid {
            object: object.into(),
            field: field.into(),
            value: value[..end].to_string(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} {:?}: {}",
            self.object, self.field, self.value, self.message
        )
    }
}

/// Why the guest could not evaluate a call. A verdict is never an error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Error {
    /// An input object or field is malformed; nothing was changed.
    #[error("invalid input: {0}")]
    InvalidInput(Invalid),
    /// The configuration is malformed; the previous one stays.
    #[error("invalid config: {0}")]
    InvalidConfig(Invalid),
    /// A named pod or node is not in the ledger.
    #[error("not found: {0}")]
    NotFound(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaError {
    pub index: u32,
    pub error: Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Code {
    Success,
    Unschedulable,
    UnschedulableAndUnresolvable,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonCount {
    pub reason: String,
    pub count: u32,
    pub total: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeVerdict {
    pub node: String,
    pub code: Code,
    pub reason: String,
    pub counts: Vec<ReasonCount>,
    pub score: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceGrant {
    pub container: u32,
    pub vendor: String,
    pub uuid: String,
    pub index: u32,
    pub model: String,
    pub memory_mib: u64,
    pub cores: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub node: String,
    pub annotations: Pairs,
    pub labels: Pairs,
    pub grants: Vec<DeviceGrant>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFailure {
    pub code: Code,
    pub reason: String,
    pub counts: Vec<ReasonCount>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CandidateOutcome {
    Fits(u32),
    Fails(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateVerdict {
    pub candidate: u32,
    pub outcome: CandidateOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterOutcome {
    pub managed: bool,
    pub failures: Vec<NodeFailure>,
    pub verdicts: Vec<CandidateVerdict>,
    pub decision: Option<Decision>,
}

/// One verdict of a [`FilterOutcome`] with its node's name and failure looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerdictView<'a> {
    pub node: &'a str,
    pub code: Code,
    /// Empty on success.
    pub reason: &'a str,
    /// Empty on success.
    pub counts: &'a [ReasonCount],
    /// 0 on failure.
    pub score: u32,
}

impl VerdictView<'_> {
    pub fn to_verdict(&self) -> NodeVerdict {
        NodeVerdict {
            node: self.node.to_string(),
            code: self.code,
            reason: self.reason.to_string(),
            counts: self.counts.to_vec(),
            score: self.score,
        }
    }
}

impl FilterOutcome {
    /// An outcome with no verdict yet.
    pub fn new(managed: bool, decision: Option<Decision>) -> FilterOutcome {
        FilterOutcome {
            managed,
            failures: Vec::new(),
            verdicts: Vec::new(),
            decision,
        }
    }

    /// Appends a success on candidate `candidate`.
    pub fn push_fit(&mut self, candidate: usize, score: u32) {
        self.verdicts.push(CandidateVerdict {
            candidate: candidate as u32,
            outcome: CandidateOutcome::Fits(score),
        });
    }

    /// Appends a failure on candidate `candidate`, sharing an equal failure already listed
    /// (a linear search: for engines that build outcomes outside the guest's ledger).
    pub fn push_failure(&mut self, candidate: usize, failure: NodeFailure) {
        let index = match self.failures.iter().position(|f| *f == failure) {
            Some(i) => i,
            None => {
                self.failures.push(failure);
                self.failures.len() - 1
            }
        };
        self.verdicts.push(CandidateVerdict {
            candidate: candidate as u32,
            outcome: CandidateOutcome::Fails(index as u32),
        });
    }

    /// Appends a named verdict on candidate `candidate` (its name is dropped).
    pub fn push_verdict(&mut self, candidate: usize, verdict: NodeVerdict) {
        match verdict.code {
            Code::Success => self.push_fit(candidate, verdict.score),
            code => self.push_failure(
                candidate,
                NodeFailure {
                    code,
                    reason: verdict.reason,
                    counts: verdict.counts,
                },
            ),
        }
    }

    /// The verdicts with their nodes' names: `names` are the candidates `filter` was given, in
    /// order. A verdict naming a candidate or a failure that does not exist is left out.
    pub fn named<'a, N: AsRef<str>>(
        &'a self,
        names: &'a [N],
    ) -> impl Iterator<Item = VerdictView<'a>> + 'a {
        self.verdicts.iter().filter_map(move |v| {
            let node = names.get(v.candidate as usize)?.as_ref();
            Some(match v.outcome {
                CandidateOutcome::Fits(score) => VerdictView {
                    node,
                    code: Code::Success,
                    reason: "",
                    counts: &[],
                    score,
                },
                CandidateOutcome::Fails(i) => {
                    let f = self.failures.get(i as usize)?;
                    VerdictView {
                        node,
                        code: f.code,
                        reason: &f.reason,
                        counts: &f.counts,
                        score: 0,
                    }
                }
            })
        })
    }

    /// [`FilterOutcome::named`], each verdict owned.
    pub fn node_verdicts<N: AsRef<str>>(&self, names: &[N]) -> Vec<NodeVerdict> {
        self.named(names).map(|v| v.to_verdict()).collect()
    }

    /// How many evaluated candidates failed.
    pub fn failed(&self) -> usize {
        self.verdicts
            .iter()
            .filter(|v| matches!(v.outcome, CandidateOutcome::Fails(_)))
            .count()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeScore {
    pub node: String,
    pub score: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRef {
    pub init: bool,
    pub index: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerLimit {
    pub container: ContainerRef,
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerEnv {
    pub container: ContainerRef,
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mutation {
    SetSchedulerName(String),
    SetRuntimeClassName(String),
    SetLimit(ContainerLimit),
    AddEnv(ContainerEnv),
    /// Sets a container's `resources.requests[name]` (carried in a `ContainerLimit`).
    SetRequest(ContainerLimit),
    /// Sets a pod annotation `(key, value)`.
    SetAnnotation((String, String)),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admission {
    pub allowed: bool,
    pub message: String,
    pub mutations: Vec<Mutation>,
    pub managed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardCheck {
    pub container: u32,
    pub vendor: String,
    pub uuid: String,
    pub index: u32,
    pub reason: String,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeExplanation {
    pub node: String,
    pub verdict: NodeVerdict,
    pub cards: Vec<CardCheck>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardUsage {
    pub vendor: String,
    pub uuid: String,
    pub index: u32,
    pub model: String,
    pub healthy: bool,
    pub cordoned: bool,
    pub numa: u32,
    pub used_slots: u32,
    pub total_slots: u32,
    pub used_memory_mib: u64,
    pub total_memory_mib: u64,
    pub used_cores: u32,
    pub total_cores: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeUsage {
    pub node: String,
    pub live: bool,
    pub cards: Vec<CardUsage>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaUsage {
    pub namespace: String,
    pub resource_name: String,
    pub used: u64,
    pub limit: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeHandshake {
    pub node: String,
    pub annotations: Pairs,
    pub stale: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reservation {
    Reserved(Decision),
    Rejected(NodeVerdict),
}

/// The whole contract as one trait: the native library implements it directly, the host's
/// component runtime implements it by calling the component. The conformance runner and the
/// CLI are written against this trait only, so every engine runs the same code around it.
pub trait Scheduler {
    /// What an engine can fail with besides the guest's own `Error` (a trap, for the component).
    type Fault: std::fmt::Display;

    fn configure(&mut self, config: &str) -> Result<Result<(), Error>, Self::Fault>;
    fn apply(&mut self, deltas: &[Delta]) -> Result<Vec<DeltaError>, Self::Fault>;
    fn clear(&mut self) -> Result<(), Self::Fault>;
    fn filter(
        &mut self,
        pod: &Pod,
        candidates: &[String],
        now: i64,
    ) -> Result<Result<FilterOutcome, Error>, Self::Fault>;
    /// [`Scheduler::filter`] on the candidates as WIT's `node-names` text (one name per line;
    /// empty lines are skipped), as `hamr serve` reads them off kube-scheduler's request. The
    /// component takes the text as it is; the default splits it.
    fn filter_lines(
        &mut self,
        pod: &Pod,
        candidates: &str,
        now: i64,
    ) -> Result<Result<FilterOutcome, Error>, Self::Fault> {
        let names: Vec<String> = crate::node_names(candidates)
            .into_iter()
            .map(str::to_string)
            .collect();
        self.filter(pod, &names, now)
    }
    fn score(
        &mut self,
        pod: &Pod,
        nodes: &[String],
        now: i64,
    ) -> Result<Result<Vec<NodeScore>, Error>, Self::Fault>;
    fn reserve(
        &mut self,
        pod: &Pod,
        node: &str,
        now: i64,
    ) -> Result<Result<Reservation, Error>, Self::Fault>;
    fn unreserve(&mut self, pod_uid: &str) -> Result<(), Self::Fault>;
    fn admit(&mut self, pod: &Pod) -> Result<Result<Admission, Error>, Self::Fault>;
    fn managed_resources(&mut self) -> Result<Vec<String>, Self::Fault>;
    fn explain(
        &mut self,
        pod: &Pod,
        nodes: &[String],
        now: i64,
    ) -> Result<Result<Vec<NodeExplanation>, Error>, Self::Fault>;
    fn usage(&mut self, nodes: &[String], now: i64) -> Result<Vec<NodeUsage>, Self::Fault>;
    fn quotas(&mut self) -> Result<Vec<QuotaUsage>, Self::Fault>;
    fn handshakes(&mut self, now: i64) -> Result<Vec<NodeHandshake>, Self::Fault>;
}
