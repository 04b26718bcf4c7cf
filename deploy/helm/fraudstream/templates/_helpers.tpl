{{- define "fraudstream.name" -}}
{{- printf "%s-worker" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fraudstream.labels" -}}
app.kubernetes.io/name: fraudstream
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "fraudstream.selector" -}}
app.kubernetes.io/name: fraudstream
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end -}}

{{- define "fraudstream.secretName" -}}
{{- default (printf "%s-secrets" (include "fraudstream.name" .)) .Values.secret.existingSecret -}}
{{- end -}}

{{/* Settings that must never be rendered into a ConfigMap. */}}
{{- define "fraudstream.secretKeys" -}}
FRAUD_REDIS_URL FRAUD_KEY_HASH_SECRET FRAUD_KAFKA_SASL_PASSWORD
{{- end -}}

{{- define "fraudstream.checks" -}}
{{- if and .Values.autoscaling.keda.enabled .Values.autoscaling.hpa.enabled -}}
{{- fail "autoscaling: enable either keda or hpa, not both (two autoscalers would fight over replicas)" -}}
{{- end -}}
{{- $secretKeys := splitList " " (include "fraudstream.secretKeys" .) -}}
{{- range $key, $_ := .Values.settings -}}
{{- if has $key $secretKeys -}}
{{- fail (printf "settings.%s is a secret: put it in secret.values or secret.existingSecret" $key) -}}
{{- end -}}
{{- if not (hasPrefix "FRAUD_" $key) -}}
{{- fail (printf "settings.%s: fraudstream reads only FRAUD_* settings" $key) -}}
{{- end -}}
{{- end -}}
{{- if lt (int .Values.partitions) 1 -}}
{{- fail "partitions must be at least 1" -}}
{{- end -}}
{{- end -}}
