//! The vendored protocol crate's decoders reserve memory by what a request really holds, never by
//! the counts it declares (third_party/kafka-protocol/FLOE-PATCH.md).

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::CreateTopicsRequest;
use kafka_protocol::protocol::types::{bounded_capacity, MAX_PREALLOCATION_BYTES};
use kafka_protocol::protocol::Decodable;

#[test]
fn preallocation_is_bounded_in_bytes_whatever_the_declared_count() {
    // A CreateTopics topic is 112 bytes in memory: 2^31 of them once meant an 11.7 GB reservation.
    struct Topic {
        _fields: [u8; 112],
    }
    assert_eq!(bounded_capacity::<Topic>(i32::MAX as usize, 100 << 20), MAX_PREALLOCATION_BYTES / 112);
    // Never more elements than bytes remain (each takes at least one).
    assert_eq!(bounded_capacity::<u8>(i32::MAX as usize, 10), 10);
    // An honest small count is reserved exactly.
    assert_eq!(bounded_capacity::<u64>(3, 1 << 20), 3);
}

#[test]
fn a_create_topics_body_declaring_two_billion_topics_is_an_error_not_an_abort() {
    // v2 body: topics array count, then zeros (each zero-filled topic decodes as 16 bytes) that
    // run out long before the declared count.
    let mut body = BytesMut::new();
    body.put_i32(i32::MAX);
    body.put_bytes(0, 1 << 20);
    let mut body = body.freeze();
    let decoded = CreateTopicsRequest::decode(&mut body, 2);
    assert!(decoded.is_err(), "a body shorter than its declared topics must not decode");
}
