{{/*
Names and labels of the monitoring objects (monitoring.* values): the Grafana dashboard
ConfigMap, the PrometheusRule and the PodMonitors.
*/}}

{{/* Labels of the monitoring objects. */}}
{{- define "floe.monitoring.labels" -}}
{{ include "floe.labels" . }}
app.kubernetes.io/component: monitoring
{{- end }}

{{/* Selector labels of the agent pods, as the operator sets them (operator/src/labels.rs). */}}
{{- define "floe.monitoring.agentSelectorLabels" -}}
app.kubernetes.io/name: floe-agent
app.kubernetes.io/component: agent
app.kubernetes.io/managed-by: floe-operator
{{- end }}

{{/*
Labels every alert carries: its severity and monitoring.prometheusRule.additionalAlertLabels (the
alert's own severity wins over a `severity` there).
*/}}
{{- define "floe.monitoring.alertLabels" -}}
{{- $root := index . 0 }}
{{- $alert := index . 1 }}
{{- $labels := merge (dict "severity" $alert.severity) $root.Values.monitoring.prometheusRule.additionalAlertLabels }}
{{- toYaml $labels }}
{{- end }}
