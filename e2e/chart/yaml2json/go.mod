// YAML to JSON lines for e2e/chart/check.sh (built into the cache on first use).
module floe.local/e2e/chart/yaml2json

go 1.22

require sigs.k8s.io/yaml v1.6.0

require go.yaml.in/yaml/v2 v2.4.4 // indirect
