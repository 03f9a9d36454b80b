//! Real agents for KWOK pods. KWOK marks an AgentPool's pods Running and Ready but runs nothing,
//! so this harness watches the pods of a pool and, for each one that is Running, starts a local
//! `floe agent` process configured exactly as the pod spec says (the ConfigMap, the env with its
//! field and Secret references) except that it listens on loopback ports. When the pod is deleted
//! the process gets SIGTERM, as the kubelet would send it, and the harness records how long it
//! took to exit. Scaling the Deployment therefore starts and stops real agents. Secret volumes are
//! projected and kept in sync as the kubelet does (`secret_volumes`), so a rotated certificate
//! reaches a running agent the way it would in a pod.

use crate::floe_binary;
use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a stopped agent ended.
#[derive(Debug, Clone)]
pub struct Exit {
    pub pod: String,
    pub code: Option<i32>,
    /// From SIGTERM to exit.
    pub drain: Duration,
    pub grace: Duration,
}

/// A running agent for one pod.
pub struct PodAgent {
    pub pod: String,
    /// The pod it runs for, to start it again if it exits on its own.
    spec: Pod,
    pub kafka_port: u16,
    pub http_port: u16,
    child: Child,
    /// Keeps the pod's Secret volumes in step with their Secrets, as the kubelet does.
    volume_sync: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct State {
    running: BTreeMap<String, PodAgent>,
    exits: Vec<Exit>,
    /// Pods seen terminating, so a late Running event never restarts them.
    stopped: std::collections::BTreeSet<String>,
}

pub struct PodAgents {
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
    log_directory: std::path::PathBuf,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl PodAgents {
    /// Starts watching the pods of `pool` in `namespace`.
    pub fn start(client: Client, namespace: &str, pool: &str, log_directory: &std::path::Path) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let task = tokio::spawn(watch(client, namespace.to_string(), pool.to_string(), Arc::clone(&state), log_directory.to_path_buf()));
        Self { state, task, log_directory: log_directory.to_path_buf() }
    }

    /// Kafka bootstrap addresses of the agents running now.
    pub fn bootstrap(&self) -> Vec<String> {
        self.lock().running.values().map(|agent| format!("127.0.0.1:{}", agent.kafka_port)).collect()
    }

    /// HTTP addresses (`/metrics`, `/healthz`) of the agents running now.
    pub fn http_addresses(&self) -> Vec<String> {
        self.lock().running.values().map(|agent| format!("127.0.0.1:{}", agent.http_port)).collect()
    }

    pub fn running(&self) -> usize {
        self.lock().running.len()
    }

    pub fn exits(&self) -> Vec<Exit> {
        self.lock().exits.clone()
    }

    pub fn log_directory(&self) -> &std::path::Path {
        &self.log_directory
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for PodAgents {
    fn drop(&mut self) {
        self.task.abort();
        let mut state = self.lock();
        for (_, mut agent) in std::mem::take(&mut state.running) {
            agent.volume_sync.abort();
            let _ = agent.child.kill();
            let _ = agent.child.wait();
        }
    }
}

async fn watch(client: Client, namespace: String, pool: String, state: Arc<Mutex<State>>, logs: std::path::PathBuf) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let selector = format!("app.kubernetes.io/instance={pool}");
    let mut events = watcher(pods, watcher::Config::default().labels(&selector)).boxed();
    let mut check_exits = tokio::time::interval(RESTART_BACKOFF);
    loop {
        let event = tokio::select! {
            event = events.next() => match event {
                Some(event) => event,
                None => break,
            },
            _ = check_exits.tick() => {
                restart_exited(&client, &namespace, &pool, &state, &logs).await;
                continue;
            }
        };
        let pods = match event {
            Ok(watcher::Event::Apply(pod)) | Ok(watcher::Event::InitApply(pod)) => vec![(pod, false)],
            Ok(watcher::Event::Delete(pod)) => vec![(pod, true)],
            Ok(_) => continue,
            Err(error) => {
                eprintln!("pod watch failed, retrying: {error}");
                continue;
            }
        };
        for (pod, deleted) in pods {
            let name = pod.name_any();
            let terminating = deleted || pod.metadata.deletion_timestamp.is_some();
            if terminating {
                let agent = {
                    let mut state = state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    state.stopped.insert(name.clone());
                    state.running.remove(&name)
                };
                if let Some(agent) = agent {
                    let grace =
                        Duration::from_secs(pod.spec.as_ref().and_then(|spec| spec.termination_grace_period_seconds).unwrap_or(30) as u64);
                    let state = Arc::clone(&state);
                    tokio::task::spawn_blocking(move || stop(agent, grace, &state));
                }
                continue;
            }
            let running = pod.status.as_ref().and_then(|status| status.phase.as_deref()) == Some("Running");
            let known = {
                let state = state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                state.running.contains_key(&name) || state.stopped.contains(&name)
            };
            if running && !known {
                match start(&client, &namespace, &pool, &pod, &logs).await {
                    Ok(agent) => {
                        state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).running.insert(name, agent);
                    }
                    Err(error) => eprintln!("failed to start an agent for pod {name}: {error:#}"),
                }
            }
        }
    }
}

/// How often exited agents are looked for, and so the least time before one is restarted.
const RESTART_BACKOFF: Duration = Duration::from_millis(500);

/// Starts again the agents whose process exited on its own, as the kubelet restarts a pod's
/// container (restartPolicy Always). Each agent's ports are picked free just before it binds them,
/// so another process can take one in between: that agent exits at start ("Address already in
/// use"), and what a pod would get then is a restart, not a pool one agent short.
async fn restart_exited(client: &Client, namespace: &str, pool: &str, state: &Mutex<State>, logs: &std::path::Path) {
    let exited: Vec<PodAgent> = {
        let mut state = state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let names: Vec<String> = state
            .running
            .iter_mut()
            .filter_map(|(name, agent)| matches!(agent.child.try_wait(), Ok(Some(_))).then(|| name.clone()))
            .collect();
        names.into_iter().filter_map(|name| state.running.remove(&name)).collect()
    };
    for mut agent in exited {
        agent.volume_sync.abort();
        let status = agent.child.wait().ok();
        eprintln!("the agent of pod {} exited on its own ({status:?}); starting it again, as the kubelet would", agent.pod);
        match start(client, namespace, pool, &agent.spec, logs).await {
            Ok(mut restarted) => {
                let mut state = state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if state.stopped.contains(&agent.pod) {
                    // The pod began terminating meanwhile.
                    restarted.volume_sync.abort();
                    let _ = restarted.child.kill();
                    let _ = restarted.child.wait();
                } else {
                    state.running.insert(agent.pod.clone(), restarted);
                }
            }
            Err(error) => eprintln!("failed to restart the agent of pod {}: {error:#}", agent.pod),
        }
    }
}

/// SIGTERM, then wait up to the grace period, then SIGKILL (as the kubelet does).
fn stop(mut agent: PodAgent, grace: Duration, state: &Mutex<State>) {
    agent.volume_sync.abort();
    let started = Instant::now();
    let _ = Command::new("kill").args(["-TERM", &agent.child.id().to_string()]).status();
    let code = loop {
        match agent.child.try_wait() {
            Ok(Some(status)) => break status.code(),
            Ok(None) if started.elapsed() < grace => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = agent.child.kill();
                break agent.child.wait().ok().and_then(|status| status.code());
            }
        }
    };
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).exits.push(Exit {
        pod: agent.pod,
        code,
        drain: started.elapsed(),
        grace,
    });
}

/// The emptyDir volumes `container` mounts (the scratch `/tmp` aside, which the agent never
/// names), each as (mount path, a new local directory under `root`).
fn empty_dirs(
    spec: &k8s_openapi::api::core::v1::PodSpec,
    container: &k8s_openapi::api::core::v1::Container,
    root: &std::path::Path,
) -> Result<Vec<(String, std::path::PathBuf)>> {
    let mut found = Vec::new();
    for mount in container.volume_mounts.iter().flatten().filter(|mount| mount.mount_path != "/tmp") {
        let Some(volume) = spec.volumes.iter().flatten().find(|volume| volume.name == mount.name) else { continue };
        if volume.empty_dir.is_some() {
            let local = root.join(&volume.name);
            std::fs::create_dir_all(&local).with_context(|| format!("creating {}", local.display()))?;
            found.push((mount.mount_path.clone(), local));
        }
    }
    Ok(found)
}

/// Starts `floe agent` with the pod's configuration: the ConfigMap behind `envFrom`, then `env`
/// with `fieldRef` and `secretKeyRef` resolved, then loopback listeners.
async fn start(client: &Client, namespace: &str, pool: &str, pod: &Pod, logs: &std::path::Path) -> Result<PodAgent> {
    let name = pod.name_any();
    let deployment = Api::<Deployment>::namespaced(client.clone(), namespace).get(pool).await?;
    let template = deployment.spec.and_then(|spec| spec.template.spec).context("Deployment without a pod template")?;
    let container = template.containers.first().context("pod template without containers")?.clone();
    let mut environment: BTreeMap<String, String> = BTreeMap::new();
    for source in container.env_from.iter().flatten() {
        if let Some(reference) = &source.config_map_ref {
            let map = Api::<ConfigMap>::namespaced(client.clone(), namespace).get(&reference.name).await?;
            environment.extend(map.data.unwrap_or_default());
        }
    }
    let kafka_port = free_port()?;
    let http_port = free_port()?;
    for variable in container.env.iter().flatten() {
        let value = if let Some(value) = &variable.value {
            value.replace("$(POD_IP)", "127.0.0.1")
        } else if let Some(from) = &variable.value_from {
            if let Some(field) = &from.field_ref {
                match field.field_path.as_str() {
                    "metadata.name" => name.clone(),
                    "status.podIP" => "127.0.0.1".to_string(),
                    other => anyhow::bail!("unsupported fieldRef {other}"),
                }
            } else if let Some(secret) = &from.secret_key_ref {
                let object = Api::<Secret>::namespaced(client.clone(), namespace).get(&secret.name).await?;
                let bytes = object.data.unwrap_or_default().get(&secret.key).map(|value| value.0.clone()).context("missing Secret key")?;
                String::from_utf8(bytes)?
            } else {
                continue;
            }
        } else {
            continue;
        };
        environment.insert(variable.name.clone(), value);
    }
    // An emptyDir (the disk cache's) is a fresh local directory per pod, as the kubelet gives
    // each pod its own; a value naming its mount path, or a path under it, is rewritten.
    for (mount_path, local) in empty_dirs(&template, &container, &logs.join(format!("{name}-volumes")))? {
        for value in environment.values_mut() {
            if let Some(rest) = value.strip_prefix(&mount_path).filter(|rest| rest.is_empty() || rest.starts_with('/')) {
                *value = format!("{}{rest}", local.display());
            }
        }
    }
    // Secret volumes are projected into a local directory per pod and kept in sync; paths into
    // them are rewritten.
    let volumes = crate::secret_volumes::of(&template, &container, &logs.join(format!("{name}-volumes")));
    crate::secret_volumes::project_all(client, namespace, &volumes).await?;
    for value in environment.values_mut() {
        *value = crate::secret_volumes::localize(value, &volumes);
    }
    let arguments: Vec<String> =
        container.args.clone().unwrap_or_default().iter().map(|argument| crate::secret_volumes::localize(argument, &volumes)).collect();
    // The pod's port is the same on every pod; locally each agent needs its own.
    environment.insert("FLOE_KAFKA_LISTEN".to_string(), format!("127.0.0.1:{kafka_port}"));
    environment.insert("FLOE_ADVERTISE".to_string(), format!("127.0.0.1:{kafka_port}"));
    environment.insert("FLOE_HTTP_LISTEN".to_string(), format!("127.0.0.1:{http_port}"));
    environment.entry("FLOE_LOG".to_string()).or_insert_with(|| std::env::var("FLOE_E2E_LOG").unwrap_or_else(|_| "warn".to_string()));
    // Appended: a restarted agent's log follows the one before it.
    let log = std::fs::OpenOptions::new().create(true).append(true).open(logs.join(format!("{name}.log")))?;
    let mut command = Command::new(floe_binary()?);
    command.args(arguments).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (key, value) in &environment {
        command.env(key, value);
    }
    let child = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log).spawn().context("failed to start floe agent")?;
    let volume_sync = tokio::spawn(crate::secret_volumes::sync(client.clone(), namespace.to_string(), volumes));
    Ok(PodAgent { pod: name, spec: pod.clone(), kafka_port, http_port, child, volume_sync })
}
