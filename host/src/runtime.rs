//! The wasmtime runtime around the guest component (being written; this placeholder only
//! fixes the API other modules call).
use std::path::Path;

use hamr_guest::api::{self, Scheduler};

/// A fault of the component engine: the guest trapped or ran out of time or memory.
#[derive(Debug, thiserror::Error)]
#[error("guest fault: {0}")]
pub struct Fault(pub String);

/// The guest component, instantiated in wasmtime.
pub struct ComponentScheduler {
    _private: (),
}

impl ComponentScheduler {
    /// Loads the component from `path`, or the one embedded in the binary when `None`.
    pub fn load(_path: Option<&Path>) -> anyhow::Result<ComponentScheduler> {
        anyhow::bail!("the component runtime is not built yet")
    }
}

macro_rules! unbuilt {
    () => {
        Err(Fault("the component runtime is not built yet".into()))
    };
}

impl Scheduler for ComponentScheduler {
    type Fault = Fault;
    fn configure(&mut self, _: &str) -> Result<Result<(), api::Error>, Fault> { unbuilt!() }
    fn apply(&mut self, _: &[api::Delta]) -> Result<Vec<api::DeltaError>, Fault> { unbuilt!() }
    fn clear(&mut self) -> Result<(), Fault> { unbuilt!() }
    fn filter(&mut self, _: &api::Pod, _: &[String], _: i64) -> Result<Result<api::FilterOutcome, api::Error>, Fault> { unbuilt!() }
    fn score(&mut self, _: &api::Pod, _: &[String], _: i64) -> Result<Result<Vec<api::NodeScore>, api::Error>, Fault> { unbuilt!() }
    fn reserve(&mut self, _: &api::Pod, _: &str, _: i64) -> Result<Result<api::Reservation, api::Error>, Fault> { unbuilt!() }
    fn unreserve(&mut self, _: &str) -> Result<(), Fault> { unbuilt!() }
    fn admit(&mut self, _: &api::Pod) -> Result<Result<api::Admission, api::Error>, Fault> { unbuilt!() }
    fn managed_resources(&mut self) -> Result<Vec<String>, Fault> { unbuilt!() }
    fn explain(&mut self, _: &api::Pod, _: &[String], _: i64) -> Result<Result<Vec<api::NodeExplanation>, api::Error>, Fault> { unbuilt!() }
    fn usage(&mut self, _: &[String], _: i64) -> Result<Vec<api::NodeUsage>, Fault> { unbuilt!() }
}
