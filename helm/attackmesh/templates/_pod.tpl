{{/*
Pieces of one service's pod: probes, volumes and mounts. Call with (dict "root" $ "c" $component)
unless stated otherwise.
*/}}

{{/*
One probe: (dict "root" $ "c" $component "kind" "startup|readiness|liveness").
Readiness asks for the service's own name, so a replica leaves the Services while it cannot
do its job (enrichment while siem-export is unreachable, siem-export while its queue disk is
full, intel while its database is down). Startup and liveness ask attribution's server as a
whole; the other three use a TCP check because their health deliberately follows what they
depend on, and a restart would not bring siem-export, disk space or the database back. With TLS on, the
listener speaks only TLS, which kubelet's gRPC probes cannot: `attackmesh health` runs inside
the container instead, with the pod's own certificate.
*/}}
{{- define "attackmesh.probe" -}}
{{- $V := .root.Values }}
{{- $v := index $V .c.key }}
{{- $t := index $v.probes .kind }}
{{- $service := ternary .c.grpc "" (eq .kind "readiness") }}
{{- if and (has .c.key (list "enrichment" "siemExport" "intel")) (ne .kind "readiness") }}
tcpSocket:
  port: {{ $v.port }}
{{- else if $V.tls.enabled }}
{{- $p := include "attackmesh.paths" . | fromYaml }}
exec:
  command:
    - /usr/local/bin/attackmesh
    - health
    - --addr
    - {{ printf "127.0.0.1:%d" (int $v.port) | quote }}
    - --service
    - {{ $service | quote }}
    - --tls-ca-file
    - {{ $p.tls }}/ca.crt
    - --tls-cert-file
    - {{ $p.tls }}/tls.crt
    - --tls-key-file
    - {{ $p.tls }}/tls.key
    - --tls-server-name
    - {{ include "attackmesh.fqdn" (dict "root" .root "name" .c.fullname) }}
    - --timeout
    - {{ printf "%ds" (int $t.timeoutSeconds) | quote }}
{{- else }}
grpc:
  port: {{ $v.port }}
  {{- if $service }}
  service: {{ $service }}
  {{- end }}
{{- end }}
{{- with $t.initialDelaySeconds }}
initialDelaySeconds: {{ . }}
{{- end }}
periodSeconds: {{ $t.periodSeconds }}
timeoutSeconds: {{ $t.timeoutSeconds }}
failureThreshold: {{ $t.failureThreshold }}
successThreshold: 1
{{- end }}

{{/* Volume mounts of the service container. */}}
{{- define "attackmesh.volumeMounts" -}}
{{- $V := .root.Values }}
{{- $v := index $V .c.key }}
{{- $p := include "attackmesh.paths" . | fromYaml }}
- name: config
  mountPath: {{ $p.config }}
  subPath: config.yaml
  readOnly: true
- name: internal-token
  mountPath: {{ $p.internal }}
  readOnly: true
{{- range $i, $s := $V.auth.tokenSecrets }}
- name: {{ printf "tokens-%d" $i }}
  mountPath: {{ printf "%s/%d" $p.tokens $i }}
  readOnly: true
{{- end }}
{{- if $V.tls.enabled }}
- name: tls
  mountPath: {{ $p.tls }}
  readOnly: true
{{- end }}
- name: tmp
  mountPath: /tmp
{{- if ne .c.key "attribution" }}
- name: data
  mountPath: {{ $p.data }}
{{- end }}
{{- if and (eq .c.key "attribution") $v.rules.configMap }}
- name: rules
  mountPath: {{ $p.rules }}
  readOnly: true
{{- end }}
{{- if eq .c.key "siemExport" }}
{{- if or $v.credentials.elasticsearch.existingSecret $v.credentials.splunkHec.existingSecret }}
- name: sink-credentials
  mountPath: {{ $p.credentials }}
  readOnly: true
{{- end }}
{{- range $sink := list "elasticsearch" "splunkHec" }}
{{- if (index $v.sinkCA $sink).secretName }}
- name: {{ printf "ca-%s" ($sink | lower) }}
  mountPath: {{ printf "%s/%s" $p.sinks $sink }}
  readOnly: true
{{- end }}
{{- end }}
{{- end }}
{{- if eq .c.key "intel" }}
{{- range $t := $v.push }}
{{- if $t.existingSecret }}
- name: {{ printf "push-%s" $t.name | lower | replace "_" "-" | replace "." "-" | trunc 63 | trimSuffix "-" }}
  mountPath: {{ printf "%s/%s" $p.push $t.name }}
  readOnly: true
{{- end }}
{{- end }}
{{- end }}
{{- with $v.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod volumes (the `data` volume of a persistent StatefulSet comes from its claim template). */}}
{{- define "attackmesh.volumes" -}}
{{- $V := .root.Values }}
{{- $v := index $V .c.key }}
{{- $c := .c }}
- name: config
  configMap:
    name: {{ $c.fullname }}
- name: internal-token
  secret:
    secretName: {{ include "attackmesh.internalTokenSecret" .root }}
    defaultMode: 0440
    items:
      - key: {{ $V.auth.internalToken.tokensFileKey }}
        path: {{ $V.auth.internalToken.tokensFileKey }}
      {{- if or (eq $c.key "enrichment") (eq $c.key "correlation") (and (eq $c.key "intel") $v.remoteAttribution.enabled) (and (eq $c.key "siemExport") (or (dig "intel" "endpoints" list $v.config) $V.correlation.enabled)) }}
      - key: {{ $V.auth.internalToken.tokenKey }}
        path: {{ $V.auth.internalToken.tokenKey }}
      {{- end }}
{{- range $i, $s := $V.auth.tokenSecrets }}
- name: {{ printf "tokens-%d" $i }}
  secret:
    secretName: {{ $s.name }}
    defaultMode: 0440
    items:
      - key: {{ $s.key }}
        path: {{ $s.key }}
{{- end }}
{{- if $V.tls.enabled }}
- name: tls
  secret:
    secretName: {{ include "attackmesh.tlsSecret" (dict "root" .root "c" $c) }}
    defaultMode: 0440
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
      - key: ca.crt
        path: ca.crt
{{- end }}
- name: tmp
  emptyDir:
    sizeLimit: {{ $V.tmpSizeLimit }}
{{- if ne $c.key "attribution" }}
{{- if not (include "attackmesh.persistent" (dict "root" $.root "c" $c)) }}
- name: data
  emptyDir:
    sizeLimit: {{ $v.persistence.size }}
{{- end }}
{{- end }}
{{- if and (eq $c.key "attribution") $v.rules.configMap }}
- name: rules
  configMap:
    name: {{ $v.rules.configMap }}
{{- end }}
{{- if eq $c.key "siemExport" }}
{{- $es := $v.credentials.elasticsearch }}
{{- $hec := $v.credentials.splunkHec }}
{{- if or $es.existingSecret $hec.existingSecret }}
{{- /* One projected volume, no subPath: Kubernetes swaps the files in place when a Secret
changes, and siem-export reads them again without a restart. */}}
- name: sink-credentials
  projected:
    defaultMode: 0440
    sources:
      {{- if and $es.existingSecret (or $es.apiKeyKey $es.passwordKey) }}
      - secret:
          name: {{ $es.existingSecret }}
          items:
            {{- if $es.apiKeyKey }}
            - key: {{ $es.apiKeyKey }}
              path: elasticsearch/api-key
            {{- end }}
            {{- if $es.passwordKey }}
            - key: {{ $es.passwordKey }}
              path: elasticsearch/password
            {{- end }}
      {{- end }}
      {{- if $hec.existingSecret }}
      - secret:
          name: {{ $hec.existingSecret }}
          items:
            - key: {{ $hec.tokenKey }}
              path: splunk-hec/token
      {{- end }}
{{- end }}
{{- range $sink := list "elasticsearch" "splunkHec" }}
{{- $ca := index $v.sinkCA $sink }}
{{- if $ca.secretName }}
- name: {{ printf "ca-%s" ($sink | lower) }}
  secret:
    secretName: {{ $ca.secretName }}
    defaultMode: 0440
    items:
      - key: {{ $ca.key }}
        path: {{ $ca.key }}
{{- end }}
{{- end }}
{{- end }}
{{- if eq $c.key "intel" }}
{{- range $t := $v.push }}
{{- if $t.existingSecret }}
- name: {{ printf "push-%s" $t.name | lower | replace "_" "-" | replace "." "-" | trunc 63 | trimSuffix "-" }}
  secret:
    secretName: {{ $t.existingSecret }}
    defaultMode: 0444
{{- end }}
{{- end }}
{{- end }}
{{- with $v.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Whether the service keeps `data` on a PersistentVolumeClaim per replica. */}}
{{- define "attackmesh.persistent" -}}
{{- $v := index .root.Values .c.key }}
{{- if and .c.stateful (ne .c.key "attribution") $v.persistence.enabled }}true{{ end }}
{{- end }}

{{/* Seconds Kubernetes waits after SIGTERM: the app's drain, plus siem-export's sink drain, plus slack. */}}
{{- define "attackmesh.terminationGrace" -}}
{{- $V := .root.Values }}
{{- $extra := 0 }}
{{- if eq .c.key "siemExport" }}{{ $extra = int $V.siemExport.drainGraceSeconds }}{{ end }}
{{- add (int $V.shutdownGraceSeconds) $extra (int $V.terminationGraceSlackSeconds) }}
{{- end }}
