{{/* Names and labels. */}}
{{- define "sqlmux.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sqlmux.fullname" -}}
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

{{/* The headless Service the replicas find each other through. */}}
{{- define "sqlmux.peersName" -}}
{{- printf "%s-peers" (include "sqlmux.fullname" . | trunc 57 | trimSuffix "-") -}}
{{- end -}}

{{- define "sqlmux.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sqlmux.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sqlmux.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sqlmux.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: connection-pooler
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "sqlmux.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sqlmux.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sqlmux.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding passwords and (unless tls.secretName) TLS files. */}}
{{- define "sqlmux.secretName" -}}
{{- default (include "sqlmux.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "sqlmux.tlsSecretName" -}}
{{- default (include "sqlmux.secretName" .) .Values.tls.secretName -}}
{{- end -}}

{{/* "true" when the MySQL listener runs: mysql.enabled, or a database
     with protocol = "mysql" (sqlmux opens the listener for one by itself,
     so the chart opens its port too); "" otherwise. */}}
{{- define "sqlmux.mysqlEnabled" -}}
{{- $on := .Values.mysql.enabled -}}
{{- range .Values.databases -}}
{{- if eq (toString .protocol) "mysql" }}{{ $on = true }}{{ end -}}
{{- end -}}
{{- if $on }}true{{ end -}}
{{- end -}}

{{/* "true" when a listener uses the client TLS certificate (tls.enabled
     for PostgreSQL, mysql.tls.enabled for MySQL), so the pod mounts it at
     /etc/sqlmux/tls; "" otherwise. */}}
{{- define "sqlmux.tlsMounted" -}}
{{- if or .Values.tls.enabled .Values.adminTls.enabled (and (include "sqlmux.mysqlEnabled" .) .Values.mysql.tls.enabled) }}true{{ end -}}
{{- end -}}

{{/* A listener's `tls = { ... }` line: the mounted certificate and key
     (shared by both listeners) and the listener's mode. Argument: the mode. */}}
{{- define "sqlmux.clientTls" -}}
tls = { cert = "/etc/sqlmux/tls/tls.crt", key = "/etc/sqlmux/tls/tls.key", mode = {{ . | toString | toJson }} }
{{- end -}}

{{/* Replicas that share each pool: pool.share as set, else the most
     replicas there can be. */}}
{{- define "sqlmux.share" -}}
{{- $pool := .Values.config.pool | default dict -}}
{{- if hasKey $pool "share" -}}
{{- int64 $pool.share -}}
{{- else if .Values.autoscaling.enabled -}}
{{- int64 .Values.autoscaling.maxReplicas -}}
{{- else -}}
{{- int64 .Values.replicaCount -}}
{{- end -}}
{{- end -}}

{{/* Seconds in a duration string such as "30s", "2m", "1h30m", "500ms"
     (rounded up); fails on anything else. */}}
{{- define "sqlmux.seconds" -}}
{{- $s := trim (toString .) -}}
{{- if not (regexMatch "^([0-9]+(ms|s|m|h))+$" $s) -}}
{{- fail (printf "cannot read the duration %q: write it like \"30s\", \"2m\" or \"1h30m\", or set terminationGracePeriodSeconds" $s) -}}
{{- end -}}
{{- $ms := 0 -}}
{{- range regexFindAll "[0-9]+(ms|s|m|h)" $s -1 -}}
{{- $n := regexFind "^[0-9]+" . | int64 -}}
{{- $unit := trimPrefix (toString $n) . -}}
{{- $ms = add $ms (mul $n (get (dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000) $unit)) -}}
{{- end -}}
{{- div (add $ms 999) 1000 -}}
{{- end -}}

{{- define "sqlmux.terminationGracePeriodSeconds" -}}
{{- $general := .Values.config.general | default dict -}}
{{- $drain := include "sqlmux.seconds" (default "30s" $general.shutdown_timeout) | int64 -}}
{{- $floor := add $drain .Values.preStopSleepSeconds -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- add $floor 10 -}}
{{- else if le (int64 .Values.terminationGracePeriodSeconds) $floor -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be longer than general.shutdown_timeout plus preStopSleepSeconds (%d s), or the pod is killed mid-drain" .Values.terminationGracePeriodSeconds $floor) -}}
{{- else -}}
{{- int64 .Values.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{/* One TOML value: strings and lists as JSON (valid TOML), numbers as
     integers, maps as inline tables. */}}
{{- define "sqlmux.tomlValue" -}}
{{- if kindIs "string" . -}}
{{- toJson . -}}
{{- else if kindIs "bool" . -}}
{{- . -}}
{{- else if or (kindIs "float64" .) (kindIs "int" .) (kindIs "int64" .) -}}
{{- int64 . -}}
{{- else if kindIs "slice" . -}}
[{{- range $i, $v := . }}{{ if $i }}, {{ end }}{{ include "sqlmux.tomlValue" $v }}{{ end -}}]
{{- else if kindIs "map" . -}}
{{- $m := . -}}
{ {{- range $i, $k := keys $m | sortAlpha }}{{ if $i }}, {{ end }}{{ $k }} = {{ include "sqlmux.tomlValue" (get $m $k) }}{{ end -}} }
{{- else -}}
{{- fail (printf "cannot render %v (%s) as TOML" . (kindOf .)) -}}
{{- end -}}
{{- end -}}

{{/* `key = value` lines of a map, keys sorted, nulls left out. Argument:
     (dict "table" MAP "omit" LIST). */}}
{{- define "sqlmux.tomlKeys" -}}
{{- $t := .table | default dict -}}
{{- range $k := keys $t | sortAlpha -}}
{{- $v := get $t $k -}}
{{- if and (not (has $k $.omit)) (not (kindIs "invalid" $v)) }}
{{ $k }} = {{ include "sqlmux.tomlValue" $v }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Secret key of a user's or database's password, or "" when it has
     none. Argument: (dict "entry" ENTRY "kind" "user"|"database" "root" $). */}}
{{- define "sqlmux.passwordKey" -}}
{{- $e := .entry -}}
{{- if and $e.password .root.Values.secrets.existingSecret -}}
{{- fail (printf "%s %q has a password in values, but secrets.existingSecret is set: put the password in that Secret and name its key with passwordKey" .kind $e.name) -}}
{{- end -}}
{{- $key := "" -}}
{{- if $e.passwordKey -}}
{{- $key = $e.passwordKey -}}
{{- else if $e.password -}}
{{- $key = printf "%s.%s" .kind $e.name -}}
{{- end -}}
{{- if and $key (not (regexMatch "^[-._a-zA-Z0-9]+$" $key)) -}}
{{- fail (printf "%s %q: %q is not a valid Secret key (letters, digits, '-', '_', '.'); name one with passwordKey" .kind $e.name $key) -}}
{{- end -}}
{{- $key -}}
{{- end -}}

{{/* Every Secret key the pod mounts under secrets/: "KEY" list. */}}
{{- define "sqlmux.passwordKeys" -}}
{{- $keys := list -}}
{{- range .Values.users -}}
{{- $k := include "sqlmux.passwordKey" (dict "entry" . "kind" "user" "root" $) -}}
{{- if $k }}{{ $keys = append $keys $k }}{{ end -}}
{{- end -}}
{{- range .Values.databases -}}
{{- $k := include "sqlmux.passwordKey" (dict "entry" . "kind" "database" "root" $) -}}
{{- if $k }}{{ $keys = append $keys $k }}{{ end -}}
{{- end -}}
{{- toJson (uniq $keys) -}}
{{- end -}}
