//! Lease-based leader election (coordination.k8s.io/v1), so several operator replicas can run
//! and exactly one reconciles. The holder renews every `renew_every`; another replica takes over
//! once `lease_duration` has passed without a renewal. Every write is a replace with the
//! resourceVersion read, so two candidates can never both win.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use std::time::Duration;

pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    pub lease_duration: Duration,
    pub renew_every: Duration,
}

impl LeaderElection {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(&self) {
        let mut announced = false;
        loop {
            match self.try_acquire().await {
                Ok(true) => {
                    tracing::info!(lease = self.name, identity = self.identity, "acquired the leader lease");
                    return;
                }
                Ok(false) if !announced => {
                    tracing::info!(lease = self.name, "another replica leads; standing by");
                    announced = true;
                }
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "leader election request failed"),
            }
            tokio::time::sleep(self.renew_every).await;
        }
    }

    /// Renews until a renewal fails for longer than the lease lasts; then returns, and the
    /// caller must stop reconciling (another replica may already lead).
    pub async fn hold(&self) {
        let mut last_renewal = std::time::Instant::now();
        loop {
            tokio::time::sleep(self.renew_every).await;
            match self.try_acquire().await {
                Ok(true) => last_renewal = std::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = self.name, "lost the leader lease to another replica");
                    return;
                }
                Err(error) => tracing::warn!(%error, "failed to renew the leader lease"),
            }
            // Stop before another replica could take over: a lease unrenewed this long is up for grabs.
            if last_renewal.elapsed() + self.renew_every >= self.lease_duration {
                tracing::error!(lease = self.name, "could not renew the leader lease in time");
                return;
            }
        }
    }

    /// Gives the lease up so a standby takes over at once (on shutdown).
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() == Some(&self.identity) {
                spec.holder_identity = None;
                spec.renew_time = None;
                let _ = self.api.replace(&self.name, &PostParams::default(), &lease).await;
            }
        }
    }

    async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let duration_seconds = self.lease_duration.as_secs() as i32;
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration_seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(error) => Err(error),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().filter(|holder| !holder.is_empty());
        let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(renewed), Some(seconds)) => renewed.0 + SignedDuration::from_secs(i64::from(seconds)) < now,
            _ => true,
        };
        let ours = holder.as_deref() == Some(self.identity.as_str());
        if !ours && holder.is_some() && !expired {
            return Ok(false);
        }
        if !ours {
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.acquire_time = Some(MicroTime(now));
            spec.holder_identity = Some(self.identity.clone());
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(duration_seconds);
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            // Someone else wrote it between our read and write.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }
}
