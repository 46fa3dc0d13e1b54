{{/*
Names, labels and the few values derived from logjail's configuration. The configuration
(.Values.config) is the one source of truth for paths and ports: the mounts, the probes'
socket and the Service's port are read from it, so the two can never disagree.
*/}}

{{- define "logjail.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name, unless the release is already called after the chart. */}}
{{- define "logjail.fullname" -}}
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

{{- define "logjail.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* What selects the pods: stable across upgrades (a DaemonSet's selector is immutable). */}}
{{- define "logjail.selectorLabels" -}}
app.kubernetes.io/name: {{ include "logjail.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "logjail.labels" -}}
helm.sh/chart: {{ include "logjail.chart" . }}
{{ include "logjail.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: node-agent
app.kubernetes.io/part-of: logjail
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "logjail.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "logjail.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest pins it. */}}
{{- define "logjail.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* logjail's defaults where the configuration leaves a key out (see examples/logjail.yaml). */}}
{{- define "logjail.controlSocket" -}}
{{- dig "control" "socket" "/run/logjail/logjail.sock" .Values.config }}
{{- end }}

{{- define "logjail.metricsEnabled" -}}
{{- if dig "metrics" "enabled" true .Values.config }}true{{ end }}
{{- end }}

{{- define "logjail.metricsListen" -}}
{{- dig "metrics" "listen" "127.0.0.1:9191" .Values.config }}
{{- end }}

{{/* The port of metrics.listen (`IP:PORT` or `[IPv6]:PORT`). */}}
{{- define "logjail.metricsPort" -}}
{{- include "logjail.metricsListen" . | splitList ":" | last }}
{{- end }}

{{/* Whether the metrics Service is rendered; refuses a Service nobody could reach. */}}
{{- define "logjail.metricsService" -}}
{{- if and .Values.metrics.service.enabled (include "logjail.metricsEnabled" .) }}
{{- $listen := include "logjail.metricsListen" . }}
{{- if or (hasPrefix "127." $listen) (hasPrefix "[::1]" $listen) }}
{{- fail (printf "metrics.service.enabled is true but config.metrics.listen is %s, which only the node itself reaches: listen on 0.0.0.0:PORT (or the node's address), or set metrics.service.enabled=false" $listen) }}
{{- end }}true
{{- end }}
{{- end }}

{{/* Where the fleet's Secret is mounted, and its name. */}}
{{- define "logjail.fleetSecretDir" -}}/run/secrets/logjail-fleet{{- end }}

{{- define "logjail.fleetSecretName" -}}
{{- default (printf "%s-fleet" (include "logjail.fullname" .)) .Values.fleet.existingSecret }}
{{- end }}

{{/* The configuration's `fleet:` section, from .Values.fleet; the secrets are files. */}}
{{- define "logjail.fleetConfig" -}}
{{- $fleet := .Values.fleet }}
{{- $dir := include "logjail.fleetSecretDir" . }}
{{- $url := required "fleet.enabled needs fleet.redis.url (redis://HOST:6379, rediss://HOST:6380 or unix:///PATH)" $fleet.redis.url }}
{{- if and $fleet.redis.tls.privateCa (not (hasPrefix "rediss://" $url)) }}
{{- fail (printf "fleet.redis.tls.privateCa is for TLS, which needs fleet.redis.url to start with rediss:// (got %s)" $url) }}
{{- end }}
redis: {{ $url | quote }}
# The node's name (spec.nodeName), from the downward API.
name_env: NODE_NAME
{{- with $fleet.redis.username }}
username: {{ . | quote }}
{{- end }}
{{- if or $fleet.existingSecret $fleet.password }}
password_file: {{ $dir }}/password
{{- end }}
hmac_key_file: {{ $dir }}/hmac-key
share: {{ $fleet.share }}
{{- if $fleet.redis.tls.privateCa }}
tls:
  ca_file: {{ $dir }}/ca.crt
{{- end }}
{{- end }}

{{/* The configuration file's text; its checksum rolls the pods when it changes. */}}
{{- define "logjail.configFile" -}}
{{- $config := deepCopy .Values.config }}
{{- if .Values.fleet.enabled }}
{{- $_ := set $config "fleet" (include "logjail.fleetConfig" . | fromYaml) }}
{{- end }}
# logjail's configuration, rendered by the chart from .Values.config (and .Values.fleet).
# Check a change before applying it: logjail check -c FILE
{{ toYaml $config }}
{{- end }}
