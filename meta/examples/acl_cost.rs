//! How long one ACL decision takes with many bindings (agent/DESIGN.md "Authorization").
//! `cargo run --release -p floe-meta --example acl_cost`
use floe_meta::acl::{authorize, AclBinding, Operation, PatternType, Permission, Requester, ResourceType};
use std::collections::BTreeSet;
use std::time::Instant;

fn main() {
    for count in [10usize, 1_000, 10_000] {
        let acls: BTreeSet<AclBinding> = (0..count)
            .map(|index| AclBinding {
                resource_type: ResourceType::Topic,
                pattern_type: if index % 2 == 0 { PatternType::Literal } else { PatternType::Prefixed },
                resource_name: format!("team-{index}-"),
                principal: format!("User:user-{}", index % 100),
                host: "*".into(),
                operation: Operation::Write,
                permission: Permission::Allow,
            })
            .collect();
        let who = Requester { principal: "User:user-7", host: "10.0.0.1" };
        let rounds = 2_000;
        let started = Instant::now();
        let mut allowed = 0;
        for round in 0..rounds {
            allowed += authorize(&acls, &who, Operation::Write, ResourceType::Topic, &format!("team-{}-orders", round % count)) as usize;
        }
        let each = started.elapsed() / rounds as u32;
        println!("{count} bindings: {each:?} per decision ({allowed} of {rounds} allowed)");
    }
}
