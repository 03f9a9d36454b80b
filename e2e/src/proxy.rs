//! A Kafka-aware TCP proxy that loses a fraction of produce responses, so clients retry batches
//! the agent already committed (the case idempotent producers exist for).
//!
//! It forwards bytes both ways and reads only frame boundaries and correlation ids: requests tell
//! it which correlation ids belong to Produce; when the answer to one of those is chosen to be
//! lost, the proxy closes both sides of the connection instead of delivering it, as a network
//! failure after the broker processed the request would. (Swallowing the answer and keeping the
//! connection open would only make the client wait for its request timeout before doing the same.)
//! The upstream address can be changed while it runs, so the agent behind it can be restarted.

use anyhow::{Context, Result};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

const PRODUCE_API_KEY: i16 = 0;

#[derive(Default)]
pub struct ProxyStats {
    /// Produce responses delivered to clients.
    pub produce_responses: AtomicU64,
    /// Produce responses lost on purpose (each closed its connection).
    pub dropped: AtomicU64,
    pub connections: AtomicU64,
}

pub struct DroppingProxy {
    pub address: String,
    upstream: Arc<Mutex<String>>,
    pub stats: Arc<ProxyStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DroppingProxy {
    /// Listens on 127.0.0.1 (an ephemeral port) and forwards to `upstream`, losing about
    /// `drop_percent` of every 100 produce responses (a deterministic pattern seeded by `seed`).
    /// Runs on its own thread and runtime, so sync and async tests can both use it.
    pub fn start(upstream: &str, drop_percent: u64, seed: u64) -> Result<Self> {
        let upstream = Arc::new(Mutex::new(upstream.to_string()));
        let stats = Arc::new(ProxyStats::default());
        let chooser = Arc::new(Chooser { state: Mutex::new(seed | 1), drop_percent });
        let (accept_upstream, accept_stats) = (Arc::clone(&upstream), Arc::clone(&stats));
        let (address_sender, address_receiver) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
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
                        let _ = address_sender.send(Err(anyhow::Error::from(error).context("failed to bind the proxy")));
                        return;
                    }
                };
                let accept = async {
                    while let Ok((client, _)) = listener.accept().await {
                        let target = accept_upstream.lock().expect("upstream lock").clone();
                        accept_stats.connections.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(serve(client, target, Arc::clone(&accept_stats), Arc::clone(&chooser)));
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
        });
        let address = address_receiver.recv().context("the proxy thread ended before binding")??;
        Ok(Self { address, upstream, stats, stop: Some(stop), thread: Some(thread) })
    }

    /// New connections go to `upstream` from now on.
    pub fn set_upstream(&self, upstream: &str) {
        *self.upstream.lock().expect("upstream lock") = upstream.to_string();
    }

    pub fn dropped(&self) -> u64 {
        self.stats.dropped.load(Ordering::Relaxed)
    }

    pub fn produce_responses(&self) -> u64 {
        self.stats.produce_responses.load(Ordering::Relaxed)
    }
}

impl Drop for DroppingProxy {
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

/// A small xorshift generator: reproducible drops without a dependency.
struct Chooser {
    state: Mutex<u64>,
    drop_percent: u64,
}

impl Chooser {
    fn lose_this_one(&self) -> bool {
        let mut state = self.state.lock().expect("chooser lock");
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state % 100 < self.drop_percent
    }
}

async fn serve(client: TcpStream, upstream: String, stats: Arc<ProxyStats>, chooser: Arc<Chooser>) {
    let Ok(server) = TcpStream::connect(&upstream).await else { return };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let produce_ids = Arc::new(Mutex::new(VecDeque::new()));
    let requests = forward_requests(client_read, server_write, Arc::clone(&produce_ids));
    let responses = forward_responses(server_read, client_write, produce_ids, stats, chooser);
    // Whichever direction ends first (a close, an error, a lost answer) ends the connection.
    tokio::select! {
        _ = requests => {}
        _ = responses => {}
    }
}

async fn read_frame(reader: &mut OwnedReadHalf) -> Option<Vec<u8>> {
    let mut size = [0u8; 4];
    reader.read_exact(&mut size).await.ok()?;
    let length = i32::from_be_bytes(size);
    if !(0..=256 * 1024 * 1024).contains(&length) {
        return None;
    }
    let mut frame = vec![0u8; 4 + length as usize];
    frame[..4].copy_from_slice(&size);
    reader.read_exact(&mut frame[4..]).await.ok()?;
    Some(frame)
}

async fn forward_requests(mut reader: OwnedReadHalf, mut writer: OwnedWriteHalf, produce_ids: Arc<Mutex<VecDeque<i32>>>) {
    while let Some(frame) = read_frame(&mut reader).await {
        // Request header: api_key i16, api_version i16, correlation_id i32.
        if frame.len() >= 12 && i16::from_be_bytes([frame[4], frame[5]]) == PRODUCE_API_KEY {
            let correlation_id = i32::from_be_bytes(frame[8..12].try_into().expect("4 bytes"));
            produce_ids.lock().expect("ids lock").push_back(correlation_id);
        }
        if writer.write_all(&frame).await.is_err() {
            return;
        }
    }
}

async fn forward_responses(
    mut reader: OwnedReadHalf,
    mut writer: OwnedWriteHalf,
    produce_ids: Arc<Mutex<VecDeque<i32>>>,
    stats: Arc<ProxyStats>,
    chooser: Arc<Chooser>,
) {
    while let Some(frame) = read_frame(&mut reader).await {
        if frame.len() >= 8 {
            let correlation_id = i32::from_be_bytes(frame[4..8].try_into().expect("4 bytes"));
            let is_produce = {
                let mut ids = produce_ids.lock().expect("ids lock");
                // acks=0 requests get no answer: skip ids older than this one.
                while ids.front().is_some_and(|id| *id != correlation_id && ids.contains(&correlation_id)) {
                    ids.pop_front();
                }
                if ids.front() == Some(&correlation_id) {
                    ids.pop_front();
                    true
                } else {
                    false
                }
            };
            if is_produce {
                if chooser.lose_this_one() {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                stats.produce_responses.fetch_add(1, Ordering::Relaxed);
            }
        }
        if writer.write_all(&frame).await.is_err() {
            return;
        }
    }
}
