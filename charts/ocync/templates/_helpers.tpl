{{/*
Chart name (nameOverride wins), 63 characters at most.
*/}}
{{- define "ocync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the objects: fullnameOverride, else <release>-<name>, or just <release> when the
release name already contains the chart name (a release called "ocync" gives "ocync").
*/}}
{{- define "ocync.fullname" -}}
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

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "ocync.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "ocync.labels" -}}
helm.sh/chart: {{ include "ocync.chart" . }}
{{ include "ocync.selectorLabels" . }}
app.kubernetes.io/version: {{ include "ocync.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels: name and instance.
*/}}
{{- define "ocync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ocync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount the pod runs as.
*/}}
{{- define "ocync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ocync.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image tag: image.tag, else the chart's appVersion.
*/}}
{{- define "ocync.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion | toString }}
{{- end }}

{{/*
Image reference: repository@digest when a digest is set, else repository:tag.
*/}}
{{- define "ocync.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "ocync.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
Name of the ConfigMap holding config.yaml.
*/}}
{{- define "ocync.configMapName" -}}
{{- default (include "ocync.fullname" .) .Values.existingConfigMap }}
{{- end }}

{{/*
Content of /etc/ocync/config.yaml as the ConfigMap stores it (toYaml drops the final newline;
the ConfigMap's block scalar puts it back, so the checksum is over the file's exact bytes).
*/}}
{{- define "ocync.configFile" -}}
{{- printf "%s\n" (toYaml .Values.config) }}
{{- end }}

{{/*
Name of the cache PVC.
*/}}
{{- define "ocync.cacheClaimName" -}}
{{- default (printf "%s-cache" (include "ocync.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{/*
Number of shards as an integer.
*/}}
{{- define "ocync.shards" -}}
{{- .Values.shards | default 1 | int }}
{{- end }}

{{/*
Annotations of the ServiceAccount: the workload identity ones plus serviceAccount.annotations.
Rendered as YAML, empty when there are none.
*/}}
{{- define "ocync.serviceAccountAnnotations" -}}
{{- $wi := .Values.workloadIdentity }}
{{- $annotations := dict }}
{{- if eq $wi.provider "aws" }}
{{- $_ := set $annotations "eks.amazonaws.com/role-arn" $wi.aws.roleArn }}
{{- else if eq $wi.provider "azure" }}
{{- $_ := set $annotations "azure.workload.identity/client-id" $wi.azure.clientId }}
{{- if $wi.azure.tenantId }}
{{- $_ := set $annotations "azure.workload.identity/tenant-id" $wi.azure.tenantId }}
{{- end }}
{{- else if eq $wi.provider "gcp" }}
{{- $_ := set $annotations "iam.gke.io/gcp-service-account" $wi.gcp.serviceAccount }}
{{- end }}
{{- $annotations = merge $annotations (.Values.serviceAccount.annotations | default dict) }}
{{- if $annotations }}
{{- toYaml $annotations }}
{{- end }}
{{- end }}

{{/*
Container arguments (the image's entrypoint is /usr/local/bin/ocync), as a YAML list.
*/}}
{{- define "ocync.args" -}}
{{- if eq .Values.mode "watch" }}
- watch
- --config
- /etc/ocync/config.yaml
{{- if .Values.watch.schedule }}
- --schedule
- {{ .Values.watch.schedule | quote }}
{{- else }}
- --interval
- {{ .Values.watch.interval | int64 | toString | quote }}
{{- end }}
- --health-bind
- {{ .Values.watch.healthBind | quote }}
- --health-port
- {{ .Values.watch.healthPort | int64 | toString | quote }}
{{- if .Values.watch.jitter }}
- --jitter
- {{ .Values.watch.jitter | int64 | toString | quote }}
{{- end }}
{{- else }}
- sync
- --config
- /etc/ocync/config.yaml
{{- $shards := include "ocync.shards" . | int }}
{{- if gt $shards 1 }}
- --shard
- {{ $shards | toString | quote }}
{{- end }}
{{- end }}
- --log-format
- {{ .Values.logging.format | quote }}
{{- $v := .Values.logging.verbosity | default 0 | int }}
{{- if eq $v 1 }}
- -v
{{- else if ge $v 2 }}
- -vv
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | toString | quote }}
{{- end }}
{{- end }}

{{/*
The pod template (metadata and spec) shared by the Deployment, the CronJob and the Job.
*/}}
{{- define "ocync.podTemplate" -}}
{{- $watch := eq .Values.mode "watch" -}}
metadata:
  labels:
    {{- include "ocync.labels" . | nindent 4 }}
    {{- if eq .Values.workloadIdentity.provider "azure" }}
    azure.workload.identity/use: "true"
    {{- end }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- if or (not .Values.existingConfigMap) .Values.podAnnotations }}
  annotations:
    {{- if not .Values.existingConfigMap }}
    checksum/config: {{ include "ocync.configFile" . | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
spec:
  serviceAccountName: {{ include "ocync.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.automountServiceAccountToken }}
  {{- if not $watch }}
  restartPolicy: {{ .Values.job.restartPolicy }}
  {{- end }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds | int64 }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: ocync
      image: {{ include "ocync.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        {{- include "ocync.args" . | trim | nindent 8 }}
      env:
        - name: OCYNC_CACHE_DIR
          value: /var/cache/ocync
        {{- if .Values.dockerConfig.existingSecret }}
        - name: DOCKER_CONFIG
          value: /etc/ocync/docker
        {{- end }}
        {{- if .Values.aws.region }}
        - name: AWS_REGION
          value: {{ .Values.aws.region | quote }}
        {{- end }}
        {{- if .Values.aws.useFipsEndpoint }}
        - name: AWS_USE_FIPS_ENDPOINT
          value: "true"
        {{- end }}
        {{- with .Values.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- if or .Values.credentials.existingSecret .Values.envFrom }}
      envFrom:
        {{- with .Values.credentials.existingSecret }}
        - secretRef:
            name: {{ . }}
        {{- end }}
        {{- with .Values.envFrom }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      {{- if $watch }}
      ports:
        - name: http
          containerPort: {{ .Values.watch.healthPort | int64 }}
          protocol: TCP
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
        {{- with .Values.livenessProbe }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: http
        {{- with .Values.readinessProbe }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      {{- with .Values.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: config
          mountPath: /etc/ocync
          readOnly: true
        - name: cache
          mountPath: /var/cache/ocync
        - name: tmp
          mountPath: /tmp
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    {{- /* One projected volume for /etc/ocync: a docker config mounted at /etc/ocync/docker
    inside a read-only ConfigMap mount would need a mount point the runtime cannot create. */}}
    - name: config
      projected:
        sources:
          - configMap:
              name: {{ include "ocync.configMapName" . }}
              items:
                - key: config.yaml
                  path: config.yaml
          {{- with .Values.dockerConfig.existingSecret }}
          - secret:
              name: {{ . }}
              items:
                - key: .dockerconfigjson
                  path: docker/config.json
          {{- end }}
    - name: cache
      {{- if .Values.persistence.enabled }}
      persistentVolumeClaim:
        claimName: {{ include "ocync.cacheClaimName" . }}
      {{- else }}
      {{- with .Values.cacheEmptyDir }}
      emptyDir:
        {{- toYaml . | nindent 8 }}
      {{- else }}
      emptyDir: {}
      {{- end }}
      {{- end }}
    - name: tmp
      {{- with .Values.tmpEmptyDir }}
      emptyDir:
        {{- toYaml . | nindent 8 }}
      {{- else }}
      emptyDir: {}
      {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
Spec of a Job (mode job, and the CronJob's jobTemplate): retries, deadlines, sharding, pod.
*/}}
{{- define "ocync.jobSpec" -}}
backoffLimit: {{ .Values.job.backoffLimit | int64 }}
{{- with .Values.job.activeDeadlineSeconds }}
activeDeadlineSeconds: {{ . | int64 }}
{{- end }}
{{- if not (kindIs "invalid" .Values.job.ttlSecondsAfterFinished) }}
ttlSecondsAfterFinished: {{ .Values.job.ttlSecondsAfterFinished | int64 }}
{{- end }}
{{- $shards := include "ocync.shards" . | int }}
{{- if gt $shards 1 }}
completionMode: Indexed
completions: {{ $shards }}
parallelism: {{ $shards }}
{{- end }}
template:
  {{- include "ocync.podTemplate" . | nindent 2 }}
{{- end }}

{{/*
Checks of the values that the schema cannot express; each failure names the value to fix.
values.schema.json already rejects wrong types and unknown enum values, these checks repeat
the enum ones so that a render without schema validation fails just as clearly.
*/}}
{{- define "ocync.validate" -}}
{{- $mode := .Values.mode | toString }}
{{- if not (has $mode (list "watch" "cronjob" "job")) }}
{{- fail (printf "mode must be one of watch, cronjob or job (got %q)" $mode) }}
{{- end }}
{{- $shards := .Values.shards | default 1 | int }}
{{- if lt $shards 1 }}
{{- fail (printf "shards must be 1 or more (got %d)" $shards) }}
{{- end }}
{{- if and (eq $mode "watch") (gt $shards 1) }}
{{- fail (printf "shards is %d but mode is watch: a watch Deployment runs a single pod; use mode cronjob or job for sharding (an Indexed Job with one pod per shard)" $shards) }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (ne $mode "watch") }}
{{- fail (printf "serviceMonitor.enabled needs mode watch: only `ocync watch` serves /metrics (mode is %s)" $mode) }}
{{- end }}
{{- if and (not .Values.config) (not .Values.existingConfigMap) }}
{{- fail "config is empty: set config (the ocync configuration: registries, defaults, mappings) or existingConfigMap" }}
{{- end }}
{{- if and (eq $mode "watch") .Values.watch.schedule }}
{{- if ne (len (regexSplit "\\s+" (trim (.Values.watch.schedule | toString)) -1)) 5 }}
{{- fail (printf "watch.schedule must be a cron expression of 5 fields (minute hour day month weekday, UTC), e.g. \"*/15 * * * *\" (got %q)" .Values.watch.schedule) }}
{{- end }}
{{- end }}
{{- if not (has (.Values.logging.format | toString) (list "text" "json")) }}
{{- fail (printf "logging.format must be text or json (got %q)" .Values.logging.format) }}
{{- end }}
{{- if not (has (.Values.job.restartPolicy | toString) (list "OnFailure" "Never")) }}
{{- fail (printf "job.restartPolicy must be OnFailure or Never (got %q)" .Values.job.restartPolicy) }}
{{- end }}
{{- $wi := .Values.workloadIdentity }}
{{- $provider := $wi.provider | toString }}
{{- if eq $provider "aws" }}
{{- if not $wi.aws.roleArn }}
{{- fail "workloadIdentity.provider is aws (IRSA) but workloadIdentity.aws.roleArn is empty: set it to the IAM role ARN (arn:aws:iam::<account>:role/<name>); with EKS Pod Identity keep provider none" }}
{{- end }}
{{- if not (regexMatch "^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+" $wi.aws.roleArn) }}
{{- fail (printf "workloadIdentity.aws.roleArn must be an IAM role ARN like arn:aws:iam::123456789012:role/ocync (got %q)" $wi.aws.roleArn) }}
{{- end }}
{{- else if eq $provider "azure" }}
{{- if not $wi.azure.clientId }}
{{- fail "workloadIdentity.provider is azure but workloadIdentity.azure.clientId is empty: set it to the client ID of the managed identity (or app registration) federated with this ServiceAccount" }}
{{- end }}
{{- else if eq $provider "gcp" }}
{{- if not $wi.gcp.serviceAccount }}
{{- fail "workloadIdentity.provider is gcp but workloadIdentity.gcp.serviceAccount is empty: set it to the Google service account email (name@project.iam.gserviceaccount.com)" }}
{{- end }}
{{- else if ne $provider "none" }}
{{- fail (printf "workloadIdentity.provider must be one of none, aws, azure or gcp (got %q); EKS Pod Identity needs none" $provider) }}
{{- end }}
{{- end }}
