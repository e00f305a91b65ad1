//! A stand-in for kubelet's Registration service on a real unix socket.
#![allow(dead_code)] // each test binary uses a part of the stand-in

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hamr_node_agent::api::registration_server::{Registration, RegistrationServer};
use hamr_node_agent::api::{Empty, RegisterRequest};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

/// Records what it was sent.
#[derive(Clone, Default)]
pub struct Kubelet {
    pub seen: Arc<Mutex<Vec<RegisterRequest>>>,
}

#[tonic::async_trait]
impl Registration for Kubelet {
    async fn register(&self, request: Request<RegisterRequest>) -> Result<Response<Empty>, Status> {
        self.seen
            .lock()
            .map_err(|_| Status::internal("poisoned"))?
            .push(request.into_inner());
        Ok(Response::new(Empty {}))
    }
}

impl Kubelet {
    /// Serves on `socket` until the returned task is aborted.
    pub fn start(&self, socket: &Path) -> tokio::task::JoinHandle<()> {
        let listener = UnixListener::bind(socket).expect("bind kubelet.sock");
        let service = RegistrationServer::new(self.clone());
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(UnixListenerStream::new(listener))
                .await;
        })
    }

    pub fn registrations(&self) -> Vec<RegisterRequest> {
        self.seen.lock().expect("lock").clone()
    }

    /// Waits until `n` registrations arrived (5 s at most).
    pub async fn wait_for(&self, n: usize) -> Vec<RegisterRequest> {
        for _ in 0..250 {
            let seen = self.registrations();
            if seen.len() >= n {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "expected {n} registration(s) within 5 s, saw {}",
            self.registrations().len()
        );
    }
}
