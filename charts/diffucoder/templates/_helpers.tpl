{{/* Names are fixed: components, TrainJobs and InferenceServices refer to them. */}}
{{- define "diffucoder.s3SecretName" -}}
{{- .Values.s3.existingSecret | default "diffucoder-s3" -}}
{{- end -}}

{{- define "diffucoder.labels" -}}
app.kubernetes.io/name: diffucoder
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: diffucoder
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "minio"). */}}
{{- define "diffucoder.selectorLabels" -}}
app.kubernetes.io/name: diffucoder
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "diffucoder.componentLabels" -}}
{{ include "diffucoder.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* A project image: (dict "ctx" $ "name" "base"). */}}
{{- define "diffucoder.image" -}}
{{- $tag := .ctx.Values.images.tag | default .ctx.Chart.AppVersion -}}
{{- printf "%s/diffucoder-%s:%s" .ctx.Values.images.registry .name $tag -}}
{{- end -}}

{{/* The oldest MinIO release with the fix of GHSA-jjjj-jwhf-8rgr (CVE-2025-62506): a service
     account or STS session could shed its session policy. Tags in MinIO's RELEASE.<UTC time>Z
     scheme sort by date, so an older one is refused (fail closed); other schemes (a fork, your
     own build) are the operator's to vouch for. */}}
{{- define "diffucoder.minioFixedRelease" -}}
RELEASE.2025-10-15T17-29-55Z
{{- end -}}

{{/* MinIO: minio.image.repository, else the project's build of it in images.registry. */}}
{{- define "diffucoder.minioImage" -}}
{{- $img := .Values.minio.image -}}
{{- $repository := $img.repository | default (printf "%s/diffucoder-minio" .Values.images.registry) -}}
{{- $fixed := include "diffucoder.minioFixedRelease" . -}}
{{- if and (regexMatch "^RELEASE\\.[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}-[0-9]{2}-[0-9]{2}Z$" $img.tag) (lt $img.tag $fixed) -}}
{{- fail (printf "minio.image.tag %s predates %s, the MinIO release that fixes GHSA-jjjj-jwhf-8rgr (privilege escalation through service-account/STS session policies): use %s or later" $img.tag $fixed $fixed) -}}
{{- end -}}
{{- if $img.digest -}}
{{- printf "%s:%s@%s" $repository $img.tag $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository $img.tag -}}
{{- end -}}
{{- end -}}

{{/* host:port of the store, without scheme (the form KServe's annotations take). */}}
{{- define "diffucoder.s3Endpoint" -}}
{{- if .Values.s3.endpoint -}}
{{- .Values.s3.endpoint -}}
{{- else if .Values.minio.enabled -}}
diffucoder-minio:9000
{{- else -}}
{{- fail "s3.endpoint is required when minio.enabled is false" -}}
{{- end -}}
{{- end -}}

{{- define "diffucoder.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
runAsGroup: {{ .Values.podSecurity.runAsGroup }}
fsGroup: {{ .Values.podSecurity.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container security context: (dict "ctx" $). Writable paths are emptyDir mounts. */}}
{{- define "diffucoder.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .ctx.Values.podSecurity.runAsUser }}
runAsGroup: {{ .ctx.Values.podSecurity.runAsGroup }}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* images.pullSecrets as a pod's or a ServiceAccount's imagePullSecrets (the same shape): the
     pods of the chart carry them, and pods that run under the chart's ServiceAccounts without
     their own (pipeline steps, TrainJob / PyTorchJob / InferenceService pods) get them from
     the account. Renders nothing without pull secrets. */}}
{{- define "diffucoder.imagePullSecrets" -}}
{{- with .Values.images.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Where containers find the S3 keys as files (DIFFUCODER_S3_SECRET_DIR), not as env. */}}
{{- define "diffucoder.s3SecretDir" -}}
/var/run/secrets/diffucoder/s3
{{- end -}}

{{/* The store's settings for a container (env entries; the keys come as files). */}}
{{- define "diffucoder.s3Env" -}}
- name: DIFFUCODER_S3_ENDPOINT
  value: {{ include "diffucoder.s3Endpoint" . | quote }}
- name: DIFFUCODER_S3_SECURE
  value: {{ ternary "true" "false" .Values.s3.useHTTPS | quote }}
- name: DIFFUCODER_S3_REGION
  value: {{ .Values.s3.region | quote }}
- name: DIFFUCODER_S3_SECRET_DIR
  value: {{ include "diffucoder.s3SecretDir" . }}
{{- end -}}

{{- define "diffucoder.s3KeysMount" -}}
- name: s3-keys
  mountPath: {{ include "diffucoder.s3SecretDir" . }}
  readOnly: true
{{- end -}}

{{/* The Secret's keys as the files diffucoder.store.s3_config reads (accesskey, secretkey). */}}
{{- define "diffucoder.s3KeysVolume" -}}
- name: s3-keys
  secret:
    secretName: {{ include "diffucoder.s3SecretName" . }}
    defaultMode: 0440
    items:
      - key: AWS_ACCESS_KEY_ID
        path: accesskey
      - key: AWS_SECRET_ACCESS_KEY
        path: secretkey
{{- end -}}

{{/* Pod annotations of the chart's batch pods (Jobs, the helm test pod, TrainingRuntime pods)
     and MinIO: Istio sidecar injection off (istio.sidecarOptOut). A Job's pod with an Envoy
     sidecar never completes; MinIO stays outside the mesh so the sidecar-less pods of this
     namespace (pipeline steps, training pods, Jobs) can reach it under Kubeflow's per-namespace
     AuthorizationPolicies. Renders nothing when off. */}}
{{- define "diffucoder.podAnnotations" -}}
{{- if .Values.istio.sidecarOptOut }}
sidecar.istio.io/inject: "false"
{{- end }}
{{- end -}}

{{/* The pipeline-upload Job's spec (without the pipeline file, which it mounts). */}}
{{- define "diffucoder.pipelineUploadSpec" -}}
{{- $file := printf "diffucoder-%s.yaml" .Chart.AppVersion -}}
backoffLimit: {{ .Values.pipelineUpload.backoffLimit }}
activeDeadlineSeconds: {{ .Values.pipelineUpload.activeDeadlineSeconds }}
ttlSecondsAfterFinished: {{ .Values.jobs.ttlSecondsAfterFinished }}
template:
  metadata:
    labels:
      {{- include "diffucoder.componentLabels" (dict "ctx" . "component" "pipeline") | nindent 6 }}
    {{- with include "diffucoder.podAnnotations" . }}
    annotations:
      {{- . | nindent 6 }}
    {{- end }}
  spec:
    {{- /* The pipeline's steps run images.registry's images, pulled with images.pullSecrets. */}}
    {{- $args := list "diffucoder" "pipeline" "upload" "--host" "$(KFP_HOST)" "--file" (printf "/pipeline/%s" $file) "--image-registry" .Values.images.registry }}
    {{- range .Values.images.pullSecrets }}
    {{- $args = concat $args (list "--image-pull-secret" .) }}
    {{- end }}
    {{- $env := list (dict "name" "KFP_HOST" "value" .Values.pipelineUpload.kfpHost) (dict "name" "KF_PIPELINES_SA_TOKEN_PATH" "value" "/var/run/secrets/kubeflow/pipelines/token") }}
    {{- $mounts := list (dict "name" "pipeline" "mountPath" "/pipeline" "readOnly" true) (dict "name" "kfp-token" "mountPath" "/var/run/secrets/kubeflow/pipelines" "readOnly" true) }}
    {{- $token := dict "serviceAccountToken" (dict "path" "token" "audience" .Values.pipelineUpload.tokenAudience "expirationSeconds" 3600) }}
    {{- $volumes := list (dict "name" "pipeline" "configMap" (dict "name" "diffucoder-pipeline")) (dict "name" "kfp-token" "projected" (dict "sources" (list $token))) }}
    {{- include "diffucoder.jobPod" (dict "ctx" . "sa" "diffucoder-pipeline-runner" "name" "upload" "args" $args "env" $env "mounts" $mounts "volumes" $volumes "resources" .Values.pipelineUpload.resources) | nindent 4 }}
{{- end -}}

{{/* The upload Job is a plain Job, not a hook (a failing hook fails `helm install`): its name
     carries a hash of its spec and of the pipeline it uploads, because a Job's pod template is
     immutable. A changed pipeline or setting makes a new Job (Helm deletes the old one); an
     unchanged one keeps its name, and Helm recreates it after its TTL removed it. */}}
{{- define "diffucoder.pipelineUploadJob" -}}
{{- $pipeline := .Files.Get (printf "files/pipeline/diffucoder-%s.yaml" .Chart.AppVersion) -}}
{{- $digest := sha256sum (cat (include "diffucoder.pipelineUploadSpec" .) $pipeline) -}}
{{- printf "diffucoder-pipeline-upload-%s" (trunc 10 $digest) -}}
{{- end -}}
