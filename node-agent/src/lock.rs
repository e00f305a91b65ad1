//! HAMi's node lock `hami.io/mutex.lock` (node-side.md §2.9, §3.2, §3.6).
//!
//! HAMi's scheduler writes the lock on the Node when it binds a pod, as
//! `<RFC3339 time>,<pod namespace>,<pod name>` (older releases: the bare time), and binds no
//! other pod to that node until the device plugin removes it or 5 minutes pass. The agent
//! reads it to find the pod Allocate is for, and removes it once that pod is served
//! (`bind-phase: success`) or has failed (`bind-phase: failed`): a lock left in place stalls
//! the node for 5 minutes per pod. hamr's own scheduler writes no lock; then nothing here runs
//! beyond the one read.
//!
//! Removal is guarded twice: the value must still name this pod (a bare time: must be the
//! value read when Allocate began), and the merge patch carries the Node's `resourceVersion`,
//! so that a lock the scheduler rewrote in between is never removed. A conflict is retried
//! with client-go's `retry.DefaultRetry` backoff: 5 tries, 100 ms doubling, jitter 0.5.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::pods::{PodSource, PodSourceError};

/// The Node annotation HAMi's scheduler writes at bind (the guest library's constant).
pub use hamr_guest::ledger::NODE_LOCK;

/// Whom a lock is held for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// `<RFC3339>,<namespace>,<name>`: the pod being bound.
    Pod { namespace: String, name: String },
    /// A bare RFC3339 time (HAMi before the owner was recorded): no pod is named.
    Unnamed,
}

/// A lock value that is neither `<RFC3339>,<namespace>,<name>` nor a bare RFC3339 time.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{NODE_LOCK}: {value:?}: {reason}")]
pub struct LockError {
    /// The annotation's value, as read.
    pub value: String,
    pub reason: String,
}

/// Reads a lock value.
///
/// ```
/// # use hamr_node_agent::lock::{Holder, parse};
/// assert_eq!(parse("2026-11-29T10:00:00Z,default,p1").unwrap(),
///     Holder::Pod { namespace: "default".into(), name: "p1".into() });
/// assert_eq!(parse("2026-11-29T10:00:00Z").unwrap(), Holder::Unnamed);
/// assert!(parse("2026-11-29T10:00:00Z,default").is_err());
/// ```
pub fn parse(value: &str) -> Result<Holder, LockError> {
    let error = |reason: String| LockError {
        value: value.to_string(),
        reason,
    };
    let parts: Vec<&str> = value.split(',').collect();
    let time = |t: &str| {
        t.parse::<Timestamp>()
            .map(|_| ())
            .map_err(|e| error(format!("the time {t:?} is not RFC 3339: {e}")))
    };
    match parts.as_slice() {
        [t] => {
            time(t)?;
            Ok(Holder::Unnamed)
        }
        [t, namespace, name] => {
            time(t)?;
            if namespace.is_empty() || name.is_empty() {
                return Err(error("the pod namespace and name must not be empty".into()));
            }
            Ok(Holder::Pod {
                namespace: namespace.to_string(),
                name: name.to_string(),
            })
        }
        _ => Err(error(format!(
            "expected <RFC3339 time>,<namespace>,<name>, found {} comma-separated fields",
            parts.len()
        ))),
    }
}

/// The lock as Allocate found it on the Node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldLock {
    /// The annotation's value.
    pub value: String,
    pub holder: Holder,
}

impl HeldLock {
    /// Whether finishing pod `namespace/name` should release this lock: it names that pod, or
    /// names none.
    pub fn is_for(&self, namespace: &str, name: &str) -> bool {
        match &self.holder {
            Holder::Pod {
                namespace: ns,
                name: n,
            } => ns == namespace && n == name,
            Holder::Unnamed => true,
        }
    }
}

/// The Node's lock annotation and the Node's `resourceVersion`, as one read saw them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeLockState {
    /// `hami.io/mutex.lock`, when present.
    pub value: Option<String>,
    pub resource_version: String,
}

/// Exponential backoff with jitter, client-go's `wait.Backoff`: try `steps` times, sleeping
/// `initial x factor^i`, plus up to `jitter` of that at random, between tries.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    pub steps: u32,
    pub initial: Duration,
    pub factor: f64,
    pub jitter: f64,
}

impl Backoff {
    /// client-go's `retry.DefaultRetry`, which HAMi's lock release uses.
    pub const DEFAULT_RETRY: Backoff = Backoff {
        steps: 5,
        initial: Duration::from_millis(100),
        factor: 2.0,
        jitter: 0.5,
    };

    /// The sleep after failed try `try_index` (0-based): 100, 200, 400, 800 ms for the
    /// default, each plus up to half again.
    pub fn delay(&self, try_index: u32) -> Duration {
        let base = self.initial.as_secs_f64() * self.factor.powi(try_index as i32);
        Duration::from_secs_f64(base * (1.0 + self.jitter * random_unit()))
    }
}

/// A number in [0, 1) from the standard library's per-process random hash keys; jitter only
/// needs tries from different agents not to line up.
fn random_unit() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// What a release did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Released {
    /// The lock was removed.
    Removed,
    /// The Node carries no lock any more.
    Gone,
    /// The lock is now held for another pod (or, unnamed, was rewritten): left in place.
    NotOurs(String),
}

/// Releases `node`'s lock `held` (the lock Allocate read, once its pod is served): re-reads
/// the Node, removes the annotation only if it still names the same pod (an unnamed lock: only
/// if its value is still `held.value`), with the Node's `resourceVersion` as a precondition; a
/// conflict re-reads and retries per `backoff`.
pub async fn release<P: PodSource>(
    pods: &P,
    node: &str,
    held: &HeldLock,
    backoff: Backoff,
) -> Result<Released, PodSourceError> {
    let mut tries = 0;
    loop {
        let state = pods.node_lock(node).await?;
        let Some(value) = state.value else {
            return Ok(Released::Gone);
        };
        let ours = match &held.holder {
            Holder::Pod { namespace, name } => value.ends_with(&format!(",{namespace},{name}")),
            Holder::Unnamed => value == held.value,
        };
        if !ours {
            return Ok(Released::NotOurs(value));
        }
        match pods.remove_node_lock(node, &state.resource_version).await {
            Ok(()) => return Ok(Released::Removed),
            Err(PodSourceError::Conflict { .. }) if tries + 1 < backoff.steps => {
                tokio::time::sleep(backoff.delay(tries)).await;
                tries += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests;
