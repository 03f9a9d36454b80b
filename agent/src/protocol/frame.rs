//! Length-prefixed Kafka frames and the memory they may hold. The size prefix is checked before
//! any buffer is allocated, and the body buffer grows as bytes arrive (never reserved at the
//! declared size), each step counted against a global [`MemoryBudget`] (Kafka's
//! `queued.max.request.bytes`), so a client that declares 100 MiB and sends 4 bytes holds 4 bytes'
//! worth of buffer, not 100 MiB of address space.

use bytes::Bytes;
use prometheus::{IntCounter, IntGauge};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Notify;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame size {size} is negative or exceeds the limit of {limit} bytes (--max-request-bytes)")]
    TooLarge { size: i64, limit: usize },
    #[error("frame of {size} bytes is too short to hold a request header")]
    TooShort { size: usize },
    #[error("failed to read frame from the connection")]
    Io(#[from] std::io::Error),
}

/// The first buffer step of a frame body; each later step doubles what was received, up to the
/// declared size.
const FIRST_STEP: usize = 64 * 1024;

/// Frames up to this size are counted in the budget but never wait for it: heartbeats, commits,
/// fetch and metadata requests keep flowing while large frames (or clients that declare large
/// frames and stall) use the budget up. What they can hold is bounded by the connection count.
pub const SMALL_FRAME_BYTES: usize = 64 * 1024;

/// A global budget of bytes held by request frames (Kafka's `queued.max.request.bytes`).
///
/// # Guarantees
/// A connection grows its frame only while the bytes held by *other* frames are below the limit,
/// so the total stays below `limit + largest frame + one step`, and a single frame larger than the
/// limit still completes (no self-deadlock). Waiting never holds a lock.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    held: Mutex<usize>,
    released: Notify,
    held_gauge: Option<IntGauge>,
    waits: Option<IntCounter>,
}

/// Bytes counted against a [`MemoryBudget`]; given back when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self { limit, held: Mutex::new(0), released: Notify::new(), held_gauge: None, waits: None })
    }

    /// A budget that reports its held bytes and its waits.
    pub fn with_metrics(limit: usize, held_gauge: IntGauge, waits: IntCounter) -> Arc<Self> {
        Arc::new(Self { limit, held: Mutex::new(0), released: Notify::new(), held_gauge: Some(held_gauge), waits: Some(waits) })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held right now by every charge.
    pub fn held(&self) -> usize {
        *self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An empty charge to grow.
    pub fn charge(self: &Arc<Self>) -> Charge {
        Charge { budget: Arc::clone(self), bytes: 0 }
    }

    /// Waits until the bytes held by other charges are below the limit, then adds `bytes` to
    /// `charge`. Returns whether it had to wait.
    pub async fn grow(&self, charge: &mut Charge, bytes: usize) -> bool {
        let mut waited = false;
        loop {
            let notified = self.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if *held - charge.bytes < self.limit {
                    *held += bytes;
                    charge.bytes += bytes;
                    if let Some(gauge) = &self.held_gauge {
                        gauge.set(*held as i64);
                    }
                    return waited;
                }
            }
            if !waited {
                waited = true;
                if let Some(waits) = &self.waits {
                    waits.inc();
                }
            }
            notified.await;
        }
    }

    /// Adds `bytes` to `charge` without waiting (small frames).
    pub fn add(&self, charge: &mut Charge, bytes: usize) {
        let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *held += bytes;
        charge.bytes += bytes;
        if let Some(gauge) = &self.held_gauge {
            gauge.set(*held as i64);
        }
    }

    fn release(&self, bytes: usize) {
        {
            let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            *held -= bytes;
            if let Some(gauge) = &self.held_gauge {
                gauge.set(*held as i64);
            }
        }
        self.released.notify_waiters();
    }
}

impl Charge {
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.release(self.bytes);
        }
    }
}

/// A frame body and its charge: the owner behind the frame's `Bytes`, so the budget counts the
/// bytes exactly as long as any slice of the frame (a decoded field, a produced batch) lives.
struct ChargedBody {
    body: Vec<u8>,
    _charge: Charge,
}

impl AsRef<[u8]> for ChargedBody {
    fn as_ref(&self) -> &[u8] {
        &self.body
    }
}

/// Reads one frame. Returns `Ok(None)` on a clean end of stream between frames. `progress` is
/// called whenever bytes arrive (the connection's idle clock). The frame's charge on `budget` is
/// given back when the last slice of the returned `Bytes` is dropped.
///
/// # Guarantees
/// A size outside `[8, max]` is an error before any allocation, which the caller answers by
/// closing the connection. The body buffer never holds more than twice the bytes received (and
/// at most the declared size, at least [`FIRST_STEP`]); every step is charged to `budget` before
/// it is allocated.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_frame_bytes: usize,
    budget: &Arc<MemoryBudget>,
    progress: &(dyn Fn() + Sync),
) -> Result<Option<Bytes>, FrameError> {
    let mut size_prefix = [0u8; 4];
    match reader.read_exact(&mut size_prefix).await {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(FrameError::Io(error)),
    }
    progress();
    let size = i32::from_be_bytes(size_prefix);
    if size < 0 || size as usize > max_frame_bytes {
        return Err(FrameError::TooLarge { size: size as i64, limit: max_frame_bytes });
    }
    let size = size as usize;
    // api key (2) + api version (2) + correlation id (4) is the least any request header holds.
    if size < 8 {
        return Err(FrameError::TooShort { size });
    }
    let mut charge = budget.charge();
    // Read into the buffer's uninitialised capacity: zeroing it first would touch every request
    // byte once more for nothing (3.8% of the agent's CPU under produce load in a profile).
    let mut body: Vec<u8> = Vec::new();
    while body.len() < size {
        if body.len() == body.capacity() {
            let step = (size - body.len()).min(body.capacity().max(FIRST_STEP));
            if size <= SMALL_FRAME_BYTES {
                budget.add(&mut charge, step);
            } else {
                budget.grow(&mut charge, step).await;
            }
            body.reserve_exact(step);
        }
        let room = (body.capacity() - body.len()).min(size - body.len()) as u64;
        if (&mut *reader).take(room).read_buf(&mut body).await? == 0 {
            return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        progress();
    }
    Ok(Some(Bytes::from_owner(ChargedBody { body, _charge: charge })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn oversized_prefix_is_rejected_before_reading_the_body() {
        let mut input: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
        let error = read_frame(&mut input, 1024, &MemoryBudget::new(1 << 20), &|| {}).await.unwrap_err();
        assert!(matches!(error, FrameError::TooLarge { size: 2147483647, limit: 1024 }));
    }

    #[tokio::test]
    async fn negative_prefix_is_rejected() {
        let mut input: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(read_frame(&mut input, 1024, &MemoryBudget::new(1 << 20), &|| {}).await, Err(FrameError::TooLarge { .. })));
    }

    #[tokio::test]
    async fn clean_end_of_stream_yields_none() {
        let mut input: &[u8] = &[];
        assert!(read_frame(&mut input, 1024, &MemoryBudget::new(1 << 20), &|| {}).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_error() {
        let mut input: &[u8] = &[0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8];
        let error = read_frame(&mut input, 1024, &MemoryBudget::new(1 << 20), &|| {}).await.unwrap_err();
        assert!(matches!(error, FrameError::Io(ref io) if io.kind() == std::io::ErrorKind::UnexpectedEof), "{error}");
    }

    #[tokio::test]
    async fn a_frame_arriving_in_pieces_is_assembled_without_reading_past_it() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for piece in [&[0u8, 0, 0, 10, 1, 2][..], &[3, 4, 5], &[6, 7, 8, 9, 10, 0, 0, 0, 8], &[1, 1, 1, 1, 1, 1, 1, 1]] {
                client.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let first = read_frame(&mut server, 1024, &MemoryBudget::new(1 << 20), &|| {}).await.unwrap().unwrap();
        assert_eq!(&first[..], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        let second = read_frame(&mut server, 1024, &MemoryBudget::new(1 << 20), &|| {}).await.unwrap().unwrap();
        assert_eq!(&second[..], &[1; 8]);
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_whole_frame_is_returned() {
        let mut input: &[u8] = &[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 9];
        let frame = read_frame(&mut input, 1024, &MemoryBudget::new(1 << 20), &|| {}).await.unwrap().unwrap();
        assert_eq!(&frame[..], &[1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[tokio::test]
    async fn a_declared_size_is_not_reserved_before_its_bytes_arrive() {
        let budget = MemoryBudget::new(1 << 30);
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        use tokio::io::AsyncWriteExt;
        client.write_all(&(100i32 << 20).to_be_bytes()).await.unwrap();
        client.write_all(&[7u8; 10]).await.unwrap();
        let reading = {
            let budget = Arc::clone(&budget);
            tokio::spawn(
                async move { read_frame(&mut server, 200 << 20, &budget, &|| {}).await.map(|frame| frame.map(|frame| frame.len())) },
            )
        };
        while budget.held() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(budget.held(), FIRST_STEP, "only the first step is charged while 10 bytes have arrived");
        drop(client);
        assert!(reading.await.unwrap().is_err(), "a body cut short is an error");
        assert_eq!(budget.held(), 0, "a failed read gives its charge back");
    }

    #[tokio::test]
    async fn the_buffer_grows_with_the_bytes_received_and_the_charge_lasts_as_long_as_the_frame() {
        let budget = MemoryBudget::new(1 << 30);
        let size = 300_000usize;
        let mut input = (size as i32).to_be_bytes().to_vec();
        input.extend((0..size).map(|index| index as u8));
        let frame = read_frame(&mut &input[..], 1 << 20, &budget, &|| {}).await.unwrap().unwrap();
        assert_eq!(frame.len(), size);
        assert_eq!(&frame[..], &input[4..]);
        assert_eq!(budget.held(), size, "the steps add up to the declared size, never more");
        let field = frame.slice(10..11);
        drop(frame);
        assert_eq!(budget.held(), size, "a slice of the frame (a decoded field) still holds it");
        drop(field);
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test]
    async fn a_connection_waits_while_others_hold_the_budget_and_resumes_when_they_let_go() {
        let budget = MemoryBudget::new(100_000);
        let mut other = budget.charge();
        assert!(!budget.grow(&mut other, 150_000).await, "a lone frame larger than the budget is not stopped");
        let mut input = 100_000i32.to_be_bytes().to_vec();
        input.extend([1u8; 100_000]);
        let reading = {
            let budget = Arc::clone(&budget);
            tokio::spawn(async move { read_frame(&mut &input[..], 1 << 20, &budget, &|| {}).await.unwrap().unwrap().len() })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!reading.is_finished(), "the frame was read while the budget was used up");
        // A small frame (a heartbeat) is read meanwhile: it never waits for the budget.
        let mut heartbeat = 60i32.to_be_bytes().to_vec();
        heartbeat.extend([2u8; 60]);
        let small = read_frame(&mut &heartbeat[..], 1 << 20, &budget, &|| {}).await.unwrap().unwrap();
        assert_eq!(small.len(), 60);
        assert_eq!(budget.held(), 150_000 + 60, "the small frame is still counted");
        drop(small);
        drop(other);
        assert_eq!(reading.await.unwrap(), 100_000);
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test]
    async fn progress_is_reported_as_bytes_arrive() {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let mut input: &[u8] = &[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        read_frame(&mut input, 1024, &MemoryBudget::new(1 << 20), &|| {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
        .await
        .unwrap()
        .unwrap();
        assert!(calls.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    }
}
