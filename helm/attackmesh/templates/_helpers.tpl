{{/*
Names, labels and the per-service facts every template shares.
*/}}

{{- define "attackmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "attackmesh.fullname" -}}
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

{{- define "attackmesh.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "attackmesh.labels" -}}
helm.sh/chart: {{ include "attackmesh.chart" . }}
app.kubernetes.io/name: {{ include "attackmesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: attackmesh
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one service: (dict "root" $ "c" $component). */}}
{{- define "attackmesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "attackmesh.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .c.name }}
{{- end }}

{{/* All labels of one service's objects: (dict "root" $ "c" $component). */}}
{{- define "attackmesh.componentLabels" -}}
{{ include "attackmesh.labels" .root }}
app.kubernetes.io/component: {{ .c.name }}
{{- end }}

{{/*
The four services. `key` is the values key, `name` the Kubernetes name suffix and `serve`
argument, `section` the key of the service's section in the product configuration (also its
key under `listen`), `grpc` the name it reports SERVING under in gRPC health.
*/}}
{{- define "attackmesh.componentTable" -}}
- key: attribution
  name: attribution
  section: attribution
  grpc: attackmesh.v1.AttributionService
- key: enrichment
  name: enrichment
  section: enrichment
  grpc: attackmesh.v1.IngestService
- key: siemExport
  name: siem-export
  section: siem_export
  grpc: attackmesh.v1.ExportService
- key: intel
  name: intel
  section: intel
  grpc: attackmesh.v1.IntelService
- key: correlation
  name: correlation
  section: correlation
  grpc: attackmesh.v1.CorrelationService
{{- end }}

{{/*
The enabled services as a list of dicts: the table's facts plus `fullname`, `headless`, `kind`
and `stateful`. Read a service's values with `index $.Values .key` (not from this list: a YAML
round trip turns numbers into floats).
*/}}
{{- define "attackmesh.components" -}}
{{- $root := . }}
{{- $out := list }}
{{- range $c := (include "attackmesh.componentTable" . | fromYamlArray) }}
{{- $v := index $root.Values $c.key }}
{{- if $v.enabled }}
{{- $stateful := false }}
{{- if has $c.key (list "siemExport" "correlation") }}{{ $stateful = true }}{{ end }}
{{- if and (eq $c.key "enrichment") $v.persistence.enabled }}{{ $stateful = true }}{{ end }}
{{- if and (eq $c.key "intel") (not $v.database.existingSecret) }}{{ $stateful = true }}{{ end }}
{{- $full := printf "%s-%s" (include "attackmesh.fullname" $root | trunc 40 | trimSuffix "-") $c.name }}
{{- $c = merge $c (dict "fullname" $full "headless" (printf "%s-headless" $full) "stateful" $stateful "kind" (ternary "StatefulSet" "Deployment" $stateful)) }}
{{- $out = append $out $c }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* One service's facts by values key: (dict "root" $ "key" "attribution"). */}}
{{- define "attackmesh.component" -}}
{{- $found := dict }}
{{- range $c := (include "attackmesh.components" .root | fromYamlArray) }}
{{- if eq $c.key $.key }}{{ $found = $c }}{{ end }}
{{- end }}
{{- toYaml $found }}
{{- end }}

{{/* In-cluster DNS name of a Service: (dict "root" $ "name" "x"). */}}
{{- define "attackmesh.fqdn" -}}
{{- printf "%s.%s.svc.%s" .name .root.Release.Namespace .root.Values.clusterDomain }}
{{- end }}

{{- define "attackmesh.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "attackmesh.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "attackmesh.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Secret holding the internal service token (`token`) and its digest entry (`tokens.yaml`). */}}
{{- define "attackmesh.internalTokenSecret" -}}
{{- default (printf "%s-internal-token" (include "attackmesh.fullname" .)) .Values.auth.internalToken.existingSecret }}
{{- end }}

{{/* TLS Secret of one service: (dict "root" $ "c" $component). */}}
{{- define "attackmesh.tlsSecret" -}}
{{- if .root.Values.tls.existingSecret }}
{{- .root.Values.tls.existingSecret }}
{{- else }}
{{- printf "%s-tls" .c.fullname }}
{{- end }}
{{- end }}

{{/* Checks values combinations the schema cannot express; fails the render with a reason. */}}
{{- define "attackmesh.validate" -}}
{{- $v := .Values }}
{{- if and $v.tls.enabled (not $v.tls.existingSecret) (not $v.tls.certManager.enabled) }}
{{- fail "tls.enabled needs tls.existingSecret or tls.certManager.enabled" }}
{{- end }}
{{- if and $v.tls.certManager.enabled (not $v.tls.certManager.issuerRef.name) }}
{{- fail "tls.certManager.enabled needs tls.certManager.issuerRef.name" }}
{{- end }}
{{- if and (not $v.auth.internalToken.create) (not $v.auth.internalToken.existingSecret) }}
{{- fail "auth.internalToken: set create: true or name an existingSecret (enrichment must authenticate to attribution and siem-export)" }}
{{- end }}
{{- if and $v.intel.enabled (not $v.intel.database.existingSecret) (or (gt (int $v.intel.replicaCount) 1) $v.intel.autoscaling.enabled) }}
{{- fail "intel: several replicas need a shared PostgreSQL store (intel.database.existingSecret); with SQLite keep replicaCount 1 and autoscaling off" }}
{{- end }}
{{- if and $v.enrichment.enabled (not $v.attribution.enabled) }}
{{- fail "enrichment needs attribution.enabled" }}
{{- end }}
{{- if and $v.enrichment.enabled (not $v.siemExport.enabled) }}
{{- fail "enrichment needs siemExport.enabled" }}
{{- end }}
{{- if and $v.siemExport.enabled (dig "splunk_hec" "url" "" $v.siemExport.config) (not $v.siemExport.credentials.splunkHec.existingSecret) }}
{{- fail "siemExport.config.splunk_hec.url needs siemExport.credentials.splunkHec.existingSecret (the HEC token)" }}
{{- end }}
{{- if and $v.metrics.serviceMonitor.enabled (not $v.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled" }}
{{- end }}
{{- if and $v.correlation.enabled (not $v.siemExport.enabled) }}
{{- fail "correlation needs siemExport.enabled (its sink feeds the replicas)" }}
{{- end }}
{{- if and $v.correlation.enabled (not $v.enrichment.enabled) }}
{{- fail "correlation needs enrichment.enabled (findings go to its Ingest)" }}
{{- end }}
{{- if and $v.intel.ingress.enabled (not $v.intel.enabled) }}
{{- fail "intel.ingress.enabled needs intel.enabled" }}
{{- end }}
{{- end }}

{{/*
Policy-scanner (checkov) exceptions, as annotations with their reasons: (list "CKV_K8S_21" ...).
Each is a deliberate choice explained in the chart README.
*/}}
{{- define "attackmesh.policySkips" -}}
{{- $reasons := dict
  "CKV_K8S_21" "Objects go to the release namespace (helm --namespace); scanners render without one"
  "CKV_K8S_15" "Release tags are immutable and image.digest pins by digest; Always would make restarts depend on the registry"
  "CKV_K8S_43" "image.digest pins by digest; the default is the chart's appVersion tag because a chart cannot know a build's digest"
  "CKV2_K8S_6" "NetworkPolicies are opt-in (networkPolicy.enabled): their detector, sink and DNS peers are site-specific"
  "CKV_K8S_35" "The intel database URL and the Elasticsearch user name come from secretKeyRef variables, never from values; sink credentials are mounted files"
  "CKV_K8S_8" "A one-shot helm test pod that exits when its check is done; probes do not apply"
  "CKV_K8S_9" "A one-shot helm test pod that exits when its check is done; probes do not apply"
}}
{{- range $i, $id := . }}
checkov.io/skip{{ add1 $i }}: {{ printf "%s=%s" $id (index $reasons $id) | quote }}
{{- end }}
{{- end }}
