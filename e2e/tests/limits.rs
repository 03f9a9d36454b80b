//! Issue 15: hostile probes against a real `floe agent`.
#[test]
fn placeholder() {}
