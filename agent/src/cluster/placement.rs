//! Deterministic placement by rendezvous hashing: every agent computes the same answer from the
//! same live set, and when an agent joins or leaves only the keys it wins or loses move.

use super::NodeInfo;

/// FNV-1a, 64 bit: stable across builds and platforms (unlike std's `DefaultHasher`).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf29ce484222325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x100000001b3);
        }
        // Separator so ("ab","c") and ("a","bc") differ.
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x100000001b3);
    }
    // Final avalanche (splitmix64) so nearby node ids spread well.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58476d1ce4e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d049bb133111eb);
    hash ^ (hash >> 31)
}

fn winner<'a>(candidates: impl Iterator<Item = &'a NodeInfo>, key: &[&[u8]]) -> Option<&'a NodeInfo> {
    candidates.max_by_key(|node| {
        let id = node.node_id.to_be_bytes();
        let mut parts: Vec<&[u8]> = key.to_vec();
        parts.push(&id);
        (fnv1a(&parts), node.node_id)
    })
}

/// Whether an agent is in `zone`: a client's leaders are its zone's agents when there are any.
fn in_zone(node: &NodeInfo, zone: &str) -> bool {
    node.rack.as_deref() == Some(zone)
}

/// The agent advertised as leader of a partition: rendezvous over the agents in the client's zone
/// when there are any, else over all.
pub fn partition_leader<'a>(nodes: &'a [NodeInfo], topic: &str, partition: i32, client_zone: Option<&str>) -> Option<&'a NodeInfo> {
    let partition = partition.to_be_bytes();
    let key: [&[u8]; 3] = [b"partition", topic.as_bytes(), &partition];
    client_zone.and_then(|zone| winner(nodes.iter().filter(|node| in_zone(node, zone)), &key)).or_else(|| winner(nodes.iter(), &key))
}

/// How many agents `partition_leader` spreads a client's partitions over: those of its zone
/// when there are any, else all.
pub fn leaders_for_client(nodes: &[NodeInfo], client_zone: Option<&str>) -> usize {
    match client_zone.map_or(0, |zone| nodes.iter().filter(|node| in_zone(node, zone)).count()) {
        0 => nodes.len(),
        zone_agents => zone_agents,
    }
}

/// The agent coordinating a consumer group (zone-independent: all clients must agree).
pub fn group_coordinator<'a>(nodes: &'a [NodeInfo], group_id: &str) -> Option<&'a NodeInfo> {
    winner(nodes.iter(), &[b"group", group_id.as_bytes()])
}

/// The zone hint a client puts in its client.id: `...floe_az=<zone>...`.
pub fn client_zone(client_id: &str) -> Option<&str> {
    let start = client_id.find("floe_az=")? + "floe_az=".len();
    let rest = &client_id[start..];
    let end =
        rest.find(|character: char| !(character.is_ascii_alphanumeric() || character == '-' || character == '_')).unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(node_id: i32, zone: &str) -> NodeInfo {
        NodeInfo { node_id, host: "127.0.0.1".into(), port: 9000 + node_id, rack: Some(zone.into()) }
    }

    #[test]
    fn leaders_spread_and_only_move_off_a_departed_agent() {
        let three = vec![node(1, "a"), node(2, "b"), node(3, "c")];
        let mut counts = [0usize; 4];
        for partition in 0..300 {
            counts[partition_leader(&three, "t", partition, None).unwrap().node_id as usize] += 1;
        }
        assert!(counts[1..].iter().all(|count| *count > 60), "uneven spread {counts:?}");
        let two = vec![node(1, "a"), node(3, "c")];
        for partition in 0..300 {
            let before = partition_leader(&three, "t", partition, None).unwrap().node_id;
            let after = partition_leader(&two, "t", partition, None).unwrap().node_id;
            if before != 2 {
                assert_eq!(before, after, "partition {partition} moved although its agent stayed");
            }
        }
    }

    #[test]
    fn a_zone_hint_keeps_leaders_in_the_clients_zone() {
        let nodes = vec![node(1, "a"), node(2, "b"), node(3, "b")];
        for partition in 0..50 {
            assert_eq!(partition_leader(&nodes, "t", partition, Some("a")).unwrap().node_id, 1);
            assert_ne!(partition_leader(&nodes, "t", partition, Some("b")).unwrap().node_id, 1);
        }
        assert_eq!(leaders_for_client(&nodes, Some("a")), 1);
        assert_eq!(leaders_for_client(&nodes, Some("b")), 2);
        assert_eq!(leaders_for_client(&nodes, Some("elsewhere")), 3, "a zone without agents is led by all");
        assert_eq!(leaders_for_client(&nodes, None), 3);
        assert_eq!(client_zone("app-1,floe_az=eu-west-1a"), Some("eu-west-1a"));
        assert_eq!(client_zone("plain"), None);
    }
}
