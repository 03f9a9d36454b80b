{{/*
Names, labels and the few derived settings every template shares. Templates only call these
helpers; no template computes a name or a label by itself, so renaming happens in one place.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "floe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The base name of every object. A release called "floe" (the documented install) gives "floe",
so the in-chart etcd Service is "floe-etcd", the endpoint the example VirtualCluster uses.
Truncated to 63 characters (the DNS label limit); names built from it with a suffix are truncated
again where they are built.
*/}}
{{- define "floe.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "name-version" for the helm.sh/chart label. */}}
{{- define "floe.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object the chart creates, CRDs included. */}}
{{- define "floe.labels" -}}
helm.sh/chart: {{ include "floe.chart" . }}
app.kubernetes.io/name: {{ include "floe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: floe
{{- end }}

{{/* Selector labels of the operator pods. Immutable once installed: never add to them. */}}
{{- define "floe.operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "floe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels of the operator's objects. */}}
{{- define "floe.operator.labels" -}}
{{ include "floe.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The operator's ServiceAccount: created, or the one named in values. */}}
{{- define "floe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "floe.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag of the operator image; the tag defaults to appVersion. */}}
{{- define "floe.operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* repository:tag of the default agent image handed to the operator (--agent-image). */}}
{{- define "floe.agent.image" -}}
{{- printf "%s:%s" .Values.agentImage.repository (default .Chart.AppVersion .Values.agentImage.tag) }}
{{- end }}

{{/*
"true" when the operator must elect a leader: asked for in values, or implied by more than one
replica (two reconcilers writing the same children would fight).
*/}}
{{- define "floe.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}true{{ else }}false{{ end }}
{{- end }}

{{/*
The only external metric the operator serves (ARCHITECTURE.md §8). It is also the RBAC resource
name under which the HPA controller reads it: the external metrics client requests
/apis/external.metrics.k8s.io/v1beta1/namespaces/<ns>/<metric name>, so the metric name is the
"resource" that kube-apiserver authorizes.
*/}}
{{- define "floe.metricsApi.metricName" -}}
floe_agent_network_bytes_per_second
{{- end }}

{{/* Name of the metrics API Service, also the subject of its serving certificate. */}}
{{- define "floe.metricsApi.serviceName" -}}
{{- printf "%s-metrics-api" (include "floe.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Secret holding the metrics API serving certificate (tls.crt, tls.key, ca.crt). */}}
{{- define "floe.metricsApi.tlsSecretName" -}}
{{- printf "%s-metrics-api-tls" (include "floe.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* DNS names the metrics API certificate must cover (kube-apiserver dials <svc>.<ns>.svc). */}}
{{- define "floe.metricsApi.dnsNames" -}}
{{- $service := include "floe.metricsApi.serviceName" . -}}
- {{ $service }}
- {{ printf "%s.%s" $service .Release.Namespace }}
- {{ printf "%s.%s.svc" $service .Release.Namespace }}
{{- end }}

{{/*
The metrics API serving certificate when Helm generates it (metricsApi.certManager.enabled=false),
as a dict of base64 strings {crt, key, ca}. An existing Secret from an earlier install is reused
(lookup), so `helm upgrade` does not rotate the certificate or change the APIService caBundle.
lookup returns nothing under `helm template` and client-side dry runs: those print a fresh
certificate every time, which is expected. Call once per render (see metrics-api/apiservice.yaml):
two calls would generate two different CAs.
*/}}
{{- define "floe.metricsApi.generatedTls" -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "floe.metricsApi.tlsSecretName" .) }}
{{- $data := dict }}
{{- if $secret }}{{ $data = default (dict) $secret.data }}{{ end }}
{{- if and (hasKey $data "tls.crt") (hasKey $data "tls.key") (hasKey $data "ca.crt") }}
crt: {{ index $data "tls.crt" }}
key: {{ index $data "tls.key" }}
ca: {{ index $data "ca.crt" }}
{{- else }}
{{- $days := int .Values.metricsApi.certificate.validityDays }}
{{- $service := include "floe.metricsApi.serviceName" . }}
{{- $ca := genCA (printf "%s-ca" $service) $days }}
{{- $cert := genSignedCert (printf "%s.%s.svc" $service .Release.Namespace) nil (include "floe.metricsApi.dnsNames" . | fromYamlArray) $days $ca }}
crt: {{ $cert.Cert | b64enc }}
key: {{ $cert.Key | b64enc }}
ca: {{ $ca.Cert | b64enc }}
{{- end }}
{{- end }}

{{/* Base name of the in-chart etcd: the client Service, the StatefulSet and the pods' prefix. */}}
{{- define "floe.etcd.fullname" -}}
{{- printf "%s-etcd" (include "floe.fullname" .) | trunc 52 | trimSuffix "-" }}
{{- end }}

{{/* Headless Service that gives each etcd member its stable DNS name. */}}
{{- define "floe.etcd.headlessServiceName" -}}
{{- printf "%s-headless" (include "floe.etcd.fullname" .) }}
{{- end }}

{{/* Selector labels of the etcd pods. */}}
{{- define "floe.etcd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "floe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: etcd
{{- end }}

{{/* Labels of the etcd objects. */}}
{{- define "floe.etcd.labels" -}}
{{ include "floe.labels" . }}
app.kubernetes.io/component: etcd
{{- end }}

{{/* Peer URL of etcd member number $index: http://<pod>.<headless>.<namespace>.svc:2380 */}}
{{/* http, or https when the in-chart etcd serves TLS (etcd.tls.enabled). */}}
{{- define "floe.etcd.scheme" -}}
{{- if .Values.etcd.tls.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{/* The Secret holding the in-chart etcd's client certificate (etcd.tls.enabled). */}}
{{- define "floe.etcd.clientSecretName" -}}
{{- printf "%s-client-tls" (include "floe.etcd.fullname" .) }}
{{- end }}

{{- define "floe.etcd.peerUrl" -}}
{{- $root := index . 0 }}
{{- $index := index . 1 }}
{{- printf "%s://%s-%d.%s.%s.svc:2380" (include "floe.etcd.scheme" $root) (include "floe.etcd.fullname" $root) $index (include "floe.etcd.headlessServiceName" $root) $root.Release.Namespace }}
{{- end }}

{{/*
--initial-cluster: every member as name=peer-url, the name being the pod name (which the
StatefulSet makes stable), for the 1 or 3 members of etcd.replicas.
*/}}
{{- define "floe.etcd.initialCluster" -}}
{{- $members := list }}
{{- range $index := until (int .Values.etcd.replicas) }}
{{- $members = append $members (printf "%s-%d=%s" (include "floe.etcd.fullname" $) $index (include "floe.etcd.peerUrl" (list $ $index))) }}
{{- end }}
{{- join "," $members }}
{{- end }}

{{/* The endpoint a VirtualCluster's spec.etcd.endpoints should name for the in-chart etcd. */}}
{{- define "floe.etcd.clientEndpoint" -}}
{{- printf "%s.%s.svc:2379" (include "floe.etcd.fullname" .) .Release.Namespace }}
{{- end }}
