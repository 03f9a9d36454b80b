//! Record storage on object stores: the segment format, the object store wrapper, the writer that
//! batches many partitions into one object per flush, and the reader with its cache.

pub mod cache;
pub mod disk_cache;
pub mod reader;
pub mod segment;
pub mod writer;

// Object names and the store behind a URL are shared with the operator (crate `floe-meta`). The
// agent's metrics observe every store operation (`metrics.rs` implements `StoreObserver`).
pub use cache::SegmentCache;
pub use disk_cache::DiskCache;
pub use floe_meta::bucket::{ObjectStoreUrl, S3Options, SegmentStore, StoreError, StoreObserver};
pub use floe_meta::layout;
pub use reader::SegmentReader;
pub use writer::{SegmentWriter, WriteError, WriterConfig};
