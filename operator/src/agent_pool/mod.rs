//! The AgentPool controller.

pub mod build;
