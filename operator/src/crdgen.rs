//! Renders the CustomResourceDefinitions from the Rust types, for `crds/` and for the chart.

use crate::crd::{AgentPool, VirtualCluster};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub fn definitions() -> Vec<CustomResourceDefinition> {
    vec![VirtualCluster::crd(), AgentPool::crd()]
}

/// One YAML document per CRD, as `kubectl apply -f` takes them.
pub fn render_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for definition in definitions() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&definition)?);
    }
    Ok(out)
}
