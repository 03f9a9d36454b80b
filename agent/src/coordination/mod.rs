//! Who runs a virtual cluster's background jobs, and how that leader's writes outside the journal
//! are fenced, behind one interface ([`Leadership`]) with two implementations:
//!
//! - [`etcd`]: one agent with the `jobs` role at a time holds `jobs/leader` (create-only, on its
//!   lease); every etcd write it makes is fenced by that key's create revision, so a deposed
//!   leader cannot trim what the new one relies on; its [`LeaseClock`] says until when the lease
//!   is certainly alive, measured from the last renewal it *sent*, never from when it noticed a
//!   failure, so destructive work stops in time whatever the clocks say.
//! - [`Sole`]: embedded metadata, whose journal file this process alone may write (it is
//!   locked): no one to elect, nothing to fence, no history to trim.
//!
//! The journal itself is the other coordination point (`metadata::journal::JournalBackend`, etcd
//! or embedded), and the agent registry the third (`cluster::ClusterView`); jobs reach etcd only
//! through this module ([`etcd_status`] reads the database size the leader exports).

pub mod etcd;
pub mod etcd_status;
mod lease;

pub use lease::LeaseClock;

use crate::metadata::snapshot::SnapshotPointer;
use futures::future::BoxFuture;

/// What the jobs leader may do beyond appending to the journal, fenced by its leadership.
pub trait Leadership: Send + Sync {
    /// Until when this leadership is certainly held (destructive work checks it first).
    fn lease(&self) -> &LeaseClock;
    /// Whether the journal keeps a history that snapshots let it trim (etcd), or none (embedded).
    fn trims_journal(&self) -> bool;
    /// The snapshot the journal's readers start from, if one was published.
    fn latest_snapshot(&self) -> BoxFuture<'_, Result<Option<SnapshotPointer>, String>>;
    /// Makes `pointer` the snapshot readers start from; fails once the leadership is lost.
    fn publish_snapshot<'a>(&'a self, pointer: &'a SnapshotPointer) -> BoxFuture<'a, Result<(), String>>;
    /// Deletes the journal records at or below `revision` (a published snapshot covers them) and
    /// the history behind them; returns how many records went. Stops once the leadership is lost.
    fn trim_journal(&self, revision: u64) -> BoxFuture<'_, Result<usize, String>>;
}

/// The embedded journal's only writer: never deposed, and no history to trim.
pub struct Sole {
    lease: LeaseClock,
}

impl Sole {
    pub fn new() -> Self {
        Self { lease: LeaseClock::unbounded() }
    }
}

impl Default for Sole {
    fn default() -> Self {
        Self::new()
    }
}

impl Leadership for Sole {
    fn lease(&self) -> &LeaseClock {
        &self.lease
    }

    fn trims_journal(&self) -> bool {
        false
    }

    fn latest_snapshot(&self) -> BoxFuture<'_, Result<Option<SnapshotPointer>, String>> {
        Box::pin(async { Ok(None) })
    }

    fn publish_snapshot<'a>(&'a self, _pointer: &'a SnapshotPointer) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Err("snapshots trim an etcd journal; this journal is embedded".to_string()) })
    }

    fn trim_journal(&self, _revision: u64) -> BoxFuture<'_, Result<usize, String>> {
        Box::pin(async { Err("an embedded journal has no history to trim".to_string()) })
    }
}
