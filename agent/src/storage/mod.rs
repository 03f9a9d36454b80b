//! Record storage on object stores: the segment format, the object store wrapper, the writer that
//! batches many partitions into one object per flush, and the reader with its cache.

pub mod cache;
pub mod layout;
pub mod object_store;
pub mod reader;
pub mod segment;
pub mod writer;

pub use self::object_store::{ObjectStoreUrl, S3Options, SegmentStore, StoreError};
pub use cache::SegmentCache;
pub use reader::SegmentReader;
pub use writer::{SegmentWriter, WriteError, WriterConfig};
