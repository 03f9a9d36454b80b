//! Text for people: condition messages and event notes are one short sentence. The wording of
//! causes lives in `floe_meta::messages`, shared with the agent's `floe diagnose`.

pub use floe_meta::messages::{plain_cause, shorten};
