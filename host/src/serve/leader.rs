//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it:
//! the holder renews `renewTime` every `renew_every`; another replica takes the Lease over once
//! `renewTime + leaseDurationSeconds` has passed, bumping `leaseTransitions`. Every write
//! carries the `resourceVersion` it read, so two candidates never both win. State lives in API
//! objects, so a new leader starts from its warm caches and loses nothing.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;

use super::Server;

/// One candidate.
#[derive(Clone)]
pub struct Election {
    pub leases: Api<Lease>,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_every: Duration,
    /// This replica's pod (namespace, name): labelled `hamr.io/scheduler-role=leader|follower`
    /// on every change, so that the Service (selecting `leader`) reaches the one that decides.
    pub pod: Option<(String, String)>,
}

/// The pod label naming a replica's role.
pub const ROLE_LABEL: &str = "hamr.io/scheduler-role";

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

impl Election {
    fn spec(&self, now: Timestamp, acquired: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.lease_duration.as_secs().max(1) as i32),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One round: creates, renews or takes over the Lease. Returns whether this candidate
    /// holds it afterwards.
    pub async fn round(&self, now: Timestamp) -> Result<bool, kube::Error> {
        let current = match self.leases.get_opt(&self.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(now, now, 0)),
                };
                return match self.leases.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(e) if is_status(&e, 409) => Ok(false),
                    Err(e) => Err(e),
                };
            }
            Some(l) => l,
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let transitions = spec.lease_transitions.unwrap_or(0);
        let next = if holder == self.identity {
            let acquired = spec.acquire_time.map_or(now, |t| t.0);
            self.spec(now, acquired, transitions)
        } else {
            let duration = SignedDuration::from_secs(i64::from(
                spec.lease_duration_seconds
                    .unwrap_or(self.lease_duration.as_secs() as i32),
            ));
            let expired = match spec.renew_time {
                None => true,
                Some(t) => t.0.checked_add(duration).is_ok_and(|end| end < now),
            };
            if !holder.is_empty() && !expired {
                return Ok(false);
            }
            self.spec(now, now, transitions + 1)
        };
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version: current.metadata.resource_version.clone(),
                ..ObjectMeta::default()
            },
            spec: Some(next),
        };
        match self
            .leases
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_status(&e, 409) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (on shutdown), so a follower takes over at once.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(current) = self.leases.get_opt(&self.name).await? else {
            return Ok(());
        };
        let mut spec = current.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version: current.metadata.resource_version.clone(),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
        };
        self.leases
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }

    /// Campaigns forever, telling the server whether it leads. A leader that cannot renew
    /// within the lease duration steps down before anyone else may take over.
    pub async fn run(self, server: Arc<Server>) {
        let mut last_renewed: Option<tokio::time::Instant> = None;
        let mut labelled: Option<bool> = None;
        loop {
            match self.round(Timestamp::now()).await {
                Ok(true) => {
                    last_renewed = Some(tokio::time::Instant::now());
                    server.set_leader(true);
                }
                Ok(false) => {
                    last_renewed = None;
                    server.set_leader(false);
                }
                Err(e) => {
                    tracing::warn!(error = %e, lease = %self.name, "leader election round failed");
                    // Step down a little before the lease could expire for the others.
                    let deadline = self.lease_duration.mul_f32(0.8);
                    if last_renewed.is_none_or(|t| t.elapsed() >= deadline) {
                        server.set_leader(false);
                    }
                }
            }
            let leader = server.leader();
            if labelled != Some(leader)
                && let Some((namespace, name)) = &self.pod
            {
                let role = if leader { "leader" } else { "follower" };
                let labels = vec![(ROLE_LABEL.to_string(), Some(role.to_string()))];
                match server
                    .backend
                    .patch_pod(namespace, name, &Vec::new(), &labels)
                    .await
                {
                    Ok(_) => labelled = Some(leader),
                    Err(e) => tracing::warn!(error = %e, role, "labelling this replica's pod"),
                }
            }
            let wait = if leader {
                self.renew_every
            } else {
                self.renew_every.min(Duration::from_secs(2))
            };
            tokio::time::sleep(wait).await;
        }
    }
}
