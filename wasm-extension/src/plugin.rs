//! The plugin behind the exports, written against [`Host`] (the ABI's imports) so that it runs
//! natively in tests: one scheduling cycle is `prefilter`, `filter` per node, `prescore`,
//! `score` per node, `normalizescore`, `reserve` (and `unreserve` on failure).
//!
//! State kept by one guest instance: the ledger of nodes (each node decoded once per
//! `resourceVersion`), the use each node publishes in `hamr.io/node-device-usage`, and the pods
//! this instance reserved until the published use includes them. The pod is decoded once per
//! cycle, in `prefilter`.

use std::collections::{BTreeMap, HashMap, HashSet};

use hamr_guest::api::{self, Code, Reservation};
use hamr_guest::config::Config;
use hamr_guest::ledger::Ledger;
use hamr_guest::policy::NodePolicy;
use hamr_guest::schedule::{self, NodeRank};
use hamr_guest::usage_annotation::{self, NODE_DEVICE_USAGE, NodeDeviceUsage};
use prost::Message;

use crate::proto;

/// Status codes of the scheduling framework, as the ABI carries them (spec §1.8).
pub mod status {
    pub const SUCCESS: i32 = 0;
    pub const ERROR: i32 = 1;
    pub const UNSCHEDULABLE: i32 = 2;
    pub const UNSCHEDULABLE_AND_UNRESOLVABLE: i32 = 3;
    pub const SKIP: i32 = 5;
}

/// klog severities.
pub mod severity {
    pub const INFO: i32 = 0;
    pub const WARNING: i32 = 1;
    pub const ERROR: i32 = 2;
}

/// The event reason under which a reservation's decision is published.
pub const DECISION_EVENT_REASON: &str = "HamrDeviceDecision";

/// The host side of the ABI, as the plugin needs it. Reads return the whole value (empty when
/// absent); the ABI module implements them with the buffer/limit/length protocol.
pub trait Host {
    /// `k8s.io/scheduler.get_config`.
    fn config(&mut self) -> Vec<u8>;
    /// `k8s.io/scheduler.currentPod`: a protobuf `v1.Pod`.
    fn current_pod(&mut self) -> Vec<u8>;
    /// `k8s.io/scheduler.currentNodeName`.
    fn current_node_name(&mut self) -> Vec<u8>;
    /// `k8s.io/api.node`: a protobuf `v1.Node`, empty when the node is unknown.
    fn node(&mut self, name: &str) -> Vec<u8>;
    /// `k8s.io/scheduler.nodeScoreList`: JSON object node -> score.
    fn node_score_list(&mut self) -> Vec<u8>;
    /// `k8s.io/scheduler.result.status_reason`.
    fn set_status_reason(&mut self, reason: &str);
    /// `k8s.io/scheduler.result.normalized_score_list`.
    fn set_normalized_score_list(&mut self, json: &str);
    /// `k8s.io/scheduler.handle.eventrecorder.eventf`.
    fn event(&mut self, json: &str);
    /// `k8s.io/klog.log`.
    fn log(&mut self, severity: i32, message: &str);
    /// The wall clock, Unix seconds (WASI `clock_time_get`).
    fn now(&mut self) -> i64;
}

/// The pod of the current cycle.
struct Cycle {
    pod: api::Pod,
    managed: bool,
    /// Nodes already brought up to date in this cycle.
    fresh: HashSet<String>,
    /// The unscaled rank of each node `score` found fitting, for `normalizescore`.
    ranks: HashMap<String, NodeRank>,
}

/// One guest instance's state.
pub struct Plugin {
    ledger: Ledger,
    /// Why `guestConfig` was refused; every hook then fails with it.
    config_error: Option<String>,
    /// Node -> the resourceVersion last decoded.
    versions: HashMap<String, String>,
    cycle: Option<Cycle>,
}

impl Plugin {
    /// Reads and applies `guestConfig` (the keys of hamr's config file, as JSON).
    pub fn new(host: &mut dyn Host) -> Plugin {
        let text = String::from_utf8_lossy(&host.config()).into_owned();
        let mut ledger = Ledger::default();
        let config_error = match Config::from_json(&text) {
            Ok(c) => {
                ledger.configure(c);
                None
            }
            Err(e) => Some(api::Error::InvalidConfig(e).to_string()),
        };
        if let Some(e) = &config_error {
            host.log(severity::ERROR, &format!("hamr: guestConfig refused: {e}"));
        }
        Plugin {
            ledger,
            config_error,
            versions: HashMap::new(),
            cycle: None,
        }
    }

    /// Why the configuration was refused, if it was.
    pub fn config_error(&self) -> Option<&str> {
        self.config_error.as_deref()
    }

    /// Read access to the ledger (tests and benchmarks).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    fn fail(host: &mut dyn Host, code: i32, reason: &str) -> i32 {
        host.set_status_reason(reason);
        code
    }

    /// `prefilter`: starts a cycle. Decodes the pod, gives back what an earlier cycle of the
    /// same pod reserved, and checks its requests. Skip for a pod that asks for no managed
    /// device (so the framework skips this plugin's `filter`), Error for a malformed request.
    pub fn prefilter(&mut self, host: &mut dyn Host) -> i32 {
        self.cycle = None;
        if let Some(e) = &self.config_error {
            return Self::fail(host, status::ERROR, e);
        }
        let pod = match decode_pod(&host.current_pod()) {
            Ok(p) => p,
            Err(e) => return Self::fail(host, status::ERROR, &e),
        };
        schedule::unreserve(&mut self.ledger, &pod.uid);
        let managed = match schedule::requests(&self.ledger, &pod) {
            Ok(r) => !r.iter().all(Vec::is_empty),
            Err(e) => return Self::fail(host, status::ERROR, &e.to_string()),
        };
        if managed {
            // The rest of the pod's settings (e.g. policy weights) are read here too, so a
            // malformed one fails the cycle once rather than every node.
            let now = host.now();
            if let Err(e) = schedule::verdicts::<&str>(&self.ledger, &pod, &[], now) {
                return Self::fail(host, status::ERROR, &e.to_string());
            }
        }
        self.cycle = Some(Cycle {
            pod,
            managed,
            fresh: HashSet::new(),
            ranks: HashMap::new(),
        });
        if managed {
            status::SUCCESS
        } else {
            status::SKIP
        }
    }

    /// The cycle's pod; decoded now when `prefilter` did not run (it always does with this
    /// module's exports, but a host may call hooks of a cycle on a fresh instance).
    fn cycle(&mut self, host: &mut dyn Host) -> Result<&mut Cycle, String> {
        if let Some(e) = &self.config_error {
            return Err(e.clone());
        }
        if self.cycle.is_none() {
            let pod = decode_pod(&host.current_pod())?;
            let managed = schedule::requests(&self.ledger, &pod)
                .map_err(|e| e.to_string())?
                .iter()
                .any(|r| !r.is_empty());
            self.cycle = Some(Cycle {
                pod,
                managed,
                fresh: HashSet::new(),
                ranks: HashMap::new(),
            });
        }
        self.cycle
            .as_mut()
            .ok_or_else(|| "no scheduling cycle".to_string())
    }

    /// Brings one node up to date: decoded again only when its resourceVersion changed, then
    /// its published use booked. Returns false when the host does not know the node.
    fn refresh(&mut self, host: &mut dyn Host, name: &str) -> bool {
        if self.cycle.as_ref().is_some_and(|c| c.fresh.contains(name)) {
            return true;
        }
        let bytes = host.node(name);
        if bytes.is_empty() {
            return false;
        }
        let version = proto::NodeHead::decode(bytes.as_slice())
            .ok()
            .and_then(|h| h.metadata)
            .and_then(|m| m.resource_version)
            .unwrap_or_default();
        let unchanged = !version.is_empty()
            && self.versions.get(name) == Some(&version)
            && self.ledger.nodes.contains_key(name);
        if !unchanged {
            match proto::Node::decode(bytes.as_slice()) {
                Ok(n) => self.upsert(host, n.to_api(), version),
                Err(e) => host.log(
                    severity::WARNING,
                    &format!("hamr: node/{name}: cannot decode the protobuf v1.Node: {e}"),
                ),
            }
        }
        if let Some(c) = self.cycle.as_mut() {
            c.fresh.insert(name.to_string());
        }
        true
    }

    fn upsert(&mut self, host: &mut dyn Host, node: api::Node, version: String) {
        let name = node.name.clone();
        let published = node.annotation(NODE_DEVICE_USAGE).map(str::to_string);
        if let Err(e) = self.ledger.upsert_node(node) {
            host.log(severity::WARNING, &format!("hamr: {e}"));
        }
        let usage = match published {
            None => NodeDeviceUsage::default(),
            Some(text) => NodeDeviceUsage::decode(&name, &text).unwrap_or_else(|e| {
                host.log(severity::WARNING, &format!("hamr: {e}"));
                NodeDeviceUsage::default()
            }),
        };
        usage_annotation::book(&mut self.ledger, &name, &usage);
        self.versions.insert(name, version);
    }

    fn node_name(host: &mut dyn Host) -> String {
        String::from_utf8_lossy(&host.current_node_name()).into_owned()
    }

    /// `filter`: the verdict on the current node, with the aggregated reason.
    pub fn filter(&mut self, host: &mut dyn Host) -> i32 {
        let name = Self::node_name(host);
        if let Err(e) = self.cycle(host) {
            return Self::fail(host, status::ERROR, &e);
        }
        self.refresh(host, &name);
        let now = host.now();
        let Some(cycle) = self.cycle.as_ref() else {
            return status::ERROR;
        };
        if !cycle.managed {
            return status::SUCCESS;
        }
        match schedule::verdicts(&self.ledger, &cycle.pod, std::slice::from_ref(&name), now) {
            Err(e) => Self::fail(host, status::ERROR, &e.to_string()),
            Ok(v) => match v.first() {
                None => status::SUCCESS,
                Some(v) => match v.code {
                    Code::Success => status::SUCCESS,
                    Code::Unschedulable => Self::fail(host, status::UNSCHEDULABLE, &v.reason),
                    Code::UnschedulableAndUnresolvable => {
                        Self::fail(host, status::UNSCHEDULABLE_AND_UNRESOLVABLE, &v.reason)
                    }
                },
            },
        }
    }

    /// `prescore`: Skip for a pod this plugin does not manage.
    pub fn prescore(&mut self, host: &mut dyn Host) -> i32 {
        match self.cycle(host) {
            Err(e) => Self::fail(host, status::ERROR, &e),
            Ok(c) if !c.managed => status::SKIP,
            Ok(_) => status::SUCCESS,
        }
    }

    /// `score`: (status, score) for the current node, 0..=100 under the pod's node policy.
    pub fn score(&mut self, host: &mut dyn Host) -> (i32, i32) {
        let name = Self::node_name(host);
        if let Err(e) = self.cycle(host) {
            return (Self::fail(host, status::ERROR, &e), 0);
        }
        self.refresh(host, &name);
        let now = host.now();
        let Some(cycle) = self.cycle.as_ref() else {
            return (status::ERROR, 0);
        };
        match schedule::ranked_scores(&self.ledger, &cycle.pod, std::slice::from_ref(&name), now) {
            Err(e) => (Self::fail(host, status::ERROR, &e.to_string()), 0),
            Ok(s) => match s.into_iter().next() {
                None => (status::SUCCESS, 0),
                Some((score, rank)) => {
                    if let (Some(rank), Some(c)) = (rank, self.cycle.as_mut()) {
                        c.ranks.insert(name, rank);
                    }
                    (status::SUCCESS, i32::try_from(score.score).unwrap_or(100))
                }
            },
        }
    }

    /// `normalizescore`: scores are already 0..=100, but they can tie where hamr's choice does
    /// not (the framework then picks at random), and the vendors' node-score terms (Kunlun's
    /// bubble score, MetaX topology loss, Ascend NetworkID, VastAI dies) do not fit the scale at
    /// all. So the node hamr's `filter` decision would take (by the unscaled [`NodeRank`] that
    /// `score` kept, then name) is made the unique maximum: it gets 100 and every other node at
    /// most 99. The list is set only when that changes something.
    pub fn normalize_score(&mut self, host: &mut dyn Host) -> i32 {
        if !self.cycle(host).is_ok_and(|c| c.managed) {
            return status::SUCCESS;
        }
        let text = host.node_score_list();
        let mut scores: BTreeMap<String, i64> = match serde_json::from_slice(&text) {
            Ok(s) => s,
            Err(e) => {
                return Self::fail(
                    host,
                    status::ERROR,
                    &format!("nodeScoreList is not a JSON object of scores: {e}"),
                );
            }
        };
        // Nodes scored on another instance of this guest have no rank here yet.
        let missing: Vec<String> = match self.cycle.as_ref() {
            Some(c) => scores
                .keys()
                .filter(|n| !c.ranks.contains_key(*n))
                .cloned()
                .collect(),
            None => return status::SUCCESS,
        };
        if !missing.is_empty() {
            for n in &missing {
                self.refresh(host, n);
            }
            let now = host.now();
            let Some(cycle) = self.cycle.as_mut() else {
                return status::SUCCESS;
            };
            if let Ok(ranked) = schedule::ranked_scores(&self.ledger, &cycle.pod, &missing, now) {
                for (s, rank) in ranked {
                    if let Some(rank) = rank {
                        cycle.ranks.insert(s.node, rank);
                    }
                }
            }
        }
        let Some(cycle) = self.cycle.as_ref() else {
            return status::SUCCESS;
        };
        let policy = NodePolicy::for_pod(&cycle.pod, &self.ledger.config().node_scheduler_policy);
        let best = scores
            .keys()
            .filter_map(|n| cycle.ranks.get(n).map(|r| (n.as_str(), *r)))
            .min_by(|a, b| NodeRank::order(policy, *a, *b))
            .map(|(n, _)| n.to_string());
        let Some(best) = best else {
            return status::SUCCESS;
        };
        let unique_max = scores.iter().all(|(n, s)| *n == best || *s < scores[&best]);
        if unique_max {
            return status::SUCCESS;
        }
        for (n, s) in scores.iter_mut() {
            *s = if *n == best { 100 } else { (*s).min(99) };
        }
        let json = serde_json::to_string(&scores).unwrap_or_else(|_| "{}".to_string());
        host.set_normalized_score_list(&json);
        status::SUCCESS
    }

    /// `reserve`: fits the pod on the chosen node and books it in this instance until the
    /// node's published use includes it. The decision (the pod annotations HAMi's device plugin
    /// reads) is published as an event on the pod, since this host cannot patch pods.
    pub fn reserve(&mut self, host: &mut dyn Host) -> i32 {
        let name = Self::node_name(host);
        if let Err(e) = self.cycle(host) {
            return Self::fail(host, status::ERROR, &e);
        }
        self.refresh(host, &name);
        let now = host.now();
        let Some(cycle) = self.cycle.as_ref() else {
            return status::ERROR;
        };
        if !cycle.managed {
            return status::SUCCESS;
        }
        let pod = cycle.pod.clone();
        match schedule::reserve(&mut self.ledger, &pod, &name, now) {
            Err(e) => Self::fail(host, status::ERROR, &e.to_string()),
            Ok(Reservation::Rejected(v)) => {
                let code = match v.code {
                    Code::UnschedulableAndUnresolvable => status::UNSCHEDULABLE_AND_UNRESOLVABLE,
                    _ => status::UNSCHEDULABLE,
                };
                Self::fail(host, code, &v.reason)
            }
            Ok(Reservation::Reserved(d)) => {
                host.event(&decision_event(&pod, &d));
                host.log(
                    severity::INFO,
                    &format!("hamr: reserved {} on {}", pod.object(), d.node),
                );
                status::SUCCESS
            }
        }
    }

    /// `unreserve`: releases what this instance reserved for the current pod.
    pub fn unreserve(&mut self, host: &mut dyn Host) {
        match decode_pod(&host.current_pod()) {
            Ok(pod) => schedule::unreserve(&mut self.ledger, &pod.uid),
            Err(e) => host.log(severity::ERROR, &format!("hamr: unreserve: {e}")),
        }
    }
}

fn decode_pod(bytes: &[u8]) -> Result<api::Pod, String> {
    if bytes.is_empty() {
        return Err("the host gave no current pod".to_string());
    }
    proto::Pod::decode(bytes)
        .map(|p| p.to_api())
        .map_err(|e| format!("currentPod: cannot decode the protobuf v1.Pod: {e}"))
}

/// The decision as published: `{"node", "annotations", "labels"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DecisionNote {
    pub node: String,
    pub annotations: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// The event JSON of `handle.eventrecorder.eventf` (Go field names, spec §1.5) carrying a
/// reservation's decision in `Note`.
pub fn decision_event(pod: &api::Pod, d: &api::Decision) -> String {
    let note = DecisionNote {
        node: d.node.clone(),
        annotations: d.annotations.iter().cloned().collect(),
        labels: d.labels.iter().cloned().collect(),
    };
    let reference = |kind: &str, name: &str, namespace: &str, uid: &str| {
        serde_json::json!({
            "Kind": kind, "APIVersion": "v1", "Name": name, "Namespace": namespace,
            "UID": uid, "ResourceVersion": "",
        })
    };
    serde_json::json!({
        "RegardingReference": reference("Pod", &pod.name, &pod.namespace, &pod.uid),
        "RelatedReference": reference("Node", &d.node, "", ""),
        "Eventtype": "Normal",
        "Reason": DECISION_EVENT_REASON,
        "Action": "Reserve",
        "Note": serde_json::to_string(&note).unwrap_or_default(),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(Default)]
    struct FakeHost {
        config: String,
        pod: Vec<u8>,
        node: String,
        nodes: HashMap<String, Vec<u8>>,
        scores: String,
        reason: Option<String>,
        normalized: Option<String>,
        events: Vec<String>,
        node_reads: usize,
    }

    impl Host for FakeHost {
        fn config(&mut self) -> Vec<u8> {
            self.config.as_bytes().to_vec()
        }
        fn current_pod(&mut self) -> Vec<u8> {
            self.pod.clone()
        }
        fn current_node_name(&mut self) -> Vec<u8> {
            self.node.as_bytes().to_vec()
        }
        fn node(&mut self, name: &str) -> Vec<u8> {
            self.node_reads += 1;
            self.nodes.get(name).cloned().unwrap_or_default()
        }
        fn node_score_list(&mut self) -> Vec<u8> {
            self.scores.as_bytes().to_vec()
        }
        fn set_status_reason(&mut self, reason: &str) {
            self.reason = Some(reason.to_string());
        }
        fn set_normalized_score_list(&mut self, json: &str) {
            self.normalized = Some(json.to_string());
        }
        fn event(&mut self, json: &str) {
            self.events.push(json.to_string());
        }
        fn log(&mut self, _severity: i32, _message: &str) {}
        fn now(&mut self) -> i64 {
            1_795_867_200
        }
    }

    fn register(devmem: i64) -> String {
        format!(
            r#"[{{"id":"GPU-a","index":0,"count":10,"devmem":{devmem},"devcore":100,"type":"NVIDIA A100-SXM4-40GB","numa":0,"mode":"hami-core","health":true}}]"#
        )
    }

    fn node(name: &str, devmem: i64, version: &str) -> Vec<u8> {
        let n = api::Node {
            name: name.into(),
            annotations: vec![("hami.io/node-nvidia-register".into(), register(devmem))],
            ..api::Node::default()
        };
        proto::Node::from_api(&n, version).encode_to_vec()
    }

    fn pod(limits: &[(&str, &str)]) -> Vec<u8> {
        let p = api::Pod {
            uid: "u1".into(),
            namespace: "default".into(),
            name: "p1".into(),
            containers: vec![api::Container {
                name: "main".into(),
                limits: limits
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..api::Container::default()
            }],
            ..api::Pod::default()
        };
        proto::Pod::from_api(&p).encode_to_vec()
    }

    fn host(config: &str) -> FakeHost {
        let mut h = FakeHost {
            config: config.into(),
            ..FakeHost::default()
        };
        for n in ["a", "b"] {
            h.nodes.insert(n.into(), node(n, 40960, "1"));
        }
        h
    }

    /// Runs prefilter and filter on both nodes.
    fn filter_both(p: &mut Plugin, h: &mut FakeHost) -> Vec<i32> {
        assert_eq!(p.prefilter(h), status::SUCCESS);
        ["a", "b"]
            .iter()
            .map(|n| {
                h.node = n.to_string();
                p.filter(h)
            })
            .collect()
    }

    #[test]
    fn a_pod_without_managed_devices_is_skipped() {
        let mut h = host("");
        h.pod = pod(&[("cpu", "1")]);
        let mut p = Plugin::new(&mut h);
        assert_eq!(p.prefilter(&mut h), status::SKIP);
        assert_eq!(p.prescore(&mut h), status::SKIP);
    }

    #[test]
    fn hamrs_choice_is_made_the_unique_maximum_and_only_when_needed() {
        for (config, input, want) in [
            // binpack: both idle score 0; hamr prefers `a` (name order): raised to 100.
            ("", r#"{"a":0,"b":0}"#, Some(r#"{"a":100,"b":0}"#)),
            // A scale that disagrees with hamr's choice (as saturated vendor terms can): hamr's
            // node is made the maximum, the others keep their score below it.
            ("", r#"{"a":0,"b":100}"#, Some(r#"{"a":100,"b":99}"#)),
            // spread: both idle score 100; `b` is lowered.
            (
                r#"{"nodeSchedulerPolicy":"spread"}"#,
                r#"{"a":100,"b":100}"#,
                Some(r#"{"a":100,"b":99}"#),
            ),
            // No tie: nothing is set.
            ("", r#"{"a":10,"b":0}"#, None),
        ] {
            let mut h = host(config);
            h.pod = pod(&[("nvidia.com/gpu", "1"), ("nvidia.com/gpumem", "1000")]);
            let mut p = Plugin::new(&mut h);
            assert_eq!(filter_both(&mut p, &mut h), vec![0, 0]);
            assert_eq!(p.prescore(&mut h), status::SUCCESS);
            h.scores = input.into();
            assert_eq!(p.normalize_score(&mut h), status::SUCCESS);
            assert_eq!(h.normalized.as_deref(), want, "{config} {input}");
        }
    }

    #[test]
    fn a_node_is_decoded_again_only_when_its_resource_version_changes() {
        let mut h = host("");
        h.pod = pod(&[("nvidia.com/gpu", "1"), ("nvidia.com/gpumem", "30000")]);
        let mut p = Plugin::new(&mut h);
        assert_eq!(filter_both(&mut p, &mut h), vec![0, 0]);
        // Same resourceVersion, different bytes: the node is not decoded again.
        h.nodes.insert("a".into(), node("a", 20000, "1"));
        assert_eq!(filter_both(&mut p, &mut h), vec![0, 0]);
        // A new resourceVersion: the smaller card is seen.
        h.nodes.insert("a".into(), node("a", 20000, "2"));
        assert_eq!(
            filter_both(&mut p, &mut h),
            vec![status::UNSCHEDULABLE, status::SUCCESS]
        );
        assert_eq!(h.reason.as_deref(), Some("1/1 CardInsufficientMemory"));
        // Within a cycle a node is read once: score after filter reads nothing.
        let reads = h.node_reads;
        h.node = "b".into();
        assert_eq!(p.score(&mut h).0, status::SUCCESS);
        assert_eq!(h.node_reads, reads);
    }

    #[test]
    fn reserve_publishes_the_decision_and_unreserve_releases_it() {
        let mut h = host("");
        h.pod = pod(&[("nvidia.com/gpu", "1"), ("nvidia.com/gpumem", "30000")]);
        let mut p = Plugin::new(&mut h);
        filter_both(&mut p, &mut h);
        h.node = "a".into();
        assert_eq!(p.reserve(&mut h), status::SUCCESS);
        let event: serde_json::Value =
            serde_json::from_str(&h.events[0]).expect("the event is JSON");
        assert_eq!(event["Reason"], DECISION_EVENT_REASON);
        assert_eq!(event["RegardingReference"]["UID"], "u1");
        let note: DecisionNote =
            serde_json::from_str(event["Note"].as_str().expect("a note")).expect("a decision");
        assert_eq!(note.node, "a");
        assert_eq!(
            note.annotations["hami.io/vgpu-devices-to-allocate"],
            "GPU-a,NVIDIA,30000,0:;"
        );
        assert!(p.ledger().pods.contains_key("u1"));
        p.unreserve(&mut h);
        assert!(!p.ledger().pods.contains_key("u1"));
    }

    #[test]
    fn a_refused_config_fails_every_hook_with_its_reason() {
        let mut h = host(r#"{"gpuSchedulerPolicy":"random"}"#);
        h.pod = pod(&[("nvidia.com/gpu", "1")]);
        let mut p = Plugin::new(&mut h);
        assert!(p.config_error().is_some());
        assert_eq!(p.prefilter(&mut h), status::ERROR);
        let reason = h.reason.clone().unwrap_or_default();
        assert!(reason.contains("gpuSchedulerPolicy"), "{reason}");
        h.node = "a".into();
        assert_eq!(p.filter(&mut h), status::ERROR);
    }
}
