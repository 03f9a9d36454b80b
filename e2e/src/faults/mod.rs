//! Reusable faults for the fault-injection tier (e2e/tests/faults.rs), each a small piece with one
//! job: a TCP link a test can cut and heal, an S3 proxy that fails, slows, hangs or loses answers,
//! etcd as a cluster whose leader and quorum a test can take away, a skewed clock for one process,
//! and the load whose acknowledgements the history checker (`crate::history`) verifies.

pub mod clock;
pub mod etcd_cluster;
pub mod load;
pub mod s3_proxy;
pub mod tcp_proxy;

pub use etcd_cluster::EtcdCluster;
pub use s3_proxy::{S3Fault, S3FaultProxy};
pub use tcp_proxy::TcpProxy;
