{{/*
Names.
*/}}
{{- define "imprimatur.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "imprimatur.fullname" -}}
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

{{- define "imprimatur.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "imprimatur.selectorLabels" -}}
app.kubernetes.io/name: {{ include "imprimatur.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "imprimatur.labels" -}}
helm.sh/chart: {{ include "imprimatur.chart" . }}
{{ include "imprimatur.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: admission-controller
app.kubernetes.io/part-of: imprimatur
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "imprimatur.serviceAccountName" -}}
{{- default (include "imprimatur.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{- define "imprimatur.tlsSecretName" -}}
{{- printf "%s-tls" (include "imprimatur.fullname" .) }}
{{- end }}

{{- define "imprimatur.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository .Values.image.tag }}
{{- if .Values.image.digest }}
{{- $ref = printf "%s@%s" $ref .Values.image.digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{/*
The DNS names the API server uses to reach the webhook Service.
*/}}
{{- define "imprimatur.serviceDNSNames" -}}
{{- $svc := include "imprimatur.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson }}
{{- end }}

{{/*
"true" when cert-manager issues the serving certificate: certManager.enabled true, or "auto" and the
cluster serves cert-manager.io/v1.
*/}}
{{- define "imprimatur.certManagerEnabled" -}}
{{- $enabled := .Values.certManager.enabled }}
{{- if kindIs "bool" $enabled }}
{{- if $enabled }}true{{ end }}
{{- else if .Capabilities.APIVersions.Has "cert-manager.io/v1" }}true
{{- end }}
{{- end }}

{{/*
Where the serving certificate comes from: cert-manager, helm (generated here) or external.
*/}}
{{- define "imprimatur.tlsSource" -}}
{{- if include "imprimatur.certManagerEnabled" . }}cert-manager
{{- else }}{{ .Values.tls.source }}
{{- end }}
{{- end }}

{{/*
The chart-generated CA and serving certificate (tls.source: helm). Generated once per render and kept
in .Values._imprimaturTLS so that the Secret and the webhook caBundle agree; on upgrade the existing
Secret is looked up and reused, so the caBundle does not change under running pods.
Call it for its side effect, then read .Values._imprimaturTLS.{ca,crt,key}.
*/}}
{{- define "imprimatur.generatedTLS" -}}
{{- if not (hasKey .Values "_imprimaturTLS") }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "imprimatur.tlsSecretName" .) }}
{{- $data := dict }}
{{- if $existing }}{{ $data = default (dict) (get $existing "data") }}{{ end }}
{{- if and (get $data "ca.crt") (get $data "tls.crt") (get $data "tls.key") }}
{{- $_ := set .Values "_imprimaturTLS" (dict "ca" (get $data "ca.crt" | b64dec) "crt" (get $data "tls.crt" | b64dec) "key" (get $data "tls.key" | b64dec)) }}
{{- else }}
{{- $days := int .Values.tls.validityDays }}
{{- $names := include "imprimatur.serviceDNSNames" . | fromJsonArray }}
{{- $ca := genCA (printf "%s-webhook-ca" (include "imprimatur.fullname" .)) $days }}
{{- $cert := genSignedCert (index $names 2) nil $names $days $ca }}
{{- $_ := set .Values "_imprimaturTLS" (dict "ca" $ca.Cert "crt" $cert.Cert "key" $cert.Key) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The namespaceSelector of both webhooks: never the release namespace (the controller must be able to
start its own pods), never the listed system namespaces, never a namespace labelled
imprimatur.dev/exclude=true.
*/}}
{{- define "imprimatur.namespaceSelector" -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
      {{- $excluded := prepend .Values.webhook.excludeNamespaces .Release.Namespace | uniq }}
      {{- range $excluded }}
      - {{ . | quote }}
      {{- end }}
  - key: imprimatur.dev/exclude
    operator: NotIn
    values:
      - "true"
{{- end }}

{{/*
The clientConfig of one webhook. Argument: (dict "root" $ "path" "/validate-pods").
*/}}
{{- define "imprimatur.clientConfig" -}}
{{- $root := .root }}
service:
  name: {{ include "imprimatur.fullname" $root }}
  namespace: {{ $root.Release.Namespace }}
  path: {{ .path }}
  port: {{ $root.Values.service.port }}
{{- $source := include "imprimatur.tlsSource" $root }}
{{- if eq $source "helm" }}
{{- include "imprimatur.generatedTLS" $root }}
caBundle: {{ $root.Values._imprimaturTLS.ca | b64enc }}
{{- else if and (eq $source "external") $root.Values.tls.caBundle }}
caBundle: {{ $root.Values.tls.caBundle }}
{{- end }}
{{- end }}
