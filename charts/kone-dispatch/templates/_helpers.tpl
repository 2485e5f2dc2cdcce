{{/*
Helpers of the kone-dispatch chart.

Invariants the templates keep (and tests/ops/chart_*.sh check on the rendered manifests):
  - configuration reaches the programs only as KD_* environment variables, built from the
    values' `config` maps by kd.env (section -> key -> value, KD_<SECTION>_<KEY>);
  - secrets reach them only as files mounted from existing Secrets (KD_*_FILE); the chart
    never takes a secret value, so none can be rendered;
  - every container gets kd.containerSecurityContext (restricted Pod Security Standard);
  - the work queue has one source, kd.queue, used by the worker's env and by the autoscaler.
*/}}

{{- define "kd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kd.fullname" -}}
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

{{/* kd.component: "<fullname>-<component>", for (dict "ctx" $ "component" "worker"). */}}
{{- define "kd.component" -}}
{{- printf "%s-%s" (include "kd.fullname" .ctx | trunc 50 | trimSuffix "-") .component -}}
{{- end -}}

{{- define "kd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kd.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "kd.labels" -}}
{{ include "kd.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: kone-dispatch
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "kd.image" -}}
{{- $img := .Values.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/* kone-sim's image: the Dockerfile's `sim` target, pushed beside the main one. */}}
{{- define "kd.simImage" -}}
{{- $img := .Values.sim.image -}}
{{- $repo := default (printf "%s-sim" .Values.image.repository) $img.repository -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $repo $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default (default .Chart.AppVersion .Values.image.tag) $img.tag | toString) -}}
{{- end -}}
{{- end -}}

{{- define "kd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kd.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
kd.str: a value as the string a program reads. Values files are parsed into float64, and Go
would print 1000000 as "1e+06": integral numbers are printed as integers instead.
*/}}
{{- define "kd.str" -}}
{{- if kindIs "float64" . -}}
{{- if eq . (floor .) -}}{{- int64 . -}}{{- else -}}{{- . -}}{{- end -}}
{{- else if kindIs "slice" . -}}
{{- $out := list -}}
{{- range . }}{{ $out = append $out (include "kd.str" .) }}{{ end -}}
{{- join "," $out -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{/*
kd.envMap: a config map (section -> key -> value, as in docs/configuration.md) as YAML
"KD_SECTION_KEY: value" lines. Used with fromYaml so callers can merge overrides in.
*/}}
{{- define "kd.envMap" -}}
{{- range $section, $keys := . }}
{{- range $key, $value := $keys }}
{{ printf "KD_%s_%s" $section $key | upper | replace "." "_" }}: {{ include "kd.str" $value | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* kd.envList: a NAME -> value map as a container's env list, sorted by name. */}}
{{- define "kd.envList" -}}
{{- range $name := keys . | sortAlpha }}
- name: {{ $name }}
  value: {{ index $ $name | quote }}
{{- end }}
{{- end -}}

{{/* kd.cfg: one worker config value, or a default: (list $ "amqp" "queue" "kone.calls"). */}}
{{- define "kd.cfg" -}}
{{- $ctx := index . 0 -}}
{{- $section := index $ctx.Values.worker.config (index . 1) | default dict -}}
{{- $v := index $section (index . 2) -}}
{{- if kindIs "invalid" $v -}}{{- index . 3 -}}{{- else -}}{{- include "kd.str" $v -}}{{- end -}}
{{- end -}}

{{/* The work queue the worker consumes: one source for the worker's env and the autoscaler. */}}
{{- define "kd.queue" -}}
{{- include "kd.cfg" (list . "amqp" "queue" "kone.calls") -}}
{{- end -}}

{{- define "kd.vhost" -}}
{{- include "kd.cfg" (list . "amqp" "vhost" "/") -}}
{{- end -}}

{{- define "kd.metricsPort" -}}
{{- include "kd.cfg" (list . "metrics" "port" "9464") -}}
{{- end -}}

{{- define "kd.drainMs" -}}
{{- include "kd.cfg" (list . "worker" "drain_ms" "10000") -}}
{{- end -}}

{{/*
kd.gracePeriod: terminationGracePeriodSeconds of the worker. After SIGTERM the worker waits
up to worker.drain_ms for in-flight jobs, hands the rest back, then gives confirms 5 s and
flushes Kafka (docs/architecture.md#shutdown): the pod must outlive all of that, or the
kubelet's SIGKILL cuts a job short. Default: the drain time (rounded up) plus
worker.shutdownMarginSeconds. An explicit value at or below the drain time fails the render.
*/}}
{{- define "kd.gracePeriod" -}}
{{- $drainS := div (add (include "kd.drainMs" . | int64) 999) 1000 -}}
{{- $explicit := .Values.worker.terminationGracePeriodSeconds -}}
{{- if kindIs "invalid" $explicit -}}
{{- add $drainS (.Values.worker.shutdownMarginSeconds | int64) -}}
{{- else if le ($explicit | int64) $drainS -}}
{{- fail (printf "worker.terminationGracePeriodSeconds (%v) must exceed worker.config.worker.drain_ms (%s ms): the kubelet would kill workers in the middle of their jobs" $explicit (include "kd.drainMs" .)) -}}
{{- else -}}
{{- $explicit | int64 -}}
{{- end -}}
{{- end -}}

{{/* Paths where Secrets are mounted (read-only, one directory each). */}}
{{- define "kd.secretDir" -}}/var/run/secrets/kone-dispatch{{- end -}}

{{/* The pod-level security context: restricted, the image's non-root user. */}}
{{- define "kd.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
The container-level security context of every container the chart renders (Pod Security
Standard "restricted"). Not taken from values: nothing in values can weaken it.
*/}}
{{- define "kd.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Where the workers find KONE: the in-cluster simulator when sim.enabled, else the config. */}}
{{- define "kd.simHost" -}}
{{- include "kd.component" (dict "ctx" . "component" "sim") -}}
{{- end -}}

{{/* The AMQP password volume and mount, shared by the worker and the smoke producer. */}}
{{- define "kd.amqpSecretVolume" -}}
- name: amqp-secret
  secret:
    secretName: {{ required "secrets.amqp.existingSecret: name an existing Secret holding the RabbitMQ password" .Values.secrets.amqp.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.secrets.amqp.passwordKey }}
        path: password
{{- end -}}

{{/* NetworkPolicy egress rules: DNS (UDP and TCP) and one TCP service (to + ports). */}}
{{- define "kd.egressDNS" -}}
- {{- with .dns.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    {{- range .dns.ports }}
    - port: {{ . }}
      protocol: UDP
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end -}}

{{- define "kd.egressRule" -}}
- {{- with .to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    {{- range .ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end -}}

{{/*
Egress ports of the worker's NetworkPolicy, as JSON arrays: networkPolicy.<peer>.ports when
set, else derived from the worker's configuration, so a moved broker port moves the policy:
RabbitMQ: amqp.port; Kafka: the port of every kafka.brokers entry; KONE: the ports of
kone.token_url and kone.ws_url (443 when they name none).
*/}}
{{- define "kd.amqpPorts" -}}
{{- if .Values.networkPolicy.amqp.ports -}}
{{- toJson .Values.networkPolicy.amqp.ports -}}
{{- else -}}
{{- list (include "kd.cfg" (list . "amqp" "port" "5672") | int) | toJson -}}
{{- end -}}
{{- end -}}

{{- define "kd.kafkaPorts" -}}
{{- if .Values.networkPolicy.kafka.ports -}}
{{- toJson .Values.networkPolicy.kafka.ports -}}
{{- else -}}
{{- $ports := list -}}
{{- range splitList "," (include "kd.cfg" (list . "kafka" "brokers" "127.0.0.1:9092")) -}}
{{- $p := regexFind "[0-9]+$" (trim .) | default "9092" | int -}}
{{- $ports = append $ports $p -}}
{{- end -}}
{{- $ports | uniq | toJson -}}
{{- end -}}
{{- end -}}

{{- define "kd.konePorts" -}}
{{- if .Values.networkPolicy.kone.ports -}}
{{- toJson .Values.networkPolicy.kone.ports -}}
{{- else -}}
{{- $ports := list -}}
{{- range list (include "kd.cfg" (list . "kone" "token_url" "")) (include "kd.cfg" (list . "kone" "ws_url" "")) -}}
{{- $host := (urlParse .).host | default "" -}}
{{- $p := regexFind ":[0-9]+$" $host | trimPrefix ":" | default "443" | int -}}
{{- $ports = append $ports $p -}}
{{- end -}}
{{- $ports | uniq | toJson -}}
{{- end -}}
{{- end -}}

{{/* Broker transport security as files (docs/security.md#transport-security): the env of
secrets.amqpTLS / kafkaTLS / kafkaSASL (set into .env), their mounts and their volumes.
Shared by the worker and the smoke producer (which uses the amqp part: .kafka false). */}}
{{- define "kd.tlsEnv" -}}
{{- $dir := include "kd.secretDir" .ctx -}}
{{- range $name, $prefix := dict "amqpTLS" "AMQP" "kafkaTLS" "KAFKA" -}}
{{- $s := index $.ctx.Values.secrets $name -}}
{{- if and $s.existingSecret (or (eq $prefix "AMQP") $.kafka) -}}
{{- $sub := printf "%s/%s-tls" $dir (lower $prefix) -}}
{{- if $s.caKey }}{{ $_ := set $.env (printf "KD_%s_CA_FILE" $prefix) (printf "%s/ca.crt" $sub) }}{{ end -}}
{{- if $s.certKey }}{{ $_ := set $.env (printf "KD_%s_CERT_FILE" $prefix) (printf "%s/tls.crt" $sub) }}{{ end -}}
{{- if $s.keyKey }}{{ $_ := set $.env (printf "KD_%s_KEY_FILE" $prefix) (printf "%s/tls.key" $sub) }}{{ end -}}
{{- end -}}
{{- end -}}
{{- if and .kafka .ctx.Values.secrets.kafkaSASL.existingSecret -}}
{{- $_ := set .env "KD_KAFKA_SASL_PASSWORD_FILE" (printf "%s/kafka-sasl/password" $dir) -}}
{{- end -}}
{{- end -}}

{{- define "kd.tlsMounts" -}}
{{- $dir := include "kd.secretDir" .ctx -}}
{{- if .ctx.Values.secrets.amqpTLS.existingSecret }}
- name: amqp-tls
  mountPath: {{ $dir }}/amqp-tls
  readOnly: true
{{- end }}
{{- if and .kafka .ctx.Values.secrets.kafkaTLS.existingSecret }}
- name: kafka-tls
  mountPath: {{ $dir }}/kafka-tls
  readOnly: true
{{- end }}
{{- if and .kafka .ctx.Values.secrets.kafkaSASL.existingSecret }}
- name: kafka-sasl
  mountPath: {{ $dir }}/kafka-sasl
  readOnly: true
{{- end }}
{{- end -}}

{{- define "kd.tlsVolumes" -}}
{{- range $name, $vol := dict "amqpTLS" "amqp-tls" "kafkaTLS" "kafka-tls" -}}
{{- $s := index $.ctx.Values.secrets $name -}}
{{- if and $s.existingSecret (or (eq $name "amqpTLS") $.kafka) }}
- name: {{ $vol }}
  secret:
    secretName: {{ $s.existingSecret }}
    defaultMode: 0440
    items:
      {{- if $s.caKey }}
      - key: {{ $s.caKey }}
        path: ca.crt
      {{- end }}
      {{- if $s.certKey }}
      - key: {{ $s.certKey }}
        path: tls.crt
      {{- end }}
      {{- if $s.keyKey }}
      - key: {{ $s.keyKey }}
        path: tls.key
      {{- end }}
{{- end }}
{{- end }}
{{- if and .kafka .ctx.Values.secrets.kafkaSASL.existingSecret }}
- name: kafka-sasl
  secret:
    secretName: {{ .ctx.Values.secrets.kafkaSASL.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .ctx.Values.secrets.kafkaSASL.passwordKey }}
        path: password
{{- end }}
{{- end -}}
