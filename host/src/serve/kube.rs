//! The caches: kube-rs watchers of Nodes, Pods and ResourceQuotas feed the guest as deltas.
//!
//! Each watcher lists, then watches; on a reconnect that needs a re-list kube-rs starts a new
//! `Init .. InitDone` round, and at its end every object of that kind the guest had but the
//! new list lacks is removed, so the guest never keeps a ghost. The server answers `/filter`
//! once all three kinds finished their first list.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use hamr_guest::api;
use k8s_openapi::api::core::v1::{Node, Pod, ResourceQuota};
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

use super::Server;
use crate::k8s;

/// How many deltas go to the guest in one call during a list.
const BATCH: usize = 1024;

/// Reconciles one kind's objects with the guest across lists and watch events.
pub struct Feed<Key: Eq + Hash + Clone> {
    known: HashSet<Key>,
    listing: Option<HashSet<Key>>,
    batch: Vec<api::Delta>,
}

impl<Key: Eq + Hash + Clone> Default for Feed<Key> {
    fn default() -> Self {
        Feed {
            known: HashSet::new(),
            listing: None,
            batch: Vec::new(),
        }
    }
}

/// What the server must do after one watch event.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Apply these deltas now.
    Apply(Vec<api::Delta>),
    /// Apply these deltas; the list round is complete.
    Listed(Vec<api::Delta>),
    /// Nothing yet (collecting a list).
    Wait,
}

impl<Key: Eq + Hash + Clone> Feed<Key> {
    /// Records a single watch event applied by the caller itself.
    pub fn note(&mut self, key: Key, present: bool) {
        if present {
            self.known.insert(key);
        } else {
            self.known.remove(&key);
        }
    }

    /// One watch event: `upsert` and `key` convert the object, `remove` makes the delta that
    /// removes a key.
    pub fn step<K>(
        &mut self,
        event: Event<K>,
        key: impl Fn(&K) -> Key,
        upsert: impl Fn(&K) -> api::Delta,
        remove: impl Fn(&Key) -> api::Delta,
    ) -> Step {
        match event {
            Event::Init => {
                self.listing = Some(HashSet::new());
                self.batch.clear();
                Step::Wait
            }
            Event::InitApply(obj) => {
                let k = key(&obj);
                self.listing.get_or_insert_default().insert(k);
                self.batch.push(upsert(&obj));
                if self.batch.len() >= BATCH {
                    Step::Apply(std::mem::take(&mut self.batch))
                } else {
                    Step::Wait
                }
            }
            Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                let mut deltas = std::mem::take(&mut self.batch);
                deltas.extend(self.known.difference(&listed).map(&remove));
                self.known = listed;
                Step::Listed(deltas)
            }
            Event::Apply(obj) => {
                self.known.insert(key(&obj));
                Step::Apply(vec![upsert(&obj)])
            }
            Event::Delete(obj) => {
                let k = key(&obj);
                self.known.remove(&k);
                Step::Apply(vec![remove(&k)])
            }
        }
    }
}

/// Counts the kinds that finished their first list; at three the server is synced.
struct Synced {
    server: Arc<Server>,
    done: AtomicUsize,
}

impl Synced {
    fn listed(&self, first: &mut bool) {
        if std::mem::take(first) && self.done.fetch_add(1, Ordering::AcqRel) + 1 == 3 {
            self.server.set_synced();
        }
    }
}

async fn apply(server: &Arc<Server>, deltas: Vec<api::Delta>) {
    if deltas.is_empty() {
        return;
    }
    let s = server.clone();
    let _ = tokio::task::spawn_blocking(move || s.apply_now(&deltas)).await;
}

/// Starts the three watchers; they run until the process ends, backing off on errors.
pub fn start(server: Arc<Server>, client: kube::Client) {
    let synced = Arc::new(Synced {
        server: server.clone(),
        done: AtomicUsize::new(0),
    });

    let s = synced.clone();
    let nodes: Api<Node> = Api::all(client.clone());
    tokio::spawn(async move {
        let mut feed = Feed::<String>::default();
        let mut first = true;
        let mut stream = watcher::watcher(nodes, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "watching nodes; retrying");
                    continue;
                }
            };
            match feed.step(
                event,
                |n: &Node| n.metadata.name.clone().unwrap_or_default(),
                |n| api::Delta::NodeUpsert(k8s::node(n)),
                |k| api::Delta::NodeRemove(k.clone()),
            ) {
                Step::Wait => {}
                Step::Apply(d) => apply(&s.server, d).await,
                Step::Listed(d) => {
                    apply(&s.server, d).await;
                    s.listed(&mut first);
                }
            }
        }
    });

    let s = synced.clone();
    let quotas: Api<ResourceQuota> = Api::all(client.clone());
    tokio::spawn(async move {
        let mut feed = Feed::<(String, String)>::default();
        let mut first = true;
        let mut stream = watcher::watcher(quotas, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "watching resource quotas; retrying");
                    continue;
                }
            };
            match feed.step(
                event,
                |q: &ResourceQuota| {
                    let q = k8s::quota(q);
                    (q.namespace, q.name)
                },
                |q| api::Delta::QuotaUpsert(k8s::quota(q)),
                |k| api::Delta::QuotaRemove(k.clone()),
            ) {
                Step::Wait => {}
                Step::Apply(d) => apply(&s.server, d).await,
                Step::Listed(d) => {
                    apply(&s.server, d).await;
                    s.listed(&mut first);
                }
            }
        }
    });

    let s = synced;
    let pods: Api<Pod> = Api::all(client);
    tokio::spawn(async move {
        let mut feed = Feed::<String>::default();
        let mut first = true;
        let mut stream = watcher::watcher(pods, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "watching pods; retrying");
                    continue;
                }
            };
            // Single pod changes also settle pending reservations (bound or deleted).
            match &event {
                Event::Apply(p) => {
                    feed.note(pod_uid(p), true);
                    s.server.pod_changed(k8s::pod(p), false).await;
                    continue;
                }
                Event::Delete(p) => {
                    feed.note(pod_uid(p), false);
                    s.server.pod_changed(k8s::pod(p), true).await;
                    continue;
                }
                _ => {}
            }
            match feed.step(
                event,
                pod_uid,
                |p| api::Delta::PodUpsert(k8s::pod(p)),
                |k| api::Delta::PodRemove(k.clone()),
            ) {
                Step::Wait => {}
                Step::Apply(d) => apply(&s.server, d).await,
                Step::Listed(d) => {
                    apply(&s.server, d).await;
                    s.listed(&mut first);
                }
            }
        }
    });
}

/// The guest's key of a pod (its UID, or `namespace/name` when it has none).
fn pod_uid(p: &Pod) -> String {
    k8s::pod(p).uid
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> Node {
        Node {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn step(feed: &mut Feed<String>, e: Event<Node>) -> Step {
        feed.step(
            e,
            |n: &Node| n.metadata.name.clone().unwrap_or_default(),
            |n| {
                api::Delta::NodeRemove(format!(
                    "upsert {}",
                    n.metadata.name.clone().unwrap_or_default()
                ))
            },
            |k| api::Delta::NodeRemove(k.clone()),
        )
    }

    #[test]
    fn a_relist_removes_what_disappeared() {
        let mut f = Feed::default();
        assert_eq!(step(&mut f, Event::Init), Step::Wait);
        assert_eq!(step(&mut f, Event::InitApply(node("a"))), Step::Wait);
        assert_eq!(step(&mut f, Event::InitApply(node("b"))), Step::Wait);
        assert_eq!(
            step(&mut f, Event::InitDone),
            Step::Listed(vec![
                api::Delta::NodeRemove("upsert a".into()),
                api::Delta::NodeRemove("upsert b".into())
            ])
        );
        assert_eq!(
            step(&mut f, Event::Apply(node("c"))),
            Step::Apply(vec![api::Delta::NodeRemove("upsert c".into())])
        );
        // The connection drops; the re-list has only b: a and c are removed.
        step(&mut f, Event::Init);
        step(&mut f, Event::InitApply(node("b")));
        let Step::Listed(mut d) = step(&mut f, Event::InitDone) else {
            panic!("not listed")
        };
        d.sort_by_key(|d| format!("{d:?}"));
        assert_eq!(
            d,
            vec![
                api::Delta::NodeRemove("a".into()),
                api::Delta::NodeRemove("c".into()),
                api::Delta::NodeRemove("upsert b".into()),
            ]
        );
        assert_eq!(
            step(&mut f, Event::Delete(node("b"))),
            Step::Apply(vec![api::Delta::NodeRemove("b".into())])
        );
    }

    #[test]
    fn big_lists_are_sent_in_batches() {
        let mut f = Feed::default();
        step(&mut f, Event::Init);
        let mut applied = 0;
        for i in 0..(BATCH * 2 + 5) {
            if let Step::Apply(d) = step(&mut f, Event::InitApply(node(&format!("n{i}")))) {
                applied += d.len();
            }
        }
        let Step::Listed(rest) = step(&mut f, Event::InitDone) else {
            panic!()
        };
        assert_eq!(applied, BATCH * 2);
        assert_eq!(rest.len(), 5);
    }
}
