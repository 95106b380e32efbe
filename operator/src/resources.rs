//! The Kubernetes objects of a TradingCluster, built from its spec alone (pure, so that
//! tests compare them field by field): a StatefulSet of nodes, a headless Service for
//! their stable names, a client Service for the admin API, a ConfigMap, a
//! PodDisruptionBudget and, with the Prometheus operator, a ServiceMonitor.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec, Volume,
    VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::crd::TradingCluster;

/// Ledger peer port.
pub const LEDGER_PORT: i32 = 7100;
/// Control channel port.
pub const CONTROL_PORT: i32 = 7200;
/// Admin API port.
pub const ADMIN_PORT: i32 = 7300;
/// Where each node's volume is mounted.
const DATA: &str = "/var/lib/hft";

/// Labels every object of a cluster carries; the StatefulSet selects on them.
pub fn labels(tc: &TradingCluster) -> BTreeMap<String, String> {
    component_labels(tc, "node")
}

fn component_labels(tc: &TradingCluster, component: &str) -> BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name", "hft".to_owned()),
        ("app.kubernetes.io/instance", tc.name_any()),
        ("app.kubernetes.io/managed-by", "hft-operator".to_owned()),
        ("app.kubernetes.io/component", component.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// etcd's client and peer ports.
const ETCD_CLIENT_PORT: i32 = 2379;
const ETCD_PEER_PORT: i32 = 2380;

/// Name of a managed etcd's StatefulSet and headless Service.
pub fn etcd_name(tc: &TradingCluster) -> String {
    format!("{}-etcd", tc.name_any())
}

/// DNS name of managed etcd member `i` (its pod's, under the headless Service).
fn etcd_host(tc: &TradingCluster, i: i32) -> String {
    let ns = tc.namespace().unwrap_or_else(|| "default".into());
    format!("{0}-{i}.{0}.{ns}.svc", etcd_name(tc))
}

/// The etcd client URLs the nodes and the operator use: the managed members' stable
/// names, or the endpoints given.
pub fn etcd_endpoints(tc: &TradingCluster) -> Vec<String> {
    match &tc.spec.etcd.managed {
        Some(m) => (0..m.replicas)
            .map(|i| format!("http://{}:{ETCD_CLIENT_PORT}", etcd_host(tc, i)))
            .collect(),
        None => tc.spec.etcd.endpoints.clone(),
    }
}

/// The headless Service of a managed etcd: its members' stable names and peer traffic
/// (not-ready addresses published: members must find each other to become ready).
pub fn etcd_service(tc: &TradingCluster) -> Service {
    Service {
        metadata: ObjectMeta {
            labels: Some(component_labels(tc, "etcd")),
            ..meta(tc, etcd_name(tc))
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(component_labels(tc, "etcd")),
            ports: Some(vec![
                port("client", ETCD_CLIENT_PORT),
                port("peer", ETCD_PEER_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The PodDisruptionBudget of a managed etcd: one member down at a time keeps its
/// quorum.
pub fn etcd_pdb(tc: &TradingCluster) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ObjectMeta {
            labels: Some(component_labels(tc, "etcd")),
            ..meta(tc, etcd_name(tc))
        },
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(component_labels(tc, "etcd")),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// The StatefulSet of a managed etcd with `replicas` members, all named in its
/// initial cluster; `None` when the cluster uses an existing etcd.
pub fn etcd_stateful_set(tc: &TradingCluster, replicas: i32) -> Option<StatefulSet> {
    let m = tc.spec.etcd.managed.as_ref()?;
    let name = etcd_name(tc);
    let ns = tc.namespace().unwrap_or_else(|| "default".into());
    let me = format!("$(POD_NAME).{name}.{ns}.svc");
    let initial = (0..replicas)
        .map(|i| format!("{name}-{i}=http://{}:{ETCD_PEER_PORT}", etcd_host(tc, i)))
        .collect::<Vec<_>>()
        .join(",");
    let args = vec![
        "--name=$(POD_NAME)".to_owned(),
        "--data-dir=/var/lib/etcd/data".to_owned(),
        format!("--listen-client-urls=http://0.0.0.0:{ETCD_CLIENT_PORT}"),
        format!("--advertise-client-urls=http://{me}:{ETCD_CLIENT_PORT}"),
        format!("--listen-peer-urls=http://0.0.0.0:{ETCD_PEER_PORT}"),
        format!("--initial-advertise-peer-urls=http://{me}:{ETCD_PEER_PORT}"),
        format!("--initial-cluster={initial}"),
        "--initial-cluster-state=new".to_owned(),
        format!("--initial-cluster-token={name}"),
        // Old revisions go after an hour: placement and leases write often.
        "--auto-compaction-mode=periodic".to_owned(),
        "--auto-compaction-retention=1h".to_owned(),
    ];
    let container = Container {
        name: "etcd".into(),
        image: Some(m.image.clone()),
        command: Some(vec!["etcd".into()]),
        args: Some(args),
        env: Some(vec![pod_name_env()]),
        ports: Some(vec![
            container_port("client", ETCD_CLIENT_PORT),
            container_port("peer", ETCD_PEER_PORT),
        ]),
        resources: m.resources.clone(),
        volume_mounts: Some(vec![VolumeMount {
            name: "data".into(),
            mount_path: "/var/lib/etcd".into(),
            ..VolumeMount::default()
        }]),
        // Ready once the member is part of a cluster with a leader.
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/health".into()),
                port: IntOrString::Int(ETCD_CLIENT_PORT),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(5),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
        security_context: Some(locked_down()),
        ..Container::default()
    };
    Some(StatefulSet {
        metadata: ObjectMeta {
            labels: Some(component_labels(tc, "etcd")),
            ..meta(tc, name.clone())
        },
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(name),
            selector: LabelSelector {
                match_labels: Some(component_labels(tc, "etcd")),
                ..LabelSelector::default()
            },
            // Every member at once: none is ready before a majority runs.
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: None,
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(component_labels(tc, "etcd")),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    security_context: Some(non_root_pod()),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![data_claim(&m.storage)]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    })
}

/// The volume claim template `data` of `storage`.
fn data_claim(storage: &crate::crd::StorageSpec) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(
                    [("storage".to_owned(), Quantity(storage.size.clone()))]
                        .into_iter()
                        .collect(),
                ),
                ..VolumeResourceRequirements::default()
            }),
            storage_class_name: storage.storage_class_name.clone(),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// Pods run as an unprivileged user, their volumes writable by its group.
fn non_root_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_user: Some(65532),
        run_as_group: Some(65532),
        fs_group: Some(65532),
        run_as_non_root: Some(true),
        ..PodSecurityContext::default()
    }
}

/// Containers get no privilege, no capability and a read-only root filesystem.
fn locked_down() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(k8s_openapi::api::core::v1::Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..SecurityContext::default()
    }
}

/// `POD_NAME` from the pod's own name (the downward API).
fn pod_name_env() -> EnvVar {
    EnvVar {
        name: "POD_NAME".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// Name of the headless Service (the nodes' DNS names live under it).
pub fn nodes_service(tc: &TradingCluster) -> String {
    format!("{}-nodes", tc.name_any())
}

/// Name of the client Service (the admin API of any ready node).
pub fn client_service(tc: &TradingCluster) -> String {
    format!("{}-admin", tc.name_any())
}

/// The admin API URL the operator calls.
pub fn admin_url(tc: &TradingCluster) -> String {
    format!(
        "http://{}.{}.svc:{ADMIN_PORT}",
        client_service(tc),
        tc.namespace().unwrap_or_else(|| "default".into())
    )
}

/// Metadata of an object owned by the cluster (deleted with it).
fn meta(tc: &TradingCluster, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: tc.namespace(),
        labels: Some(labels(tc)),
        owner_references: tc
            .controller_owner_ref(&())
            .map(|o: OwnerReference| vec![o]),
        ..ObjectMeta::default()
    }
}

/// Most nodes a TradingCluster has (the CRD's bound on `replicas`).
pub const MAX_NODES: i32 = 9;

/// The ledger address of member `id`: the stable DNS name of the StatefulSet's pod
/// with ordinal `id - 1`.
pub fn ledger_addr(tc: &TradingCluster, id: i32) -> String {
    let ns = tc.namespace().unwrap_or_else(|| "default".into());
    format!(
        "{}-{}.{}.{ns}.svc:{LEDGER_PORT}",
        tc.name_any(),
        id - 1,
        nodes_service(tc)
    )
}

/// Every member the cluster may grow to, `ID=HOST:PORT`, comma-separated. The pods'
/// arguments list them all, whatever `replicas` is now, so that a scale changes no pod
/// template and rolls no pod; members not in the ledger are never dialled.
pub fn ledger_peers(tc: &TradingCluster) -> String {
    (1..=MAX_NODES)
        .map(|id| format!("{id}={}", ledger_addr(tc, id)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The ConfigMap: a copy of the configuration the operator last wrote to etcd (where
/// the nodes read it from), for SREs to read with kubectl.
pub fn config_map(tc: &TradingCluster, config: &str, revision: Option<i64>) -> ConfigMap {
    let mut data = BTreeMap::new();
    data.insert("config.toml".into(), config.to_owned());
    data.insert(
        "etcd-revision".into(),
        revision.map_or_else(String::new, |r| r.to_string()),
    );
    ConfigMap {
        metadata: meta(tc, format!("{}-config", tc.name_any())),
        data: Some(data),
        ..ConfigMap::default()
    }
}

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(port)),
        ..ServicePort::default()
    }
}

/// The headless Service: DNS names for the pods, published before they are ready
/// (members must find each other to become ready).
pub fn headless_service(tc: &TradingCluster) -> Service {
    Service {
        metadata: meta(tc, nodes_service(tc)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(labels(tc)),
            ports: Some(vec![
                port("ledger", LEDGER_PORT),
                port("control", CONTROL_PORT),
                port("admin", ADMIN_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The client Service: the admin API (and metrics) of ready nodes.
pub fn client_service_object(tc: &TradingCluster) -> Service {
    let mut ports = vec![port("admin", ADMIN_PORT)];
    if tc.spec.metrics.enabled {
        ports.push(port("metrics", tc.spec.metrics.port));
    }
    Service {
        metadata: meta(tc, client_service(tc)),
        spec: Some(ServiceSpec {
            selector: Some(labels(tc)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The PodDisruptionBudget: never more than one node down by choice, so that the
/// ledger keeps its majority through drains and upgrades.
pub fn pdb(tc: &TradingCluster) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(tc, tc.name_any()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(labels(tc)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

/// The StatefulSet of nodes with `replicas` pods (the operator lowers it only after
/// the members above it have left the ledger). Members 1..=`founders` founded the
/// ledger; pods above them start as joiners, which the operator adds.
pub fn stateful_set(tc: &TradingCluster, replicas: i32, founders: i32) -> StatefulSet {
    let spec = &tc.spec;
    let name = tc.name_any();
    let ns = tc.namespace().unwrap_or_else(|| "default".into());
    let mut args = vec![
        "node".to_owned(),
        "--id=from-hostname".to_owned(),
        format!("--cluster={name}"),
        format!("--etcd={}", etcd_endpoints(tc).join(",")),
        format!("--ledger-peers={}", ledger_peers(tc)),
        format!("--founders={}", founders.max(1)),
        format!("--ledger-listen=0.0.0.0:{LEDGER_PORT}"),
        format!("--ledger-dir={DATA}/ledger"),
        format!("--admin=0.0.0.0:{ADMIN_PORT}"),
        format!("--control=0.0.0.0:{CONTROL_PORT}"),
        format!(
            "--control-advertise=$(POD_NAME).{}.{ns}.svc:{CONTROL_PORT}",
            nodes_service(tc)
        ),
    ];
    // The reconcile refuses a spec without valid venue links before it builds this.
    for (name, address) in spec.venue_links().unwrap_or_default() {
        args.push(match name {
            Some(name) => format!("--venue={name}={address}"),
            None => format!("--venue={address}"),
        });
    }
    args.extend([
        "--cluster-secret-file=/etc/hft/cluster-secret/secret".to_owned(),
        format!("--lease-ttl-s={}", spec.lease_ttl_seconds),
    ]);
    let mut mounts = vec![
        VolumeMount {
            name: "data".into(),
            mount_path: DATA.into(),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "cluster-secret".into(),
            mount_path: "/etc/hft/cluster-secret".into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
    ];
    let mut volumes = vec![Volume {
        name: "cluster-secret".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(spec.secrets.cluster_secret.name.clone()),
            items: Some(vec![k8s_openapi::api::core::v1::KeyToPath {
                key: spec.secrets.cluster_secret.key.clone(),
                path: "secret".into(),
                ..Default::default()
            }]),
            default_mode: Some(0o400),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }];

    if let Some(tls) = &spec.tls {
        args.extend([
            "--ledger-tls-cert=/etc/hft/tls/tls.crt".to_owned(),
            "--ledger-tls-key=/etc/hft/tls/tls.key".to_owned(),
            "--ledger-tls-ca=/etc/hft/tls/ca.crt".to_owned(),
        ]);
        mounts.push(VolumeMount {
            name: "tls".into(),
            mount_path: "/etc/hft/tls".into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(Volume {
            name: "tls".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(tls.secret_name.clone()),
                default_mode: Some(0o400),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    let mut ports = vec![
        container_port("ledger", LEDGER_PORT),
        container_port("control", CONTROL_PORT),
        container_port("admin", ADMIN_PORT),
    ];
    let mut envs = vec![pod_name_env()];
    if spec.metrics.enabled {
        ports.push(container_port("metrics", spec.metrics.port));
        envs.push(env(
            "HFT_TELEMETRY__METRICS_ADDR",
            &format!("0.0.0.0:{}", spec.metrics.port),
        ));
    }
    let probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(ADMIN_PORT),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    let container = Container {
        name: "hft".into(),
        image: Some(spec.image.clone()),
        image_pull_policy: Some(spec.image_pull_policy.as_str().into()),
        args: Some(args),
        env: Some(envs),
        ports: Some(ports),
        resources: spec.resources.clone(),
        volume_mounts: Some(mounts),
        // Ready once the member has caught up with the ledger: a rolling upgrade moves
        // to the next pod only then.
        readiness_probe: Some(probe("/healthz/ready", 2, 3)),
        liveness_probe: Some(probe("/healthz/live", 10, 6)),
        security_context: Some(locked_down()),
        ..Container::default()
    };
    StatefulSet {
        metadata: meta(tc, name.clone()),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(nodes_service(tc)),
            selector: LabelSelector {
                match_labels: Some(labels(tc)),
                ..LabelSelector::default()
            },
            // All pods at once: a member is ready only once the ledger has a leader,
            // which takes a majority of them running (ordered start would wait for the
            // first pod's readiness forever). Updates still roll one pod at a time.
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateStatefulSetStrategy {
                    max_unavailable: Some(IntOrString::Int(1)),
                    partition: Some(0),
                }),
            }),
            // A member's disk outlives a scale-down only until it left the ledger.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".into()),
                    when_scaled: Some("Delete".into()),
                },
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(tc)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(volumes),
                    // Time to cancel orders and book the last fills.
                    termination_grace_period_seconds: Some(60),
                    security_context: Some(non_root_pod()),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![data_claim(&spec.storage)]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

/// The ServiceMonitor (monitoring.coreos.com/v1), as JSON: the Prometheus operator's
/// types are not in k8s-openapi.
pub fn service_monitor(tc: &TradingCluster) -> serde_json::Value {
    let m = meta(tc, tc.name_any());
    serde_json::json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": m,
        "spec": {
            "selector": { "matchLabels": labels(tc) },
            "endpoints": [{ "port": "metrics", "interval": "15s" }]
        }
    })
}

/// A named container port.
fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        ..ContainerPort::default()
    }
}
