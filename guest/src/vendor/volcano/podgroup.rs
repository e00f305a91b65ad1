//! `volcano.sh/vgpu-podgroup-policy: spread` (spec interfaces.md §3.5): a pod that asks for it
//! never lands on a physical card that already holds a pod of its PodGroup.
//!
//! A pod's PodGroup is `<namespace>/<scheduling.k8s.io/group-name>`, or, when that annotation
//! is absent or empty, `<namespace>/<scheduling.volcano.sh/group-name>`. Every pod of a group
//! leaves a tag on each Volcano card it uses memory or cores of (whatever its own policy), so
//! the check needs nothing but the card: [`conflict`] is true when a card carries a tag of the
//! pod's group left by another pod. A pod's own containers may still share a card.

use std::sync::Arc;

use crate::api::Pod;
use crate::device::{Card, ContainerDevice};

use super::{KUBE_GROUP_NAME, PODGROUP_POLICY, VOLCANO_GROUP_NAME};

/// The policy value that turns the rule on (compared exactly, as Volcano does).
pub const SPREAD: &str = "spread";

/// `<namespace>/<group>`, or `None` for a pod outside any PodGroup.
pub fn group_key(pod: &Pod) -> Option<String> {
    [KUBE_GROUP_NAME, VOLCANO_GROUP_NAME]
        .into_iter()
        .find_map(|k| pod.annotation(k).filter(|g| !g.is_empty()))
        .map(|group| format!("{}/{group}", pod.namespace))
}

/// The group whose cards `pod` must avoid: its own, when it asks for `spread`.
pub fn spread_key(pod: &Pod) -> Option<String> {
    if pod.annotation(PODGROUP_POLICY) == Some(SPREAD) {
        group_key(pod)
    } else {
        None
    }
}

/// The tag `pod` leaves on a card through `device`: `<uid> <namespace>/<group>`, when the pod
/// belongs to a group and the device holds memory or cores of the card.
///
/// ```
/// # use hamr_guest::api::Pod;
/// # use hamr_guest::device::ContainerDevice;
/// # use hamr_guest::vendor::volcano::podgroup::tag;
/// let pod = Pod {
///     uid: "u1".into(),
///     namespace: "ml".into(),
///     annotations: vec![("scheduling.k8s.io/group-name".into(), "train".into())],
///     ..Pod::default()
/// };
/// let d = ContainerDevice { uuid: "GPU-a".into(), vendor: "VOLCANO".into(), mem: 1000, cores: 0, index: 0, mig: None };
/// assert_eq!(tag(&pod, &d).as_deref(), Some("u1 ml/train"));
/// ```
pub fn tag(pod: &Pod, device: &ContainerDevice) -> Option<Arc<str>> {
    if device.mem <= 0 && device.cores <= 0 {
        return None;
    }
    group_key(pod).map(|key| Arc::from(format!("{} {key}", pod.uid)))
}

/// Whether `card` holds a pod of group `key` other than the pod `uid`.
pub fn conflict(card: &Card, key: &str, uid: &str) -> bool {
    card.tags.iter().any(|t| {
        t.split_once(' ')
            .is_some_and(|(holder, group)| group == key && holder != uid)
    })
}
