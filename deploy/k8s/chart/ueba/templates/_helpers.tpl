{{/* The four services, in the order every template renders them. */}}
{{- define "ueba.services" -}}ingest profiles scorer query{{- end }}

{{- define "ueba.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ueba.fullname" -}}
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

{{/* Name of one component's objects; call with (dict "root" $ "name" "ingest"). */}}
{{- define "ueba.componentName" -}}
{{- printf "%s-%s" (include "ueba.fullname" .root) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ueba.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ueba.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "ueba.labels" -}}
{{ include "ueba.selectorLabels" . }}
app.kubernetes.io/part-of: ueba
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Labels every pod of the release carries: what the default-deny policy selects. */}}
{{- define "ueba.releaseSelector" -}}
app.kubernetes.io/name: {{ include "ueba.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* registry/repository:tag, the tag defaulting to image.tag, then appVersion. */}}
{{- define "ueba.image" -}}
{{- $tag := .image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion | toString }}
{{- $repository := .image.repository }}
{{- with .root.Values.image.registry }}
{{- $repository = printf "%s/%s" (trimSuffix "/" .) $repository }}
{{- end }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}

{{- define "ueba.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ueba.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret the services read DATABASE_URL from. */}}
{{- define "ueba.databaseSecretName" -}}
{{- .Values.database.existingSecret | default (printf "%s-database" (include "ueba.fullname" .)) }}
{{- end }}

{{/* Whether the chart makes the database Secret itself. */}}
{{- define "ueba.createsDatabaseSecret" -}}
{{- if and (not .Values.database.existingSecret) (or .Values.database.url .Values.postgresql.enabled) }}true{{ end }}
{{- end }}

{{- define "ueba.tlsSecretName" -}}
{{- .Values.tls.existingSecret | default (printf "%s-tls" (include "ueba.fullname" .)) }}
{{- end }}

{{- define "ueba.postgresqlName" -}}
{{- printf "%s-postgresql" (include "ueba.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* A probe on the gRPC port: native gRPC, or TCP when TLS is on (kubelet's gRPC probe is plaintext). */}}
{{- define "ueba.probe" -}}
{{- if .root.Values.tls.enabled -}}
tcpSocket:
  port: grpc
{{- else -}}
grpc:
  port: 50051
{{- end }}
{{ toYaml .probe }}
{{- end }}

{{/* Fails the render when a pod could be killed before it has drained. */}}
{{- define "ueba.checkGrace" -}}
{{- $needed := add .root.Values.config.drainSeconds .root.Values.config.preStopSleepSeconds }}
{{- if le (int .svc.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "%s.terminationGracePeriodSeconds (%v) must exceed config.preStopSleepSeconds + config.drainSeconds (%v)" .name .svc.terminationGracePeriodSeconds $needed) }}
{{- end }}
{{- end }}

{{/* The UEBA_* settings of one service: the shared config, then its own settings. */}}
{{- define "ueba.configData" -}}
UEBA_TENANT: {{ .root.Values.config.tenant | quote }}
UEBA_LOG_LEVEL: {{ .root.Values.config.logLevel | quote }}
UEBA_DRAIN_SECONDS: {{ .root.Values.config.drainSeconds | toString | quote }}
{{- range $key, $value := .svc.settings }}
{{ $key }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* Egress of every UEBA pod: Postgres, DNS, and the extra rules. */}}
{{- define "ueba.egressRules" }}
{{- $np := .Values.networkPolicy }}
- ports:
    - protocol: TCP
      port: {{ if .Values.postgresql.enabled }}5432{{ else }}{{ $np.databasePort }}{{ end }}
  {{- if .Values.postgresql.enabled }}
  to:
    - podSelector:
        matchLabels:
          {{- include "ueba.selectorLabels" (dict "root" . "name" "postgresql") | nindent 10 }}
  {{- else if $np.databaseTo }}
  to:
    {{- toYaml $np.databaseTo | nindent 4 }}
  {{- end }}
- ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
  {{- with $np.dnsTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- with $np.extraEgress }}
{{ toYaml . }}
{{- end }}
{{- end }}
