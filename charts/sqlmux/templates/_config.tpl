{{/* sqlmux.toml from the values: config.* tables as written (sorted keys,
     nulls left out), with the keys the chart owns filled in: listen
     addresses, TLS file paths, pool.share, [peers] and password_file.
     [mysql] is rendered only when the MySQL listener runs. */}}
{{- define "sqlmux.toml" -}}
{{- $cfg := .Values.config | default dict -}}
# sqlmux.toml rendered by the sqlmux Helm chart (release {{ .Release.Name }}).
# Passwords are not here: each password_file is a key of the Secret
# {{ include "sqlmux.secretName" . }} mounted at /etc/sqlmux/secrets.

[general]
{{- include "sqlmux.tomlKeys" (dict "table" $cfg.general "omit" list) }}

[admin]
listen = "0.0.0.0:{{ .Values.containerPorts.admin }}"
{{- include "sqlmux.tomlKeys" (dict "table" $cfg.admin "omit" (list "listen" "tls")) }}
{{- if .Values.adminTls.enabled }}
{{ include "sqlmux.clientTls" .Values.adminTls.mode }}
{{- end }}

[postgres]
listen = "0.0.0.0:{{ .Values.containerPorts.postgres }}"
{{- include "sqlmux.tomlKeys" (dict "table" $cfg.postgres "omit" (list "listen" "tls")) }}
{{- if .Values.tls.enabled }}
{{ include "sqlmux.clientTls" .Values.tls.mode }}
{{- end }}
{{- if include "sqlmux.mysqlEnabled" . }}

[mysql]
listen = "0.0.0.0:{{ .Values.containerPorts.mysql }}"
{{- include "sqlmux.tomlKeys" (dict "table" $cfg.mysql "omit" (list "listen" "tls")) }}
{{- if .Values.mysql.tls.enabled }}
{{ include "sqlmux.clientTls" .Values.mysql.tls.mode }}
{{- end }}
{{- end }}

[pool]
{{- include "sqlmux.tomlKeys" (dict "table" $cfg.pool "omit" (list "share")) }}
share = {{ include "sqlmux.share" . }}

[insight]
{{- include "sqlmux.tomlKeys" (dict "table" $cfg.insight "omit" list) }}
{{- if .Values.peers.enabled }}

[peers]
dns = "{{ include "sqlmux.peersName" . }}.{{ .Release.Namespace }}.svc.{{ .Values.peers.clusterDomain }}"
{{- with .Values.peers.extraAddresses }}
addresses = {{ toJson . }}
{{- end }}
port = {{ .Values.containerPorts.postgres }}
timeout = {{ .Values.peers.timeout | toJson }}
{{- end }}
{{- range $name, $table := omit $cfg "general" "admin" "postgres" "mysql" "pool" "insight" "peers" }}

[{{ $name }}]
{{- include "sqlmux.tomlKeys" (dict "table" $table "omit" list) }}
{{- end }}
{{- range .Values.databases }}

[[databases]]
{{- include "sqlmux.tomlKeys" (dict "table" . "omit" (list "password" "passwordKey" "password_file")) }}
{{- with include "sqlmux.passwordKey" (dict "entry" . "kind" "database" "root" $) }}
password_file = "/etc/sqlmux/secrets/{{ . }}"
{{- end }}
{{- end }}
{{- range .Values.users }}

[[users]]
{{- include "sqlmux.tomlKeys" (dict "table" . "omit" (list "password" "passwordKey" "password_file")) }}
{{- with include "sqlmux.passwordKey" (dict "entry" . "kind" "user" "root" $) }}
password_file = "/etc/sqlmux/secrets/{{ . }}"
{{- end }}
{{- end }}
{{- end -}}
