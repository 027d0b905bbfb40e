{{/*
Names, labels and the few derived values every template shares.
*/}}

{{- define "ecs-scan-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-<chart>, or the release name alone when it already contains the chart name. */}}
{{- define "ecs-scan-operator.fullname" -}}
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

{{- define "ecs-scan-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ecs-scan-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ecs-scan-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ecs-scan-operator.labels" -}}
helm.sh/chart: {{ include "ecs-scan-operator.chart" . }}
{{ include "ecs-scan-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: ecs-scan-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "ecs-scan-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ecs-scan-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: repository@digest when a digest is given, else repository:tag. */}}
{{- define "ecs-scan-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* "true" when the pods elect a leader (auto: more than one replica). */}}
{{- /* The tenancy mode: tenancy.mode, else grants when cluster-wide and open when namespaced. */ -}}
{{- define "ecs-scan-operator.tenancyMode" -}}
{{- if .Values.tenancy.mode -}}
{{- .Values.tenancy.mode -}}
{{- else if .Values.watchNamespaces -}}
open
{{- else -}}
grants
{{- end -}}
{{- end }}

{{- define "ecs-scan-operator.leaderElection" -}}
{{- $le := .Values.leaderElection.enabled }}
{{- if eq (toString $le) "auto" }}
{{- if gt (int .Values.replicaCount) 1 }}true{{ else }}false{{ end }}
{{- else }}
{{- ternary "true" "false" (eq (toString $le) "true") }}
{{- end }}
{{- end }}

{{- define "ecs-scan-operator.leaseName" -}}
{{- default (include "ecs-scan-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* The namespaces Secrets may be read in: the watched ones, or rbac.secretNamespaces when cluster-wide. */}}
{{- define "ecs-scan-operator.secretNamespaces" -}}
{{- if .Values.watchNamespaces }}
{{- toJson .Values.watchNamespaces }}
{{- else }}
{{- toJson .Values.rbac.secretNamespaces }}
{{- end }}
{{- end }}

{{/*
The Secret holding the state key (ECS_SCAN_STATE_KEY): the user's, else the chart's; empty for none.
*/}}
{{- define "ecs-scan-operator.stateKeySecret" -}}
{{- if .Values.stateKey.existingSecret }}
{{- .Values.stateKey.existingSecret }}
{{- else if .Values.stateKey.create }}
{{- printf "%s-state-key" (include "ecs-scan-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
Whether the operator reads Secrets of the policies' namespaces (Jira credentials, notification
URLs): "true" or empty. In runner mode job it never does: the kubelet mounts them into the run.
*/}}
{{- define "ecs-scan-operator.readSecrets" -}}
{{- if and .Values.rbac.readSecrets (ne .Values.runner.mode "job") }}true{{- end }}
{{- end }}
