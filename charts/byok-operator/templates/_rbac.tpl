{{- /*
The operator's permissions, as rule sets that rbac.yaml binds cluster-wide (ClusterRole +
ClusterRoleBinding) or per watched namespace (Role + RoleBinding). Every verb is one the
code uses; no wildcards; subresources listed explicitly.
*/ -}}

{{- /* Framework, cluster-scoped: kopf's view of the cluster. */ -}}
{{- define "byok.rules.frameworkCluster" -}}
# kopf notices the CRD being installed or upgraded while it runs; without this it scans
# only at startup and logs a warning.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
# At startup (handlers.py, _resolve_cluster_settings): the operator's own namespace must exist,
# and kube-system's uid is the default instance id. By name: no other namespace is readable.
- apiGroups: [""]
  resources: [namespaces]
  resourceNames: [kube-system, {{ .Release.Namespace }}]
  verbs: [get]
{{- if .Values.watchNamespaces }}
# Namespaced mode: kopf matches its --namespace list against the namespaces that exist, so a
# watched namespace created after the operator starts is served too. (Read-only, names only.)
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
{{- end -}}

{{- /* Framework, per namespace: kopf posts core/v1 Events on the resources it handles. */ -}}
{{- define "byok.rules.frameworkNamespaced" -}}
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}

{{- /* Application: TenantLLMConfigs and the Secrets around them. */ -}}
{{- define "byok.rules.tenants" -}}
# Watch and index TenantLLMConfigs; patch = kopf's finalizer and bookkeeping annotations,
# and the wake-up annotation the operator sets when a labelled key Secret changes.
- apiGroups: [llm.byok.io]
  resources: [tenantllmconfigs]
  verbs: [get, list, watch, patch]
- apiGroups: [llm.byok.io]
  resources: [tenantllmconfigs/status]
  verbs: [get, patch]
# The gateway Secret's ownerReference sets blockOwnerDeletion, which the API server allows
# only to whoever may update the owner's finalizers.
- apiGroups: [llm.byok.io]
  resources: [tenantllmconfigs/finalizers]
  verbs: [update]
# Tenants' key Secrets: read, and watched by label (RBAC cannot narrow a grant by label, so
# this reads every Secret in scope). The agent-facing <name>-llm-gateway Secret: written
# (create + update) and deleted; RBAC cannot narrow create by name either.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, update, delete]
{{- end -}}

{{- /* Application, the operator's own namespace: its vault and encryption keys. */ -}}
{{- define "byok.rules.vault" -}}
# tlc-vault-<uid> Secrets (Fernet-encrypted copies of committed keys): read, written and
# deleted by name, and listed by label for the rewrap and the orphan sweep. The
# encryption-key Secret is read at startup and on every maintenance pass. No watch.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, create, update, delete]
{{- end -}}

{{- /* Leader election (leader.py), the operator's own namespace, in every mode. */ -}}
{{- define "byok.rules.leaderElection" -}}
# One Lease, read, created once and renewed every 2 s. Create cannot be narrowed by name;
# the other verbs are.
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [create]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  resourceNames: [{{ include "byok.fullname" . }}]
  verbs: [get, update]
{{- end -}}

{{- /* Application, namespaced mode: the orphan sweep's view of every tenant. */ -}}
{{- define "byok.rules.sweep" -}}
# The orphan sweep deletes gateway objects and vault Secrets only when no TenantLLMConfig
# with their uid exists anywhere in the cluster: a listing of only the watched namespaces
# could make a live tenant look gone. Read-only; a spec holds Secret names, never keys.
- apiGroups: [llm.byok.io]
  resources: [tenantllmconfigs]
  verbs: [list]
{{- end -}}
