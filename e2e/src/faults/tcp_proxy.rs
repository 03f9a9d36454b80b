//! A TCP proxy that a test can cut and heal: the network partition between one agent and etcd, or
//! between one agent and the bucket.
//!
//! It forwards bytes both ways without reading them. [`TcpProxy::cut`] aborts every open
//! connection (a reset, as when a route disappears) and refuses new ones until
//! [`TcpProxy::heal`]; clients then reconnect by themselves. It runs on its own thread and runtime,
//! so sync and async tests can both use it, and listens on 127.0.0.1 only.

use anyhow::{Context, Result};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Default)]
pub struct TcpProxyStats {
    pub connections: AtomicU64,
    /// Open connections aborted by cuts.
    pub aborted: AtomicU64,
    /// Connections refused while cut.
    pub refused: AtomicU64,
}

pub struct TcpProxy {
    /// `127.0.0.1:<port>` clients connect to.
    pub address: String,
    cut: Arc<AtomicBool>,
    /// Bumped by every cut: each connection ends when it changes.
    generation: watch::Sender<u64>,
    pub stats: Arc<TcpProxyStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TcpProxy {
    /// Listens on an ephemeral loopback port and forwards every connection to `upstream`.
    pub fn start(upstream: &str) -> Result<Self> {
        let upstream = upstream.to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let stats = Arc::new(TcpProxyStats::default());
        let (address_sender, address_receiver) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (accept_cut, accept_generation, accept_stats) = (Arc::clone(&cut), generation.clone(), Arc::clone(&stats));
        let thread = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = address_sender.send(Err(anyhow::Error::from(error)));
                    return;
                }
            };
            runtime.block_on(async move {
                let listener = match TcpListener::bind("127.0.0.1:0").await.and_then(|listener| Ok((listener.local_addr()?, listener))) {
                    Ok((address, listener)) => {
                        let _ = address_sender.send(Ok(address.to_string()));
                        listener
                    }
                    Err(error) => {
                        let _ = address_sender.send(Err(anyhow::Error::from(error).context("failed to bind the TCP proxy")));
                        return;
                    }
                };
                let accept = async {
                    while let Ok((client, _)) = listener.accept().await {
                        if accept_cut.load(Ordering::Acquire) {
                            accept_stats.refused.fetch_add(1, Ordering::Relaxed);
                            abort(client);
                            continue;
                        }
                        accept_stats.connections.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(forward(client, upstream.clone(), accept_generation.subscribe(), Arc::clone(&accept_stats)));
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
        });
        let address = address_receiver.recv().context("the TCP proxy thread ended before binding")??;
        Ok(Self { address, cut, generation, stats, stop: Some(stop), thread: Some(thread) })
    }

    /// Aborts every open connection and refuses new ones until [`TcpProxy::heal`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        self.generation.send_modify(|generation| *generation += 1);
    }

    /// Accepts and forwards connections again.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::Release);
    }

    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }
}

impl Drop for TcpProxy {
    /// Stops accepting and closes every proxied connection (the runtime drops their tasks).
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Closes with a reset (SO_LINGER 0), as a vanished route or a dead peer's kernel would.
fn abort(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn forward(mut client: TcpStream, upstream: String, mut generation: watch::Receiver<u64>, stats: Arc<TcpProxyStats>) {
    generation.mark_unchanged();
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        abort(client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let was_cut = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
        _ = generation.changed() => true,
    };
    if was_cut {
        stats.aborted.fetch_add(1, Ordering::Relaxed);
        abort(client);
        abort(server);
    }
}
