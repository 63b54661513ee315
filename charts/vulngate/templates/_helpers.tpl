{{/* Chart name. */}}
{{- define "vulngate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release name, plus the chart name unless the release name contains it. */}}
{{- define "vulngate.fullname" -}}
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

{{- define "vulngate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vulngate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vulngate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vulngate.labels" -}}
helm.sh/chart: {{ include "vulngate.chart" . }}
{{ include "vulngate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "vulngate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vulngate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "vulngate.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding tls.crt / tls.key (and ca.crt). */}}
{{- define "vulngate.tlsSecretName" -}}
{{- if eq .Values.tls.mode "existingSecret" }}
{{- required "tls.existingSecret.name is required with tls.mode=existingSecret" .Values.tls.existingSecret.name }}
{{- else }}
{{- printf "%s-tls" (include "vulngate.fullname" .) }}
{{- end }}
{{- end }}

{{/* DNS name of the webhook Service. */}}
{{- define "vulngate.serviceHost" -}}
{{- printf "%s.%s.svc" (include "vulngate.fullname" .) .Release.Namespace }}
{{- end }}

{{/* Name of the credentials Secret, empty when there is none. */}}
{{- define "vulngate.credentialsSecretName" -}}
{{- if .Values.credentials.existingSecret }}
{{- .Values.credentials.existingSecret }}
{{- else if or .Values.credentials.dockerConfigJson .Values.credentials.files }}
{{- printf "%s-credentials" (include "vulngate.fullname" .) }}
{{- end }}
{{- end }}

{{/* Per-review deadline in whole seconds, always below webhook.timeoutSeconds. */}}
{{- define "vulngate.deadlineSeconds" -}}
{{- $timeout := int .Values.webhook.timeoutSeconds }}
{{- if not (kindIs "invalid" .Values.webhook.deadlineSeconds) }}
{{- $d := int .Values.webhook.deadlineSeconds }}
{{- if or (lt $d 1) (gt $d (sub $timeout 1)) }}
{{- fail (printf "webhook.deadlineSeconds=%d must be between 1 and webhook.timeoutSeconds-1 (%d)" $d (sub $timeout 1)) }}
{{- end }}
{{- $d }}
{{- else if ge $timeout 3 }}
{{- sub $timeout 2 }}
{{- else }}
{{- sub $timeout 1 }}
{{- end }}
{{- end }}

{{/* The config's `tls`: the mounted serving certificate, and the client CA when one is named. */}}
{{- define "vulngate.tlsConfig" -}}
{{- $tls := dict "certFile" "/etc/vulngate/tls/tls.crt" "keyFile" "/etc/vulngate/tls/tls.key" }}
{{- if .Values.tls.clientCA.configMap }}
{{- $_ := set $tls "clientCAFile" (printf "/etc/vulngate/client-ca/%s" .Values.tls.clientCA.key) }}
{{- end }}
{{- toYaml $tls }}
{{- end }}

{{/* The vulngate config file. */}}
{{- define "vulngate.config" -}}
{{- $c := .Values.config }}
{{- $exempt := list "kube-system" .Release.Namespace }}
{{- range $c.policy.exemptNamespaces }}{{ $exempt = append $exempt . }}{{ end }}
{{- $defaults := omit $c.policy.defaults "graceDays" "maxScanAge" "controllerPods" }}
{{- if not (kindIs "invalid" $c.policy.defaults.graceDays) }}
{{- $_ := set $defaults "graceDays" $c.policy.defaults.graceDays }}
{{- end }}
{{- with $c.policy.defaults.maxScanAge }}
{{- $_ := set $defaults "maxScanAge" . }}
{{- end }}
{{- $_ := set $defaults "controllerPods" (include "vulngate.controllerPods" .) }}
{{- $policy := dict "defaults" $defaults "exemptNamespaces" ($exempt | uniq) "exemptImages" $c.policy.exemptImages }}
{{- if $c.policy.acceptedCvesFile }}
{{- $_ := set $policy "acceptedCvesFile" $c.policy.acceptedCvesFile }}
{{- else if .Values.acceptedCves }}
{{- $_ := set $policy "acceptedCvesFile" "/etc/vulngate/accepted-cves/accepted-cves.txt" }}
{{- end }}
{{- $resolution := dict "useImagePullSecrets" $c.resolution.useImagePullSecrets "platforms" $c.resolution.platforms }}
{{- if $c.resolution.dockerConfigFile }}
{{- $_ := set $resolution "dockerConfigFile" $c.resolution.dockerConfigFile }}
{{- else if .Values.credentials.dockerConfigJson }}
{{- $_ := set $resolution "dockerConfigFile" (printf "%s/.dockerconfigjson" .Values.credentials.mountPath) }}
{{- end }}
{{- $cfg := dict
  "listen" (include "vulngate.hostPort" (list .Values.bindAddress .Values.containerPorts.webhook))
  "opsListen" (include "vulngate.hostPort" (list .Values.bindAddress .Values.containerPorts.ops))
  "tls" (include "vulngate.tlsConfig" . | fromYaml)
  "deadline" (printf "%ss" (include "vulngate.deadlineSeconds" .))
  "policy" $policy
  "cache" (include "vulngate.cacheConfig" . | fromYaml)
  "registries" $c.registries
  "resolution" $resolution
  "log" $c.log
  "shutdown" $c.shutdown
  "connections" $c.connections
  "pinDigests" (dict "enabled" .Values.pinDigests.enabled)
}}
{{- if $c.namespacesFile }}
{{- $_ := set $cfg "namespacesFile" $c.namespacesFile }}
{{- end }}
{{- if .Values.audit.enabled }}
{{- $_ := set $cfg "audit" (dict "enabled" true "interval" .Values.audit.interval) }}
{{- end }}
{{- $_ := set $cfg "review" $c.review }}
{{- if .Values.cachePurge.enabled }}
{{- $_ := required "cachePurge.enabled needs cachePurge.existingSecret (a Secret holding the bearer token)" .Values.cachePurge.existingSecret }}
{{- $_ := set $cfg "ops" (dict "purge" (dict "enabled" true "tokenFile" (printf "/etc/vulngate/purge/%s" .Values.cachePurge.key))) }}
{{- end }}
{{- $cfg = mergeOverwrite $cfg (deepCopy .Values.configOverrides) }}
{{- toYaml $cfg }}
{{- end }}

{{/* config.cache, with the shared tier's block when sharedCache is on. */}}
{{- define "vulngate.cacheConfig" -}}
{{- $cache := deepCopy .Values.config.cache }}
{{- $s := .Values.sharedCache }}
{{- if $s.enabled }}
{{- $dir := "/etc/vulngate/shared-cache" }}
{{- $redis := dict "url" (required "sharedCache.url is needed when sharedCache.enabled" $s.url) "keyPrefix" $s.keyPrefix "timeout" $s.timeout }}
{{- with $s.usernameKey }}{{ $_ := set $redis "username" (dict "file" (printf "%s/%s" $dir .)) }}{{ end }}
{{- with $s.passwordKey }}{{ $_ := set $redis "password" (dict "file" (printf "%s/%s" $dir .)) }}{{ end }}
{{- with $s.caKey }}{{ $_ := set $redis "caFile" (printf "%s/%s" $dir .) }}{{ end }}
{{- $key := dict "id" $s.hmacKeyId "secret" (dict "file" (printf "%s/%s" $dir $s.hmacKeyKey)) }}
{{- $_ := set $cache "shared" (dict "redis" $redis "hmacKeys" (list $key) "lockWait" $s.lockWait "lockTtl" $s.lockTtl) }}
{{- end }}
{{- toYaml $cache }}
{{- end }}

{{/* "host:port", bracketing IPv6 hosts. */}}
{{- define "vulngate.hostPort" -}}
{{- $host := index . 0 }}
{{- if contains ":" $host }}
{{- printf "[%s]:%d" $host (int (index . 1)) }}
{{- else }}
{{- printf "%s:%d" $host (int (index . 1)) }}
{{- end }}
{{- end }}

{{/* namespaceSelector shared by the webhooks. */}}
{{- define "vulngate.namespaceSelector" -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
      {{- range (concat (list .Release.Namespace "kube-system") .Values.webhook.excludeNamespaces) | uniq }}
      - {{ . | quote }}
      {{- end }}
  - key: {{ .Values.webhook.ignoreLabel }}
    operator: NotIn
    values: ["true"]
  {{- with .Values.webhook.namespaceSelectorExpressions }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* Fields shared by the webhooks; takes (dict "root" $ "caBundle" "<base64 PEM or empty>"). */}}
{{/* What the validating and the pinning (mutating) webhooks share; `path`,
`failurePolicy` and `reviewVersions` default to the validating webhook's. */}}
{{- define "vulngate.webhookCommon" -}}
{{- $ := .root -}}
admissionReviewVersions: {{ .reviewVersions | default (list "v1") | toJson }}
sideEffects: None
failurePolicy: {{ .failurePolicy | default $.Values.webhook.failurePolicy }}
matchPolicy: Equivalent
timeoutSeconds: {{ $.Values.webhook.timeoutSeconds }}
clientConfig:
  service:
    name: {{ include "vulngate.fullname" $ }}
    namespace: {{ $.Release.Namespace }}
    path: {{ .path | default "/validate" }}
    port: {{ $.Values.service.port }}
  {{- with .caBundle }}
  caBundle: {{ . }}
  {{- end }}
namespaceSelector:
  {{- include "vulngate.namespaceSelector" $ | nindent 2 }}
{{- with $.Values.webhook.objectSelector }}
objectSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.webhook.matchConditions }}
matchConditions:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The rules of the workloads webhook: `resources` (workload resource names) grouped
by API group. */}}
{{- define "vulngate.workloadRules" -}}
{{- $groups := dict "deployments" "apps" "replicasets" "apps" "statefulsets" "apps" "daemonsets" "apps" "jobs" "batch" "cronjobs" "batch" "replicationcontrollers" "" }}
{{- $byGroup := dict "apps" list "batch" list "" list }}
{{- range .resources }}
{{- $g := index $groups . }}
{{- $_ := set $byGroup $g (append (index $byGroup $g) .) }}
{{- end }}
{{- range $g := list "apps" "batch" "" }}
{{- with index $byGroup $g }}
- apiGroups: [{{ $g | quote }}]
  apiVersions: ["v1"]
  operations: ["CREATE", "UPDATE"]
  resources: {{ toJson . }}
  scope: Namespaced
{{- end }}
{{- end }}
{{- end }}

{{/* controllerPods: warn only when the workload webhook judges every pod-creating kind. */}}
{{- define "vulngate.controllerPods" -}}
{{- $w := .Values.webhook.workloads }}
{{- $covered := true }}
{{- range list "replicasets" "statefulsets" "daemonsets" "jobs" "replicationcontrollers" }}
{{- if not (and $w.enabled (has . $w.resources)) }}{{ $covered = false }}{{ end }}
{{- end }}
{{- $v := .Values.config.policy.defaults.controllerPods }}
{{- if eq $v "warn" }}
{{- if not $covered }}
{{- fail "config.policy.defaults.controllerPods=warn needs webhook.workloads to check replicasets, statefulsets, daemonsets, jobs and replicationcontrollers: otherwise the Pods they create are judged by no one" }}
{{- end }}
{{- "warn" }}
{{- else if eq $v "enforce" }}
{{- "enforce" }}
{{- else if $covered }}
{{- "warn" }}
{{- else }}
{{- "enforce" }}
{{- end }}
{{- end }}
