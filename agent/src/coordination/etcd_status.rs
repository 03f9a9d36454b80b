//! etcd's own state as the jobs leader reports it in metrics: the database size against its
//! quota. Read-only (one `Status` call), so it needs no fencing.

use etcd_client::Client;

/// The etcd member the client talks to; its database size is every member's, give or take the
/// compaction each one has done.
#[derive(Clone)]
pub struct EtcdStatus {
    client: Client,
}

/// An etcd member's database file size and quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseSize {
    pub bytes: u64,
    /// `None` when the member does not report it (before etcd 3.6).
    pub quota_bytes: Option<u64>,
}

impl EtcdStatus {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    pub async fn database_size(&self) -> Result<DatabaseSize, etcd_client::Error> {
        let status = self.client.clone().status().await?;
        Ok(DatabaseSize {
            bytes: status.db_size().max(0) as u64,
            quota_bytes: (status.db_size_quota() > 0).then_some(status.db_size_quota() as u64),
        })
    }
}
