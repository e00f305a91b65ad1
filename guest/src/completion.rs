//! Which pods a node agent completes: kube-scheduler-wasm-extension binds a pod to the node the
//! guest chose but cannot write the guest's decision onto it, so the node agent, holding its
//! node's true ledger, runs [`crate::schedule::reserve`] for such a pod and writes the result.
//!
//! [`need`] tells that pod apart with the guest's own notions: a pod is *decided* when any
//! vendor decodes a placement from its annotations ([`crate::vendor::Vendor::decode_pod`]), and
//! it *asks for devices* when [`crate::schedule::requests`] derives a request for any container.

use crate::api::{Error, Pod, PodPhase};
use crate::ledger::Ledger;
use crate::schedule;
use crate::vendor::VENDORS;

/// What a pod bound to a node needs from that node's agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// It asks for devices and carries no vendor's decision: reserve it on the node.
    Decision,
    /// It has finished (`Succeeded`, `Failed`) or is being deleted.
    Finished,
    /// It asks for no device the guest manages.
    Unmanaged,
    /// Some vendor's decision annotations are on it (well-formed or not: the decision is
    /// whoever wrote it, and a malformed one is the business of the ledger and Allocate).
    Decided,
    /// It asks for devices of vendors the node does not register in the ledger (their keys,
    /// sorted); another agent may complete it, or it cannot be completed on this node.
    Elsewhere(Vec<String>),
}

/// What `pod` needs on `node`, judged against `ledger` (which holds the node's registration).
/// An error is a malformed device request, naming the container and field.
///
/// A pod bound to an NVIDIA node with `nvidia.com/gpu: 1` and no `hami.io/*` annotations needs
/// a [`Need::Decision`]; the same pod with `hami.io/vgpu-devices-allocated` is
/// [`Need::Decided`]; one asking only another vendor's devices there is [`Need::Elsewhere`]
/// with that vendor's key.
pub fn need(ledger: &Ledger, pod: &Pod, node: &str) -> Result<Need, Error> {
    if pod.deleting || matches!(pod.phase, PodPhase::Succeeded | PodPhase::Failed) {
        return Ok(Need::Finished);
    }
    if VENDORS
        .iter()
        .any(|v| !matches!(v.decode_pod(pod), Ok(None)))
    {
        return Ok(Need::Decided);
    }
    let requests = schedule::requests(ledger, pod)?;
    let mut vendors: Vec<&str> = requests.iter().flatten().map(|r| r.vendor).collect();
    if vendors.is_empty() {
        return Ok(Need::Unmanaged);
    }
    vendors.sort_unstable();
    vendors.dedup();
    let registered = ledger.nodes.get(node).map(|e| &e.vendors);
    let missing: Vec<String> = vendors
        .into_iter()
        .filter(|v| !registered.is_some_and(|r| r.contains(v)))
        .map(str::to_string)
        .collect();
    if missing.is_empty() {
        Ok(Need::Decision)
    } else {
        Ok(Need::Elsewhere(missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Container, Node};

    const NODE: &str = "node1";

    fn ledger() -> Ledger {
        let mut ledger = Ledger::default();
        let node = Node {
            name: NODE.into(),
            annotations: vec![(
                "hami.io/node-nvidia-register".into(),
                r#"[{"id":"GPU-a","count":10,"devmem":40960,"devcore":100,"type":"NVIDIA A100","mode":"hami-core","health":true}]"#.into(),
            )],
            ..Node::default()
        };
        ledger.upsert_node(node).expect("registration parses");
        ledger
    }

    fn pod(limits: &[(&str, &str)]) -> Pod {
        Pod {
            uid: "u1".into(),
            namespace: "default".into(),
            name: "p1".into(),
            node_name: Some(NODE.into()),
            containers: vec![Container {
                name: "main".into(),
                limits: limits
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Container::default()
            }],
            ..Pod::default()
        }
    }

    #[test]
    fn a_bound_pod_asking_a_card_without_a_decision_needs_one() {
        let p = pod(&[("nvidia.com/gpu", "1")]);
        assert_eq!(need(&ledger(), &p, NODE), Ok(Need::Decision));
    }

    #[test]
    fn a_pod_with_a_decision_even_a_malformed_one_is_decided() {
        let mut p = pod(&[("nvidia.com/gpu", "1")]);
        p.annotations.push((
            "hami.io/vgpu-devices-allocated".into(),
            "GPU-a,NVIDIA,1000,30:;".into(),
        ));
        assert_eq!(need(&ledger(), &p, NODE), Ok(Need::Decided));
        p.annotations[0].1 = "GPU-a,NVIDIA,lots,30:;".into();
        assert_eq!(need(&ledger(), &p, NODE), Ok(Need::Decided));
    }

    #[test]
    fn finished_unmanaged_and_foreign_pods_need_nothing_here() {
        let mut done = pod(&[("nvidia.com/gpu", "1")]);
        done.phase = PodPhase::Succeeded;
        assert_eq!(need(&ledger(), &done, NODE), Ok(Need::Finished));
        let cpu = pod(&[("cpu", "1")]);
        assert_eq!(need(&ledger(), &cpu, NODE), Ok(Need::Unmanaged));
        let elsewhere = need(&ledger(), &pod(&[("nvidia.com/gpu", "1")]), "node2");
        assert_eq!(elsewhere, Ok(Need::Elsewhere(vec!["NVIDIA".into()])));
    }

    #[test]
    fn a_malformed_request_is_an_error_naming_the_field() {
        let p = pod(&[("nvidia.com/gpu", "1"), ("nvidia.com/gpumem", "lots")]);
        let err = need(&ledger(), &p, NODE).expect_err("malformed");
        assert!(
            err.to_string().contains("nvidia.com/gpumem") && err.to_string().contains("lots"),
            "{err}"
        );
    }
}
