{{/* Name of the chart, or nameOverride. */}}
{{- define "meshguard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Resource name: fullnameOverride, or the release name (when it contains the chart name), or release-chart. */}}
{{- define "meshguard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "meshguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "meshguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "meshguard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "meshguard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: meshguard
{{- end -}}

{{- define "meshguard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "meshguard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the serving certificate (self-managed and cert-manager: <fullname>-tls). */}}
{{- define "meshguard.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "secret" -}}
{{- .Values.certificates.secret.name -}}
{{- else -}}
{{- printf "%s-tls" (include "meshguard.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "meshguard.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* failurePolicy meshguard arms the webhooks that follow the mode with, once a ready meshguard
answers behind them (they are rendered Ignore: docs/adr/0005). */}}
{{- define "meshguard.failurePolicy" -}}
{{- if .Values.webhook.failurePolicy -}}
{{- .Values.webhook.failurePolicy -}}
{{- else if eq .Values.mode "audit" -}}
Ignore
{{- else -}}
Fail
{{- end -}}
{{- end -}}

{{- define "meshguard.terminationGracePeriodSeconds" -}}
{{- add .Values.shutdown.preStopSleepSeconds .Values.shutdown.drainSeconds .Values.webhook.timeoutSeconds 5 -}}
{{- end -}}

{{/*
The configuration file: values.config plus the keys the chart owns. Setting an owned key in
values.config is an error rather than being silently overridden.
*/}}
{{- define "meshguard.config" -}}
{{- $user := deepCopy (.Values.config | default dict) -}}
{{- range $k := list "mode" "meshguardNamespace" -}}
{{- if hasKey $user $k -}}
{{- fail (printf "config.%s is set by the chart; use %s" $k (ternary "the top-level value mode" "the release namespace (helm -n)" (eq $k "mode"))) -}}
{{- end -}}
{{- end -}}
{{- $owned := dict "server" (list "certFile" "keyFile" "caFile" "certDir" "drainSeconds" "clientCaFile") "cluster" (list "inCluster" "kubeconfig") "selfManagedCerts" (list "enabled" "secretName" "webhookConfigurationName" "serviceName") "webhookArming" (list "enabled" "failurePolicy" "webhookConfigurationName") -}}
{{- range $group, $keys := $owned -}}
{{- $g := get $user $group | default dict -}}
{{- range $k := $keys -}}
{{- if hasKey $g $k -}}
{{- fail (printf "config.%s.%s is set by the chart (see values.yaml: certificates, shutdown, clientAuth)" $group $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $server := dict "certDir" "/certs" "drainSeconds" .Values.shutdown.drainSeconds -}}
{{- if ne .Values.certificates.mode "self-managed" -}}
{{- $_ := set $server "certFile" "/certs/tls.crt" -}}
{{- $_ := set $server "keyFile" "/certs/tls.key" -}}
{{- if eq .Values.certificates.mode "cert-manager" -}}
{{- $_ := set $server "caFile" "/certs/ca.crt" -}}
{{- end -}}
{{- /* The name the apiserver checks: a certificate of the operator's must cover it. */ -}}
{{- if not (hasKey (get $user "server" | default dict) "certSans") -}}
{{- $_ := set $server "certSans" (list (printf "%s.%s.svc" (include "meshguard.fullname" .) .Release.Namespace)) -}}
{{- end -}}
{{- end -}}
{{- /* Receiving a request may take at most the webhook's timeout (the apiserver gives up then). */ -}}
{{- $timeoutMs := mul .Values.webhook.timeoutSeconds 1000 -}}
{{- $userServer := get $user "server" | default dict -}}
{{- if hasKey $userServer "requestTimeoutMs" -}}
{{- if gt (int (get $userServer "requestTimeoutMs")) (int $timeoutMs) -}}
{{- fail (printf "config.server.requestTimeoutMs (%v) must not exceed webhook.timeoutSeconds (%v ms)" (get $userServer "requestTimeoutMs") $timeoutMs) -}}
{{- end -}}
{{- else -}}
{{- $_ := set $server "requestTimeoutMs" $timeoutMs -}}
{{- if not (hasKey $userServer "headersTimeoutMs") -}}
{{- $_ := set $server "headersTimeoutMs" (min 4000 (div (mul $timeoutMs 4) 5)) -}}
{{- end -}}
{{- end -}}
{{- if .Values.clientAuth.enabled -}}
{{- if not .Values.clientAuth.caConfigMap -}}
{{- fail "clientAuth.enabled needs clientAuth.caConfigMap (a ConfigMap with the CA of the apiserver's client certificate in ca.crt)" -}}
{{- end -}}
{{- $_ := set $server "clientCaFile" "/etc/meshguard-client-ca/ca.crt" -}}
{{- end -}}
{{- $fullname := include "meshguard.fullname" . -}}
{{- $smc := dict "enabled" (eq .Values.certificates.mode "self-managed") "secretName" (include "meshguard.tlsSecretName" .) "webhookConfigurationName" $fullname "serviceName" $fullname -}}
{{- $arming := dict "enabled" true "failurePolicy" (include "meshguard.failurePolicy" .) "webhookConfigurationName" $fullname -}}
{{- $chart := dict "mode" .Values.mode "meshguardNamespace" .Release.Namespace "server" $server "cluster" (dict "inCluster" true) "selfManagedCerts" $smc "webhookArming" $arming -}}
{{- toPrettyJson (mustMergeOverwrite $user $chart) -}}
{{- end -}}

{{/*
One webhook from files/generated.json: clientConfig to the Service (plus caBundle for an own
Secret), placeholders replaced by values. Call with (dict "root" $ "w" $webhook).
*/}}
{{- define "meshguard.webhook" -}}
{{- $root := .root -}}
{{- $w := .w -}}
{{- $out := omit $w "path" "namespaceSelector" -}}
{{- $cc := dict "service" (dict "namespace" $root.Release.Namespace "name" (include "meshguard.fullname" $root) "port" (int $root.Values.service.port) "path" $w.path) -}}
{{- if eq $root.Values.certificates.mode "secret" -}}
{{- $_ := set $cc "caBundle" $root.Values.certificates.secret.caBundle -}}
{{- end -}}
{{- $_ := set $out "clientConfig" $cc -}}
{{- if eq (toString $w.failurePolicy) "__FAILURE_POLICY__" -}}
{{- /* Rendered failing open; meshguard arms it once ready (config webhookArming). */ -}}
{{- $_ := set $out "failurePolicy" "Ignore" -}}
{{- end -}}
{{- if eq (toString $w.timeoutSeconds) "__TIMEOUT_SECONDS__" -}}
{{- $_ := set $out "timeoutSeconds" (int $root.Values.webhook.timeoutSeconds) -}}
{{- end -}}
{{- if $w.namespaceSelector -}}
{{- $exprs := list -}}
{{- range $e := $w.namespaceSelector.matchExpressions -}}
{{- $vals := list -}}
{{- range $v := $e.values -}}
{{- if eq $v "__EXEMPT_NAMESPACES__" -}}
{{- $vals = concat $vals ($root.Values.config.exemptNamespaces | default list) -}}
{{- else if eq $v "__RELEASE_NAMESPACE__" -}}
{{- $vals = append $vals $root.Release.Namespace -}}
{{- else -}}
{{- $vals = append $vals $v -}}
{{- end -}}
{{- end -}}
{{- $exprs = append $exprs (dict "key" $e.key "operator" $e.operator "values" ($vals | uniq | sortAlpha)) -}}
{{- end -}}
{{- $_ := set $out "namespaceSelector" (dict "matchExpressions" $exprs) -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}
