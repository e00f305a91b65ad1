//! Keeping the device plugin registered with kubelet (node-side.md §2.1, interfaces.md §4.2).
//!
//! [`supervise`] serves the plugin on its socket, registers it with `kubelet.sock` once the
//! socket answers, and then watches both files: a kubelet restart wipes the plugin directory
//! and re-creates `kubelet.sock`, forgetting every registration, so when `kubelet.sock` is a
//! different file than the one we registered with, or our own socket is gone, the server is
//! restarted and registered again. HAMi watches the directory with inotify; we compare the
//! socket's identity (device, inode and change time) every `poll` (1 s by default), which needs no extra
//! dependency and sees the same events. A server that stops by itself is restarted too, at
//! most 5 times within an hour (as HAMi), then the error is returned.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::time::{Duration, Instant};

use crate::api::DevicePluginOptions;
use crate::plugin::{Plugin, PluginError, register_with_kubelet, unix_channel};
use crate::pods::PodSource;

/// The name of kubelet's registration socket in the plugin directory.
pub const KUBELET_SOCKET: &str = "kubelet.sock";

/// Where and what to register.
#[derive(Clone, Debug)]
pub struct KubeletLink {
    /// kubelet's device plugin directory.
    pub plugin_dir: PathBuf,
    /// Our socket's file name in that directory (the `endpoint` sent to kubelet).
    pub socket_name: String,
    /// The resource served, e.g. `nvidia.com/gpu`.
    pub resource: String,
    /// How often the sockets are checked.
    pub poll: Duration,
    /// How long to wait between failed registrations.
    pub retry: Duration,
}

impl KubeletLink {
    pub fn socket(&self) -> PathBuf {
        self.plugin_dir.join(&self.socket_name)
    }

    pub fn kubelet_socket(&self) -> PathBuf {
        self.plugin_dir.join(KUBELET_SOCKET)
    }
}

/// Which file a path is now, or `None` when it is absent. The inode alone is not enough: a
/// file system may give a re-created socket the inode of the removed one, so the creation's
/// change time (to the nanosecond) is part of the identity.
type FileId = (u64, u64, i64, i64);

fn identity(path: &Path) -> Option<FileId> {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino(), m.ctime(), m.ctime_nsec()))
}

/// Why a serving round ended.
#[derive(Debug)]
enum Restart {
    /// kubelet.sock was re-created: kubelet restarted.
    Kubelet,
    /// Our socket file disappeared.
    SocketGone,
    /// The server stopped by itself.
    Crashed(Option<PluginError>),
}

/// A device plugin service [`supervise`] can serve and register: HAMi's [`Plugin`], or one of
/// Volcano's counted resources ([`crate::plugin::counted::CountedPlugin`]).
pub trait Served: Clone + Send + 'static {
    /// The options sent with `Register`.
    fn options(&self) -> DevicePluginOptions;

    /// Serves on `socket` until `shutdown` resolves.
    fn serve_on(
        self,
        socket: PathBuf,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = Result<(), PluginError>> + Send;
}

impl<P: PodSource> Served for Plugin<P> {
    fn options(&self) -> DevicePluginOptions {
        Plugin::options(self)
    }

    async fn serve_on(
        self,
        socket: PathBuf,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), PluginError> {
        self.serve(&socket, shutdown).await
    }
}

/// Serves `plugin` and keeps it registered until `stop` resolves.
pub async fn supervise<S: Served>(
    plugin: S,
    link: KubeletLink,
    stop: impl Future<Output = ()>,
) -> Result<(), PluginError> {
    let mut stop = pin!(stop);
    let options = plugin.options();
    let socket = link.socket();
    let mut crashes: Vec<Instant> = Vec::new();
    loop {
        let (quit, quitted) = tokio::sync::oneshot::channel::<()>();
        let mut server = tokio::spawn({
            let plugin = plugin.clone();
            let socket = socket.clone();
            async move {
                plugin
                    .serve_on(socket, async {
                        let _ = quitted.await;
                    })
                    .await
            }
        });
        let restart = tokio::select! {
            () = &mut stop => {
                let _ = quit.send(());
                return finish(server).await;
            }
            restart = keep_registered(&link, &socket, options, &mut server) => restart,
        };
        let _ = quit.send(());
        match restart {
            Restart::Kubelet => {
                tracing::info!(socket = %link.kubelet_socket().display(), "kubelet restarted; registering again");
                let _ = finish(server).await;
            }
            Restart::SocketGone => {
                tracing::info!(socket = %socket.display(), "our socket was removed; serving again");
                let _ = finish(server).await;
            }
            Restart::Crashed(error) => {
                let now = Instant::now();
                crashes.retain(|t| now.duration_since(*t) < Duration::from_secs(3600));
                crashes.push(now);
                tracing::warn!(error = ?error, crashes = crashes.len(), "the device plugin server stopped");
                if crashes.len() > 5 {
                    return Err(error.unwrap_or_else(|| PluginError::Bind {
                        path: socket.clone(),
                        source: std::io::Error::other("the server stopped 6 times within an hour"),
                    }));
                }
                tokio::time::sleep(link.retry).await;
            }
        }
    }
}

/// Waits for a server task to end after its shutdown was signalled.
async fn finish(
    server: tokio::task::JoinHandle<Result<(), PluginError>>,
) -> Result<(), PluginError> {
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(result)) => result,
        // The task panicked or did not stop in time: nothing more to wait for.
        Ok(Err(_)) | Err(_) => Ok(()),
    }
}

/// Registers once our socket answers (retrying until kubelet accepts), then watches for what
/// makes a new round necessary.
async fn keep_registered(
    link: &KubeletLink,
    socket: &Path,
    options: DevicePluginOptions,
    server: &mut tokio::task::JoinHandle<Result<(), PluginError>>,
) -> Restart {
    let kubelet = link.kubelet_socket();
    let mut registered_with: Option<FileId> = None;
    let mut next_attempt = Instant::now();
    let mut serving = false;
    loop {
        if !serving {
            serving = unix_channel(socket).await.is_ok();
        }
        if serving && registered_with.is_none() && Instant::now() >= next_attempt {
            let before = identity(&kubelet);
            match register_with_kubelet(&kubelet, &link.socket_name, &link.resource, options).await
            {
                Ok(()) => {
                    tracing::info!(socket = %socket.display(), resource = %link.resource, "registered with kubelet");
                    registered_with = before.or_else(|| identity(&kubelet));
                }
                Err(error) => {
                    tracing::warn!(%error, "registration with kubelet failed; retrying");
                    next_attempt = Instant::now() + link.retry;
                }
            }
        }
        tokio::select! {
            result = &mut *server => {
                return Restart::Crashed(result.ok().and_then(Result::err));
            }
            () = tokio::time::sleep(link.poll) => {}
        }
        if let Some(registered) = registered_with
            && identity(&kubelet) != Some(registered)
            && identity(&kubelet).is_some()
        {
            return Restart::Kubelet;
        }
        if serving && identity(socket).is_none() {
            return Restart::SocketGone;
        }
    }
}
