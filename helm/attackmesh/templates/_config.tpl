{{/*
The product configuration one service runs with (`attackmesh serve <svc> --config ...`), as a
YAML document: the shared sections, the service's listen address, and its section built from
`<service>.config` plus the paths, endpoints and listeners the chart owns. Credentials are never
written here: they arrive as files mounted from Secrets (`*_file` keys point at them), which
the services read again when Kubernetes updates them, so rotating a Secret needs no restart.
Call with (dict "root" $ "c" $component).
*/}}

{{- define "attackmesh.paths" -}}
config: /etc/attackmesh/config.yaml
data: /var/lib/attackmesh
tls: /etc/attackmesh/tls
internal: /etc/attackmesh/internal
tokens: /etc/attackmesh/tokens
rules: /etc/attackmesh/rules
sinks: /etc/attackmesh/sinks
push: /etc/attackmesh/push
credentials: /etc/attackmesh/credentials
{{- end }}

{{/* `HOST:PORT` for a listener, bracketing IPv6 hosts: (dict "host" "0.0.0.0" "port" 50051). */}}
{{- define "attackmesh.hostPort" -}}
{{- if contains ":" .host }}{{ printf "[%s]:%d" .host (int .port) }}{{ else }}{{ printf "%s:%d" .host (int .port) }}{{ end }}
{{- end }}

{{- define "attackmesh.config" -}}
{{- $root := .root }}
{{- $c := .c }}
{{- $V := $root.Values }}
{{- $v := index $V $c.key }}
{{- $p := include "attackmesh.paths" . | fromYaml }}
{{- $doc := dict }}
{{- $_ := set $doc "telemetry" (deepCopy $V.telemetry) }}
{{- $_ = set $doc "shutdown_grace" (printf "%ds" (int $V.shutdownGraceSeconds)) }}
{{- /* auth: inline digests, the internal token's digest file, and mounted token files */}}
{{- $files := list (printf "%s/%s" $p.internal $V.auth.internalToken.tokensFileKey) }}
{{- range $i, $s := $V.auth.tokenSecrets }}
{{- $files = append $files (printf "%s/%d/%s" $p.tokens $i $s.key) }}
{{- end }}
{{- $auth := dict "tokens" $V.auth.tokens "token_files" $files }}
{{- $_ = set $doc "auth" $auth }}
{{- if $V.tls.enabled }}
{{- $tls := dict "cert_file" (printf "%s/tls.crt" $p.tls) "key_file" (printf "%s/tls.key" $p.tls) "ca_file" (printf "%s/ca.crt" $p.tls) }}
{{- if $V.tls.mutual }}{{ $_ = set $tls "client_ca_file" (printf "%s/ca.crt" $p.tls) }}{{ end }}
{{- $_ = set $doc "tls" $tls }}
{{- end }}
{{- $listen := dict $c.section (include "attackmesh.hostPort" (dict "host" $V.listenHost "port" $v.port)) }}
{{- if $V.metrics.enabled }}
{{- $_ = set $listen "metrics" (include "attackmesh.hostPort" (dict "host" $V.listenHost "port" $V.metrics.port)) }}
{{- end }}
{{- $_ = set $doc "listen" $listen }}
{{- $s := deepCopy $v.config }}
{{- if eq $c.key "attribution" }}
{{- if $v.rules.configMap }}{{ $_ = set $s "rules_dir" $p.rules }}{{ end }}
{{- else if eq $c.key "enrichment" }}
{{- $_ = set $s "data_dir" $p.data }}
{{- if $v.falcoHttp.enabled }}
{{- $_ = set $s "http_listen" (include "attackmesh.hostPort" (dict "host" $V.listenHost "port" $v.falcoHttp.port)) }}
{{- end }}
{{- $token := printf "%s/%s" $p.internal $V.auth.internalToken.tokenKey }}
{{- range $up := list (list "attribution" "attribution") (list "export" "siemExport") }}
{{- $target := index $V (index $up 1) }}
{{- $name := printf "%s-%s-headless" (include "attackmesh.fullname" $root | trunc 40 | trimSuffix "-") (ternary "siem-export" "attribution" (eq (index $up 1) "siemExport")) }}
{{- $section := deepCopy (default dict (index $s (index $up 0))) }}
{{- $_ = set $section "endpoints" (list (printf "dns:///%s:%d" (include "attackmesh.fqdn" (dict "root" $root "name" $name)) (int $target.port))) }}
{{- $_ = set $section "token_file" $token }}
{{- $_ = set $s (index $up 0) $section }}
{{- end }}
{{- else if eq $c.key "siemExport" }}
{{- $_ = set $s "data_dir" $p.data }}
{{- if (dig "intel" "endpoints" list $s) }}
{{- $intel := deepCopy $s.intel }}
{{- $_ = set $intel "token_file" (printf "%s/%s" $p.internal $V.auth.internalToken.tokenKey) }}
{{- $_ = set $s "intel" $intel }}
{{- end }}
{{- with $v.credentials.elasticsearch }}
{{- if .existingSecret }}
{{- $section := deepCopy (default dict $s.elasticsearch) }}
{{- if .apiKeyKey }}{{ $_ = set $section "api_key_file" (printf "%s/elasticsearch/api-key" $p.credentials) }}{{ end }}
{{- if .passwordKey }}{{ $_ = set $section "password_file" (printf "%s/elasticsearch/password" $p.credentials) }}{{ end }}
{{- $_ = set $s "elasticsearch" $section }}
{{- end }}
{{- end }}
{{- if $v.credentials.splunkHec.existingSecret }}
{{- $section := deepCopy (default dict $s.splunk_hec) }}
{{- $_ = set $section "token_file" (printf "%s/splunk-hec/token" $p.credentials) }}
{{- $_ = set $s "splunk_hec" $section }}
{{- end }}
{{- if $V.correlation.enabled }}
{{- /* One endpoint per replica, by ordinal: the sink hashes entities over this list. */}}
{{- $full := printf "%s-correlation" (include "attackmesh.fullname" $root | trunc 40 | trimSuffix "-") }}
{{- $headless := include "attackmesh.fqdn" (dict "root" $root "name" (printf "%s-headless" $full)) }}
{{- $endpoints := list }}
{{- range $i := until (int $V.correlation.replicaCount) }}
{{- $endpoints = append $endpoints (printf "http://%s-%d.%s:%d" $full $i $headless (int $V.correlation.port)) }}
{{- end }}
{{- $link := deepCopy (default dict $s.correlation) }}
{{- $_ = set $link "endpoints" $endpoints }}
{{- $_ = set $link "token_file" (printf "%s/%s" $p.internal $V.auth.internalToken.tokenKey) }}
{{- $_ = set $s "correlation" $link }}
{{- end }}
{{- range $sink := list (list "elasticsearch" "elasticsearch") (list "splunk_hec" "splunkHec") }}
{{- $ca := index $v.sinkCA (index $sink 1) }}
{{- if $ca.secretName }}
{{- $section := deepCopy (default dict (index $s (index $sink 0))) }}
{{- $_ = set $section "ca_file" (printf "%s/%s/%s" $p.sinks (index $sink 1) $ca.key) }}
{{- $_ = set $s (index $sink 0) $section }}
{{- end }}
{{- end }}
{{- else if eq $c.key "correlation" }}
{{- $_ = set $s "data_dir" $p.data }}
{{- $name := printf "%s-enrichment-headless" (include "attackmesh.fullname" $root | trunc 40 | trimSuffix "-") }}
{{- $link := deepCopy (default dict $s.enrichment) }}
{{- $_ = set $link "endpoints" (list (printf "dns:///%s:%d" (include "attackmesh.fqdn" (dict "root" $root "name" $name)) (int $V.enrichment.port))) }}
{{- $_ = set $link "token_file" (printf "%s/%s" $p.internal $V.auth.internalToken.tokenKey) }}
{{- $_ = set $s "enrichment" $link }}
{{- /* Campaign alerts go straight to siem-export (they are not detections to attribute again). */}}
{{- $name = printf "%s-siem-export-headless" (include "attackmesh.fullname" $root | trunc 40 | trimSuffix "-") }}
{{- $export := deepCopy (default dict $s.export) }}
{{- $_ = set $export "endpoints" (list (printf "dns:///%s:%d" (include "attackmesh.fqdn" (dict "root" $root "name" $name)) (int $V.siemExport.port))) }}
{{- $_ = set $export "token_file" (printf "%s/%s" $p.internal $V.auth.internalToken.tokenKey) }}
{{- $_ = set $s "export" $export }}
{{- else if eq $c.key "intel" }}
{{- $_ = set $s "data_dir" $p.data }}
{{- $_ = set $s "http_listen" (include "attackmesh.hostPort" (dict "host" $V.listenHost "port" $v.taxii.port)) }}
{{- if $v.taxii.publicUrl }}
{{- $_ = set $s "public_url" $v.taxii.publicUrl }}
{{- end }}
{{- if $v.remoteAttribution.enabled }}
{{- $name := printf "%s-attribution-headless" (include "attackmesh.fullname" $root | trunc 40 | trimSuffix "-") }}
{{- $link := deepCopy (default dict $s.attribution) }}
{{- $_ = set $link "endpoints" (list (printf "dns:///%s:%d" (include "attackmesh.fqdn" (dict "root" $root "name" $name)) (int $V.attribution.port))) }}
{{- $_ = set $link "token_file" (printf "%s/%s" $p.internal $V.auth.internalToken.tokenKey) }}
{{- $_ = set $s "attribution" $link }}
{{- end }}
{{- $push := list }}
{{- range $t := $v.push }}
{{- $dir := printf "%s/%s" $p.push $t.name }}
{{- $e := dict "name" $t.name "url" $t.url }}
{{- range $k := list "collection" "interval" "batch" "timeout" }}
{{- if hasKey $t $k }}{{ $_ = set $e $k (index $t $k) }}{{ end }}
{{- end }}
{{- if $t.maxBackoff }}{{ $_ = set $e "max_backoff" $t.maxBackoff }}{{ end }}
{{- if $t.username }}
{{- $_ = set $e "username" $t.username }}
{{- $_ = set $e "password_file" (printf "%s/%s" $dir (default "password" $t.passwordKey)) }}
{{- else if $t.existingSecret }}
{{- $_ = set $e "token_file" (printf "%s/%s" $dir (default "token" $t.tokenKey)) }}
{{- end }}
{{- if and $t.existingSecret $t.caKey }}
{{- $_ = set $e "ca_file" (printf "%s/%s" $dir $t.caKey) }}
{{- end }}
{{- $push = append $push $e }}
{{- end }}
{{- if $push }}{{ $_ = set $s "push" $push }}{{ end }}
{{- end }}
{{- $_ = set $doc $c.section $s }}
{{- toYaml $doc }}
{{- end }}

{{/*
Environment variables from Secrets (never from values): the Elasticsearch user name and the
intel database URL. Sink credentials are mounted files instead ("attackmesh.volumes").
Call with (dict "root" $ "c" $component).
*/}}
{{- define "attackmesh.secretEnv" -}}
{{- $V := .root.Values }}
{{- $v := index $V .c.key }}
{{- if eq .c.key "siemExport" }}
{{- with $v.credentials.elasticsearch }}
{{- if and .existingSecret .usernameKey }}
- name: ATTACKMESH_SIEM_EXPORT__ELASTICSEARCH__USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .usernameKey }}
{{- end }}
{{- end }}
{{- else if eq .c.key "intel" }}
{{- if $v.database.existingSecret }}
- name: ATTACKMESH_INTEL__DB
  valueFrom:
    secretKeyRef:
      name: {{ $v.database.existingSecret }}
      key: {{ $v.database.key }}
{{- end }}
{{- end }}
{{- end }}
