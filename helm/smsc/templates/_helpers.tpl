{{/*
Names, labels and the pieces shared by the three Deployments (edge, router, worker).
*/}}

{{- define "smsc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped base name; role suffixes (-edge, -router, -worker) are added to it. */}}
{{- define "smsc.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "smsc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "smsc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "smsc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "smsc.labels" -}}
helm.sh/chart: {{ include "smsc.chart" . }}
{{ include "smsc.selectorLabels" . }}
app.kubernetes.io/version: {{ include "smsc.imageTag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: smsc
{{- end }}

{{/* Labels of one role: include "smsc.roleLabels" (list $ "edge") */}}
{{- define "smsc.roleLabels" -}}
{{ include "smsc.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "smsc.roleSelectorLabels" -}}
{{ include "smsc.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "smsc.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "smsc.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "smsc.imageTag" .) }}
{{- end }}
{{- end }}

{{- define "smsc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "smsc.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "smsc.accountsSecretName" -}}
{{- .Values.accounts.existingSecret | default (printf "%s-accounts" (include "smsc.fullname" .)) }}
{{- end }}

{{- define "smsc.tlsSecretName" -}}
{{- .Values.edge.tls.existingSecret | default (printf "%s-tls" (include "smsc.fullname" .)) }}
{{- end }}

{{/* Where the pods find their files. */}}
{{- define "smsc.configPath" -}}/etc/smsc/config.yaml{{- end }}
{{- define "smsc.accountsPath" -}}/etc/smsc/accounts/accounts.yaml{{- end }}
{{- define "smsc.tlsDir" -}}/etc/smsc/tls{{- end }}
{{- define "smsc.grpcTlsDir" -}}/etc/smsc/grpc{{- end }}
{{- define "smsc.kafkaCaDir" -}}/etc/smsc/kafka-ca{{- end }}
{{- define "smsc.kafkaClientDir" -}}/etc/smsc/kafka-client{{- end }}
{{- define "smsc.scyllaAuthDir" -}}/etc/smsc/scylla-auth{{- end }}
{{- define "smsc.scyllaCaDir" -}}/etc/smsc/scylla-ca{{- end }}
{{- define "smsc.scyllaClientDir" -}}/etc/smsc/scylla-client{{- end }}

{{/*
Switches computed from the values. Each prints "true" or nothing, so that
`if include "..." .` reads as a boolean.
*/}}

{{/* Accounts from SmppAccount resources (config accounts_crd). */}}
{{- define "smsc.accountsCrd" -}}
{{- if eq .Values.accounts.source "crd" }}true{{ end }}
{{- end }}

{{/* The most edge pods there can be: the HPA's maximum, else the replica count. */}}
{{- define "smsc.edgeMaxReplicas" -}}
{{- if .Values.edge.autoscaling.enabled }}{{ .Values.edge.autoscaling.maxReplicas }}{{ else }}{{ .Values.edge.replicas }}{{ end }}
{{- end }}

{{/* Session rebalancing (config edge.peers): enabled, and more than one edge possible. */}}
{{- define "smsc.rebalance" -}}
{{- if and .Values.edge.rebalance.enabled (gt (include "smsc.edgeMaxReplicas" . | int) 1) }}true{{ end }}
{{- end }}

{{/* Rebalancing counts ready edges from the SMPP Service's EndpointSlices (Kubernetes API). */}}
{{- define "smsc.peersService" -}}
{{- if and (include "smsc.rebalance" .) (eq .Values.edge.rebalance.peers "service") }}true{{ end }}
{{- end }}

{{/* Each edge keeps its Pod's controller.kubernetes.io/pod-deletion-cost at its session count (config edge.pod_deletion_cost; Kubernetes API). */}}
{{- define "smsc.podDeletionCost" -}}
{{- if .Values.edge.podDeletionCost.enabled }}true{{ end }}
{{- end }}

{{/* Rebalancing counts ready edges in DNS: the ready-only headless Service <fullname>-edge-peers. */}}
{{- define "smsc.peersDns" -}}
{{- if and (include "smsc.rebalance" .) (eq .Values.edge.rebalance.peers "dns") }}true{{ end }}
{{- end }}

{{/*
Whether a role's pods call the Kubernetes API (and so get the service account token):
include "smsc.kubeApi" (list $ "edge"). Edges: CRD accounts (watch, status),
EndpointSlice peers or the pod-deletion-cost of their own Pod; workers: CRD accounts (lib.rs starts the watcher in edge and worker
roles); routers: never. With "any": whether some role does (ServiceAccount, RBAC).
*/}}
{{- define "smsc.kubeApi" -}}
{{- $ := index . 0 }}
{{- $role := index . 1 }}
{{- $crd := include "smsc.accountsCrd" $ }}
{{- $slices := include "smsc.peersService" $ }}
{{- $cost := include "smsc.podDeletionCost" $ }}
{{- if or (and (has $role (list "edge" "any")) (or $crd $slices $cost)) (and (eq $role "worker") $crd) }}true{{ end }}
{{- end }}

{{/*
edge.drain_timeout in whole seconds ("20s" -> 20; the schema allows only that form), and
the edge's termination grace period: preStop sleep + drain + margin, so that SIGTERM
(sent after the preStop hook) leaves the edge its whole drain before SIGKILL.
*/}}
{{- define "smsc.edgeDrainSeconds" -}}
{{- $d := .Values.config.edge.drain_timeout | default "20s" | toString }}
{{- if not (regexMatch "^[0-9]+s$" $d) }}
{{- fail (printf "config.edge.drain_timeout must be whole seconds like 20s (got %q): the edge's terminationGracePeriodSeconds is computed from it" $d) }}
{{- end }}
{{- trimSuffix "s" $d | int }}
{{- end }}

{{- define "smsc.edgeGraceSeconds" -}}
{{- add (int .Values.edge.preStopSleepSeconds) (include "smsc.edgeDrainSeconds" . | int) (int .Values.edge.terminationMarginSeconds) }}
{{- end }}

{{/*
The smsc config file (services/smsc/src/config/), from .Values.config plus what the
chart owns: every listener on 0.0.0.0 with the chart's ports, TLS paths, the accounts
file or accounts_crd, edge.peers, grpc_tls, bus.tls, store.auth, store.tls. node_id
stays unset: the binary takes $POD_NAME.
*/}}
{{- define "smsc.config" -}}
{{- $c := deepCopy .Values.config }}
{{- $_ := set $c "admin_listen" (printf "0.0.0.0:%d" (int .Values.ports.admin)) }}
{{- $edge := $c.edge | default dict }}
{{- /* TLS only (edge.plaintext false): the edge cannot turn its plaintext listener off, so it
       listens on the pod's loopback, out of reach of anything outside the pod. */}}
{{- $_ := set $edge "smpp_listen" (printf "%s:%d" (ternary "0.0.0.0" "127.0.0.1" .Values.edge.plaintext) (int .Values.ports.smpp)) }}
{{- $_ := set $edge "grpc_listen" (printf "0.0.0.0:%d" (int .Values.ports.grpc)) }}
{{- with .Values.edge.proxyProtocol.trustedCIDRs }}
{{- $_ := set $edge "proxy_protocol" (dict "trusted_cidrs" .) }}
{{- end }}
{{- if .Values.edge.tls.enabled }}
{{- $_ := set $edge "tls" (dict "listen" (printf "0.0.0.0:%d" (int .Values.ports.smppTls)) "cert" (printf "%s/tls.crt" (include "smsc.tlsDir" .)) "key" (printf "%s/tls.key" (include "smsc.tlsDir" .))) }}
{{- end }}
{{- if .Values.edge.http.enabled }}
{{- $_ := set $edge "http_listen" (printf "0.0.0.0:%d" (int .Values.ports.http)) }}
{{- else }}
{{- /* No HTTP API: its request limits would configure nothing; leave them out. */}}
{{- $_ := unset $edge "http" }}
{{- end }}
{{- if include "smsc.rebalance" . }}
{{- if include "smsc.peersService" . }}
{{- $_ := set $edge "peers" (dict "service" (printf "%s-smpp" (include "smsc.fullname" .))) }}
{{- else }}
{{- $_ := set $edge "peers" (dict "dns" (printf "%s-edge-peers.%s.svc" (include "smsc.fullname" .) .Release.Namespace)) }}
{{- end }}
{{- else }}
{{- /* No peers: the binary would ignore the tuning; leave it out rather than suggest rebalancing. */}}
{{- $_ := unset $edge "rebalance" }}
{{- end }}
{{- if include "smsc.podDeletionCost" . }}
{{- $_ := set $edge "pod_deletion_cost" (dict "interval" .Values.edge.podDeletionCost.interval) }}
{{- else }}
{{- $_ := unset $edge "pod_deletion_cost" }}
{{- end }}
{{- $_ := set $c "edge" $edge }}
{{- $worker := $c.worker | default dict }}
{{- /* The simulator's MO-injection gRPC has no authentication: loopback only (kubectl exec / port-forward). */}}
{{- $_ := set $worker "simulator_listen" (printf "127.0.0.1:%d" (int .Values.ports.simulator)) }}
{{- $_ := set $c "worker" $worker }}
{{- if include "smsc.accountsCrd" . }}
{{- $crd := dict "namespace" .Release.Namespace "status_interval" .Values.accounts.crd.statusInterval }}
{{- with .Values.accounts.crd.secretSelector }}
{{- $_ := set $crd "secret_selector" . }}
{{- end }}
{{- $_ := set $c "accounts_crd" $crd }}
{{- else }}
{{- $_ := set $c "accounts_file" (include "smsc.accountsPath" .) }}
{{- end }}
{{- if .Values.grpcTls.enabled }}
{{- $dir := include "smsc.grpcTlsDir" . }}
{{- $g := dict "ca" (printf "%s/ca.crt" $dir) "cert" (printf "%s/tls.crt" $dir) "key" (printf "%s/tls.key" $dir) }}
{{- with .Values.grpcTls.serverName }}
{{- $_ := set $g "server_name" . }}
{{- end }}
{{- $_ := set $c "grpc_tls" $g }}
{{- end }}
{{- if .Values.kafkaTls.enabled }}
{{- /* Every role uses the bus (edge publishes, router and worker consume): one config for all. */}}
{{- $bus := $c.bus | default dict }}
{{- $t := dict "ca" (printf "%s/ca.crt" (include "smsc.kafkaCaDir" .)) }}
{{- if .Values.kafkaTls.clientSecret }}
{{- $_ := set $t "cert" (printf "%s/user.crt" (include "smsc.kafkaClientDir" .)) }}
{{- $_ := set $t "key" (printf "%s/user.key" (include "smsc.kafkaClientDir" .)) }}
{{- end }}
{{- $_ := set $bus "tls" $t }}
{{- $_ := set $c "bus" $bus }}
{{- end }}
{{- /* Topics: created by the roles only when asked, or when nothing else makes them
       (no Strimzi KafkaTopics): that takes the Kafka ACL Create. */}}
{{- $bus := $c.bus | default dict }}
{{- if not (hasKey $bus "create_topics") }}
{{- $_ := set $bus "create_topics" (not .Values.kafkaTopics.enabled) }}
{{- end }}
{{- $_ := set $c "bus" $bus }}
{{- /* Every role uses the store too (the edge's session directory, router and worker messages). */}}
{{- $store := $c.store | default dict }}
{{- /* The schema is the migration Job's (templates/migrations.yaml): the roles only check it. */}}
{{- $_ := set $store "migrate" (not .Values.migrations.enabled) }}
{{- if .Values.scyllaAuth.enabled }}
{{- $_ := set $store "auth" (dict "username" .Values.scyllaAuth.username "password_file" (printf "%s/password" (include "smsc.scyllaAuthDir" .))) }}
{{- end }}
{{- if .Values.scyllaTls.enabled }}
{{- $t := dict "ca" (printf "%s/ca.crt" (include "smsc.scyllaCaDir" .)) }}
{{- if .Values.scyllaTls.clientSecret }}
{{- $_ := set $t "cert" (printf "%s/tls.crt" (include "smsc.scyllaClientDir" .)) }}
{{- $_ := set $t "key" (printf "%s/tls.key" (include "smsc.scyllaClientDir" .)) }}
{{- end }}
{{- $_ := set $store "tls" $t }}
{{- end }}
{{- $_ := set $c "store" $store }}
{{- toYaml $c }}
{{- end }}

{{/*
Topic suffix of a retry tier exactly as RetryConfig::tier_name computes it
(services/bus/src/config.rs): whole hours "2h", whole minutes "1m", else seconds.
Input: "90s", "1m", "2h" (the schema allows <n>s|m|h only).
*/}}
{{- define "smsc.tierName" -}}
{{- $n := regexFind "^[0-9]+" . | int }}
{{- $unit := trimPrefix (toString $n) . }}
{{- $s := $n }}
{{- if eq $unit "m" }}{{ $s = mul $n 60 }}{{ else if eq $unit "h" }}{{ $s = mul $n 3600 }}{{ end }}
{{- if eq (mod $s 3600) 0 }}{{ printf "%dh" (div $s 3600) }}
{{- else if eq (mod $s 60) 0 }}{{ printf "%dm" (div $s 60) }}
{{- else }}{{ printf "%ds" $s }}
{{- end }}
{{- end }}

{{/* A retry tier's delay in seconds ("1m" -> 60). */}}
{{- define "smsc.tierSeconds" -}}
{{- $n := regexFind "^[0-9]+" . | int }}
{{- $unit := trimPrefix (toString $n) . }}
{{- if eq $unit "m" }}{{ mul $n 60 }}{{ else if eq $unit "h" }}{{ mul $n 3600 }}{{ else }}{{ $n }}{{ end }}
{{- end }}

{{/* Label selector the alert rules use for this release's series. */}}
{{- define "smsc.ruleSelector" -}}
{{- .Values.prometheusRule.selector | default (printf "namespace=%q, job=%q" .Release.Namespace (printf "%s-metrics" (include "smsc.fullname" .))) }}
{{- end }}

{{/*
topologySpreadConstraints of a role: include "smsc.topologySpread" (list $ "edge")
*/}}
{{- define "smsc.topologySpread" -}}
{{- $ := index . 0 }}
{{- $role := index . 1 }}
{{- $t := $.Values.topologySpread }}
{{- range $t.topologyKeys }}
- maxSkew: {{ $t.maxSkew }}
  topologyKey: {{ . }}
  whenUnsatisfiable: {{ $t.whenUnsatisfiable }}
  labelSelector:
    matchLabels:
      {{- include "smsc.roleSelectorLabels" (list $ $role) | nindent 6 }}
  matchLabelKeys:
    - pod-template-hash
{{- end }}
{{- end }}

{{/*
The pod spec shared by every role. Call with (dict "root" $ "role" "edge" "values" .Values.edge).
The role-specific parts (ports, env, volumes) are selected inside by role.
*/}}
{{/*
The ScyllaDB files of a pod (the roles', or the migration Job's with credentials of its
own): the role's password (store.auth, read at start-up) from Secret AUTH (none when
empty), with scyllaTls the CA the nodes' certificates chain to, and the client
certificate from Secret CLIENT for nodes that require one (none when empty).
  smsc.scyllaMounts:  (list $ AUTH CLIENT)
  smsc.scyllaVolumes: (list $ AUTH AUTH_KEY CLIENT)
*/}}
{{- define "smsc.scyllaMounts" -}}
{{- $ := index . 0 }}
{{- if index . 1 }}
- name: scylla-auth
  mountPath: {{ include "smsc.scyllaAuthDir" $ }}
  readOnly: true
{{- end }}
{{- if $.Values.scyllaTls.enabled }}
- name: scylla-ca
  mountPath: {{ include "smsc.scyllaCaDir" $ }}
  readOnly: true
{{- if index . 2 }}
- name: scylla-client
  mountPath: {{ include "smsc.scyllaClientDir" $ }}
  readOnly: true
{{- end }}
{{- end }}
{{- end }}
{{- define "smsc.scyllaVolumes" -}}
{{- $ := index . 0 }}
{{- if index . 1 }}
# store.auth: the password of the ScyllaDB role scyllaAuth.username, read at start-up.
- name: scylla-auth
  secret:
    secretName: {{ index . 1 }}
    items:
      - key: {{ index . 2 }}
        path: password
{{- end }}
{{- if $.Values.scyllaTls.enabled }}
# store.tls: the CA the ScyllaDB nodes' certificates chain to.
- name: scylla-ca
  secret:
    secretName: {{ $.Values.scyllaTls.caSecret }}
    items:
      - key: {{ $.Values.scyllaTls.caKey }}
        path: ca.crt
{{- if index . 3 }}
# store.tls: the client certificate for nodes that require one (require_client_auth).
- name: scylla-client
  secret:
    secretName: {{ index . 3 }}
    items:
      - key: {{ $.Values.scyllaTls.certKey }}
        path: tls.crt
      - key: {{ $.Values.scyllaTls.keyKey }}
        path: tls.key
{{- end }}
{{- end }}
{{- end }}

{{- define "smsc.podTemplate" -}}
{{- $ := .root }}
{{- $role := .role }}
{{- $v := .values }}
{{- $edge := eq $role "edge" }}
{{- $tls := and $edge $.Values.edge.tls.enabled }}
{{- $accountsFile := not (include "smsc.accountsCrd" $) }}
{{- $grpcTls := $.Values.grpcTls.enabled }}
{{- $kafkaTls := $.Values.kafkaTls.enabled }}
{{- $kafkaClient := and $kafkaTls $.Values.kafkaTls.clientSecret }}
{{- $scyllaAuth := $.Values.scyllaAuth.enabled }}
{{- $kubeApi := include "smsc.kubeApi" (list $ $role) }}
metadata:
  labels:
    {{- include "smsc.roleLabels" (list $ $role) | nindent 4 }}
    {{- with $.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # A config change restarts the pods (only the accounts file is reloaded live: the
    # accounts Secret is deliberately not part of this checksum).
    checksum/config: {{ include "smsc.config" $ | sha256sum }}
    {{- if and $tls (not $.Values.edge.tls.existingSecret) }}
    checksum/tls: {{ printf "%s%s" $.Values.edge.tls.cert $.Values.edge.tls.key | sha256sum }}
    {{- end }}
    {{- with $.Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "smsc.serviceAccountName" $ }}
  {{- if $kubeApi }}
  {{- $calls := list }}
  {{- if and $edge (include "smsc.peersService" $) }}{{ $calls = append $calls "EndpointSlices" }}{{ end }}
  {{- if include "smsc.accountsCrd" $ }}{{ $calls = append $calls "SmppAccounts and Secrets" }}{{ end }}
  {{- if and $edge (include "smsc.podDeletionCost" $) }}{{ $calls = append $calls "its own Pod's deletion cost" }}{{ end }}
  # This role calls the Kubernetes API ({{ join ", " $calls }}): the Role {{ include "smsc.fullname" $ }}.
  automountServiceAccountToken: true
  {{- else }}
  automountServiceAccountToken: {{ $.Values.serviceAccount.automountToken }}
  {{- end }}
  # Kubernetes would otherwise inject SMSC_SMPP_PORT=tcp://... style variables for
  # Services named smsc-*, and every SMSC_ variable is read as a config key: the binary
  # would refuse to start (unknown key).
  enableServiceLinks: false
  {{- with $.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $.Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ if $edge }}{{ include "smsc.edgeGraceSeconds" $ }}{{ else }}{{ $v.terminationGracePeriodSeconds }}{{ end }}
  securityContext:
    {{- toYaml $.Values.podSecurityContext | nindent 4 }}
  {{- if $.Values.topologySpread.enabled }}
  topologySpreadConstraints:
    {{- include "smsc.topologySpread" (list $ $role) | trim | nindent 4 }}
  {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: smsc
      image: {{ include "smsc.image" $ }}
      imagePullPolicy: {{ $.Values.image.pullPolicy }}
      args:
        - {{ $role }}
        - --config
        - {{ include "smsc.configPath" $ }}
        {{- if $.Values.log.json }}
        - --log-json
        {{- end }}
      env:
        # node_id: the binary takes $POD_NAME when the config leaves node_id empty.
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: POD_NAMESPACE
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        {{- if $edge }}
        - name: POD_IP
          valueFrom:
            fieldRef:
              fieldPath: status.podIP
        # Workers reach the edge that owns a session at this address (session directory).
        - name: SMSC_EDGE__GRPC_ADVERTISE
          value: "$(POD_IP):{{ $.Values.ports.grpc }}"
        {{- end }}
        - name: RUST_LOG
          value: {{ $.Values.log.level | quote }}
        {{- with $.Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with $v.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        {{- if and $edge $.Values.edge.plaintext }}
        - name: smpp
          containerPort: {{ $.Values.ports.smpp }}
          protocol: TCP
        {{- end }}
        {{- if $tls }}
        - name: smpp-tls
          containerPort: {{ $.Values.ports.smppTls }}
          protocol: TCP
        {{- end }}
        {{- if and $edge $.Values.edge.http.enabled }}
        - name: http
          containerPort: {{ $.Values.ports.http }}
          protocol: TCP
        {{- end }}
        - name: grpc
          containerPort: {{ $.Values.ports.grpc }}
          protocol: TCP
        - name: admin
          containerPort: {{ $.Values.ports.admin }}
          protocol: TCP
      # The admin port answers only once the bus and the store are connected (and the
      # ScyllaDB schema is applied): the startup probe allows for that.
      startupProbe:
        httpGet:
          path: /live
          port: admin
        periodSeconds: {{ $.Values.probes.startup.periodSeconds }}
        failureThreshold: {{ $.Values.probes.startup.failureThreshold }}
      livenessProbe:
        httpGet:
          path: /live
          port: admin
        periodSeconds: {{ $.Values.probes.liveness.periodSeconds }}
        timeoutSeconds: {{ $.Values.probes.liveness.timeoutSeconds }}
        failureThreshold: {{ $.Values.probes.liveness.failureThreshold }}
      # 503 until the bus is ready, and from the start of a drain (SIGTERM).
      readinessProbe:
        httpGet:
          path: /ready
          port: admin
        periodSeconds: {{ $.Values.probes.readiness.periodSeconds }}
        timeoutSeconds: {{ $.Values.probes.readiness.timeoutSeconds }}
        failureThreshold: {{ $.Values.probes.readiness.failureThreshold }}
      {{- if $edge }}
      lifecycle:
        preStop:
          # Let the Service and load balancers take this pod out of rotation before
          # SIGTERM makes the edge stop accepting and unbind its sessions.
          exec:
            command: ["sleep", "{{ $.Values.edge.preStopSleepSeconds }}"]
      {{- end }}
      resources:
        {{- toYaml $v.resources | nindent 8 }}
      securityContext:
        {{- toYaml $.Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/smsc/config.yaml
          subPath: config.yaml
          readOnly: true
        {{- if $accountsFile }}
        # A directory mount (no subPath), so the kubelet's updates reach the running
        # pods and the accounts watcher reloads them without dropping sessions.
        - name: accounts
          mountPath: /etc/smsc/accounts
          readOnly: true
        {{- end }}
        {{- if $tls }}
        - name: tls
          mountPath: {{ include "smsc.tlsDir" $ }}
          readOnly: true
        {{- end }}
        {{- if $grpcTls }}
        - name: grpc-tls
          mountPath: {{ include "smsc.grpcTlsDir" $ }}
          readOnly: true
        {{- end }}
        {{- if $kafkaTls }}
        - name: kafka-ca
          mountPath: {{ include "smsc.kafkaCaDir" $ }}
          readOnly: true
        {{- end }}
        {{- if $kafkaClient }}
        - name: kafka-client
          mountPath: {{ include "smsc.kafkaClientDir" $ }}
          readOnly: true
        {{- end }}
        {{- with include "smsc.scyllaMounts" (list $ (ternary $.Values.scyllaAuth.existingSecret "" $scyllaAuth) $.Values.scyllaTls.clientSecret) }}{{ . | trim | nindent 8 }}{{- end }}
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: config
      configMap:
        name: {{ include "smsc.fullname" $ }}-config
    {{- if $accountsFile }}
    - name: accounts
      secret:
        secretName: {{ include "smsc.accountsSecretName" $ }}
        items:
          - key: accounts.yaml
            path: accounts.yaml
    {{- end }}
    {{- if $tls }}
    - name: tls
      secret:
        secretName: {{ include "smsc.tlsSecretName" $ }}
        items:
          - key: tls.crt
            path: tls.crt
          - key: tls.key
            path: tls.key
    {{- end }}
    {{- if $grpcTls }}
    - name: grpc-tls
      secret:
        secretName: {{ $.Values.grpcTls.existingSecret }}
        items:
          - key: ca.crt
            path: ca.crt
          - key: tls.crt
            path: tls.crt
          - key: tls.key
            path: tls.key
    {{- end }}
    {{- if $kafkaTls }}
    # bus.tls: the CA the brokers' certificates chain to (Strimzi: <cluster>-cluster-ca-cert).
    - name: kafka-ca
      secret:
        secretName: {{ $.Values.kafkaTls.caSecret }}
        items:
          - key: {{ $.Values.kafkaTls.caKey }}
            path: ca.crt
    {{- end }}
    {{- if $kafkaClient }}
    # bus.tls: the client certificate for brokers that require one (Strimzi: a KafkaUser's Secret).
    - name: kafka-client
      secret:
        secretName: {{ $.Values.kafkaTls.clientSecret }}
        items:
          - key: {{ $.Values.kafkaTls.certKey }}
            path: user.crt
          - key: {{ $.Values.kafkaTls.keyKey }}
            path: user.key
    {{- end }}
    {{- with include "smsc.scyllaVolumes" (list $ (ternary $.Values.scyllaAuth.existingSecret "" $scyllaAuth) $.Values.scyllaAuth.passwordKey $.Values.scyllaTls.clientSecret) }}{{ . | trim | nindent 4 }}{{- end }}
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
{{- end }}
