{{/*
Name helpers. The operator's pods carry app.kubernetes.io/name=learning-operator whatever the
release is called: the NetworkPolicies the operator creates admit its pods by that label.
*/}}

{{- define "lwo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "lwo.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "lwo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of the operator pods (stable across upgrades). */}}
{{- define "lwo.selectorLabels" -}}
app.kubernetes.io/name: learning-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object the chart creates. */}}
{{- define "lwo.labels" -}}
{{ include "lwo.selectorLabels" . }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: gustav
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "lwo.chart" . }}
{{- end -}}

{{- define "lwo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "lwo.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "lwo.runnerImage" -}}
{{- if .Values.runnerImage.digest -}}
{{- printf "%s@%s" .Values.runnerImage.repository .Values.runnerImage.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.runnerImage.repository (default .Chart.AppVersion .Values.runnerImage.tag) -}}
{{- end -}}
{{- end -}}

{{- define "lwo.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Restricted Pod Security Standard: container securityContext. */}}
{{- define "lwo.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Leader election on or off, as "true" / "false" (LEADER_ELECTION). auto: on exactly when
replicaCount > 1. Off with more than one replica would let two operators reconcile at once.
*/}}
{{- define "lwo.leaderElection" -}}
{{- $enabled := .Values.leaderElection.enabled -}}
{{- $replicas := int .Values.replicaCount -}}
{{- if eq (toString $enabled) "auto" -}}
{{- ternary "true" "false" (gt $replicas 1) -}}
{{- else if $enabled -}}
true
{{- else if gt $replicas 1 -}}
{{- fail (printf "leaderElection.enabled=false with replicaCount=%d: every replica would reconcile at once; use enabled: auto (or true), or replicaCount: 1" $replicas) -}}
{{- else -}}
false
{{- end -}}
{{- end -}}
