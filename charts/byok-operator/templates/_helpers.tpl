{{- define "byok.name" -}}byok-operator{{- end -}}

{{- /*
Names of everything the release creates: the release name, unless it already names the
chart. Cluster-scoped objects (ClusterRoles) carry it too, so two releases never collide.
*/ -}}
{{- define "byok.fullname" -}}
{{- if contains (include "byok.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "byok.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "byok.labels" -}}
app.kubernetes.io/name: {{ include "byok.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "byok.selector" -}}
app.kubernetes.io/name: {{ include "byok.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- /* The subject every binding grants to: the operator's ServiceAccount. */ -}}
{{- define "byok.subject" -}}
- kind: ServiceAccount
  name: {{ include "byok.fullname" . }}
  namespace: {{ .Release.Namespace }}
{{- end -}}
