{{/* The four services, in the order every template renders them. */}}
{{- define "ueba.services" -}}ingest profiles scorer query delivery{{- end }}

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

{{/* A native gRPC probe: on the gRPC port, or with TLS on the plaintext health-only port
(UEBA_HEALTH_LISTEN), since kubelet's gRPC probe cannot speak TLS. */}}
{{- define "ueba.probe" -}}
grpc:
  port: {{ ternary .root.Values.probes.healthPort 50051 .root.Values.tls.enabled }}
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
{{- if hasKey .svc "destinations" }}
UEBA_DELIVERY_DESTINATIONS: {{ toJson .svc.destinations | quote }}
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
  {{- else }}
  to:
    {{- toYaml $np.databaseTo | nindent 4 }}
  {{- end }}
- ports:
    {{- range $np.dnsPorts }}
    - protocol: UDP
      port: {{ . }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
  {{- with $np.dnsTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- with $np.extraEgress }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Postgres connections the release can hold at once: every service at its
     replica or autoscaler maximum plus the rollout's surge pod, each process
     with its pool and overflow (2 x UEBA_DB_POOL_SIZE) and, with tokens, the
     authenticator's (2 x 2); plus the migration Job's one. */}}
{{- define "ueba.connectionBudget" -}}
{{- $total := 1 }}
{{- range $name := splitList " " (include "ueba.services" $) }}
{{- $svc := index $.Values $name }}
{{- if $svc.enabled }}
{{- $pods := int $svc.replicas }}
{{- if and (hasKey $svc "autoscaling") $svc.autoscaling.enabled }}
{{- $pods = int $svc.autoscaling.maxReplicas }}
{{- end }}
{{- $pool := int (index $svc.settings "UEBA_DB_POOL_SIZE" | default "8") }}
{{- $processes := 1 }}
{{- if eq $name "query" }}
{{- $processes = int (index $svc.settings "UEBA_QUERY_WORKERS" | default "1") }}
{{- end }}
{{- $auth := ternary 4 0 (eq $.Values.config.auth "tokens") }}
{{- $total = add $total (mul (add $pods 1) $processes (add (mul 2 $pool) $auth)) }}
{{- end }}
{{- end }}
{{- $total }}
{{- end }}

{{/* The pod-level labels of one component: its own, then the operator's podLabels. */}}
{{- define "ueba.podLabels" -}}
{{ include "ueba.labels" . }}
{{- with .svc.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Scheduling of one service's pods: its affinity as given, else the
     chart's anti-affinity; spread constraints get the component's selector
     when they name none, so they fit any release name. */}}
{{- define "ueba.scheduling" -}}
{{- $selector := dict "matchLabels" (include "ueba.selectorLabels" . | fromYaml) }}
{{- if .svc.affinity }}
affinity:
  {{- toYaml .svc.affinity | nindent 2 }}
{{- else if eq .root.Values.podAntiAffinity "soft" }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            {{- toYaml $selector | nindent 12 }}
{{- else if eq .root.Values.podAntiAffinity "hard" }}
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          {{- toYaml $selector | nindent 10 }}
{{- end }}
{{- with .svc.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- range . }}
  - {{- toYaml (merge (dict) . (dict "labelSelector" $selector)) | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}

{{/* DATABASE_URL from the database Secret. */}}
{{- define "ueba.databaseEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "ueba.databaseSecretName" . }}
      key: {{ .Values.database.secretKey }}
{{- end }}

{{/* What the chart puts in Secrets from values: its hash rolls the pods when
     one changes (Secrets made outside the chart are restarted by hand). */}}
{{- define "ueba.secretValues" -}}
{{ .Values.database.url }}|{{ .Values.postgresql.auth.password }}|{{ .Values.tls.cert }}|{{ .Values.tls.key }}|{{ .Values.tls.ca }}
{{- end }}

{{/* The admin token Secret that `helm test` reads (made as the NOTES show). */}}
{{- define "ueba.adminTokenSecretName" -}}
{{- .Values.tests.tokenSecret | default (printf "%s-admin-token" (include "ueba.fullname" .)) }}
{{- end }}
