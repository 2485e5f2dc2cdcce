{{/*
Readiness, and what "ready" means for a worker (docs/operations-manual.md#what-ready-means).

The worker's /readyz is 503 while anything it needs is missing, KONE included. A queue worker
serves no traffic through its Service, so Kubernetes' readiness decides only two things: when
a rollout may go on (and when `helm upgrade --wait` calls it failed), and which pods a
PodDisruptionBudget counts as healthy. Neither should hang on KONE: a KONE outage is not a
reason to roll a release back (the old pods are just as unready) or to hold node drains. So by
default ("requireKone: false") a worker is ready when /readyz is 200, or 503 for the KONE
reason alone (`no KONE token or no WebSocket connection`): it turns, consumes from RabbitMQ,
can produce to Kafka and reaches the ledger. KONE has its own alerts (KoneUnreachable,
KoneTokenRefreshFailing). requireKone: true probes GET /readyz as it is.

kd.readyCheck: a bash script that asks host:port for /readyz with bash's /dev/tcp (the image
has no curl) and exits 0 on those terms; used by the readiness probe and by `helm test`.
Arguments: (dict "host" HOST "port" PORT "timeout" SECONDS "requireKone" BOOL).
*/}}
{{- define "kd.readyCheck" -}}
exec 3<>"/dev/tcp/{{ .host }}/{{ .port }}" || exit 1
printf 'GET /readyz HTTP/1.0\r\nHost: {{ .host }}\r\n\r\n' >&3
response=$(timeout {{ .timeout }} cat <&3 | tr -d '\r')
exec 3<&-
status=${response%%$'\n'*} body=${response##*$'\n'}
echo "GET /readyz: $status $body"
[[ $status =~ ^HTTP/[0-9.]+\ 200 ]] && exit 0
{{- if not .requireKone }}
rest=${body//\"no KONE token or no WebSocket connection\"/}
if [[ $status =~ ^HTTP/[0-9.]+\ 503 && $rest != "$body" && $rest =~ \"reasons\":\[,*\] ]]; then
  echo "ready but for KONE: KONE is down or refuses this worker (see KoneUnreachable)"
  exit 0
fi
{{- end }}
exit 1
{{- end -}}

{{/* The worker's readiness probe (values worker.probes.readiness). */}}
{{- define "kd.readinessProbe" -}}
{{- $r := .Values.worker.probes.readiness -}}
{{- if $r.requireKone }}
httpGet:
  path: /readyz
  port: metrics
{{- else }}
{{- $listen := include "kd.cfg" (list . "metrics" "listen" "0.0.0.0") -}}
{{- $host := ternary "127.0.0.1" $listen (has $listen (list "0.0.0.0" "::" "")) -}}
exec:
  command:
    - /bin/bash
    - -c
    - {{ include "kd.readyCheck" (dict "host" $host "port" (include "kd.metricsPort" .) "timeout" $r.timeoutSeconds "requireKone" false) | quote }}
{{- end }}
periodSeconds: {{ $r.periodSeconds }}
timeoutSeconds: {{ $r.timeoutSeconds }}
failureThreshold: {{ $r.failureThreshold }}
{{- end -}}
