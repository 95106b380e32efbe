//! The custom resources SREs declare: a `TradingCluster` (the nodes), `Strategy`
//! instances that run on it, and a `RiskPolicy` with its firm-wide limits. The CRDs'
//! OpenAPI schemas are generated from these types, so that the API server refuses a
//! manifest of the wrong shape before the operator sees it. What a schema cannot check
//! (a strategy kind's parameters, decimal limits against the instrument) the operator
//! checks with the same configuration code as `hft config check`, and reports in the
//! resource's `Invalid` condition.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every hft resource.
pub const GROUP: &str = "hft.dev";

/// A free-form object (strategy parameters): kept as given, checked by the operator.
fn free_form(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// A set of hft nodes: a StatefulSet whose pods are trading nodes and Raft ledger
/// members (pod ordinal + 1 is the node and member id).
// kube's `printcolumn(...)` repeats `type_ = ...` once per column, which clippy takes
// for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "hft.dev",
    version = "v1alpha1",
    kind = "TradingCluster",
    namespaced,
    status = "TradingClusterStatus",
    shortname = "htc",
    category = "hft",
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TradingClusterSpec {
    /// Nodes, each a ledger member. 3 or 5 keep a Raft majority through one or two
    /// losses; scaling down removes members from the ledger before their pods go.
    #[schemars(range(min = 1, max = 9))]
    pub replicas: i32,
    /// The hft container image.
    #[schemars(length(min = 1))]
    pub image: String,
    /// When to pull the image.
    #[serde(default)]
    pub image_pull_policy: PullPolicy,
    /// CPU and memory of each node's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The etcd that holds placement, configuration, tokens and the audit trail.
    pub etcd: EtcdSpec,
    /// The one venue the nodes trade with (an `hft venue` or a venue gateway); its
    /// fills are booked under the venue name `sim`. Give this or `venues`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venue: Option<VenueSpec>,
    /// Several venues, by name: every node links to each, and a Strategy trades
    /// through the one its `venue` names (the first when it names none). The name is
    /// the venue its fills are booked under and the scope of `hft kill --venue`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub venues: Vec<NamedVenue>,
    /// Secrets the nodes need.
    pub secrets: SecretsSpec,
    /// TLS between ledger members, from a Secret with `tls.crt`, `tls.key`, `ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// Each node's persistent volume (its ledger WAL and snapshots).
    #[serde(default)]
    pub storage: StorageSpec,
    /// Prometheus metrics.
    #[serde(default)]
    pub metrics: MetricsSpec,
    /// The etcd lease of each node, seconds: a node that cannot renew it in two
    /// thirds of this fences itself. Several times etcd's election timeout.
    #[serde(default = "default_lease")]
    #[schemars(range(min = 2, max = 60))]
    pub lease_ttl_seconds: i32,
    /// A configuration overlay (TOML, the schema of `hft config check`) for what the
    /// custom resources do not cover: instruments, the simulator, telemetry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_overlay: Option<String>,
}

fn default_lease() -> i32 {
    2
}

/// Image pull policy.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    /// Always pull.
    Always,
    /// Pull if the node lacks it.
    #[default]
    IfNotPresent,
    /// Never pull.
    Never,
}

impl PullPolicy {
    /// As Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Where etcd is: an existing one (`endpoints`) or one the operator runs (`managed`);
/// exactly one of the two.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EtcdSpec {
    /// Client URLs of an existing etcd (`http://etcd-0.etcd:2379`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 9))]
    pub endpoints: Vec<String>,
    /// An etcd the operator runs for this cluster, as a StatefulSet of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedEtcd>,
}

impl EtcdSpec {
    /// Why the spec names no etcd or two, if it does.
    pub fn problem(&self) -> Option<String> {
        match (self.endpoints.is_empty(), self.managed.is_some()) {
            (true, false) => Some(
                "spec.etcd: give the endpoints of an existing etcd, or `managed: {}` for one the operator runs".into(),
            ),
            (false, true) => Some(
                "spec.etcd: endpoints and managed are both set; keep one".into(),
            ),
            _ => None,
        }
    }
}

/// An etcd run by the operator: its members are fixed when it is created (etcd's own
/// membership changes are not automated), so `replicas` cannot change afterwards.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedEtcd {
    /// Members: 1 (testing), 3 or 5 (an even count adds no fault tolerance).
    #[serde(default = "ManagedEtcd::default_replicas")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: i32,
    /// The etcd image (3.5 or later).
    #[serde(default = "ManagedEtcd::default_image")]
    #[schemars(length(min = 1))]
    pub image: String,
    /// Each member's volume.
    #[serde(default = "ManagedEtcd::default_storage")]
    pub storage: StorageSpec,
    /// CPU and memory of each member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl ManagedEtcd {
    fn default_replicas() -> i32 {
        3
    }
    fn default_image() -> String {
        "quay.io/coreos/etcd:v3.5.17".into()
    }
    fn default_storage() -> StorageSpec {
        StorageSpec {
            // etcd's own backend quota is 2 GiB, plus its WAL and snapshots.
            size: "8Gi".into(),
            storage_class_name: None,
        }
    }
}

/// The venue link.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VenueSpec {
    /// `host:port` of the venue's order and market-data link.
    #[schemars(length(min = 3))]
    pub address: String,
}

/// A named venue link.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamedVenue {
    /// The venue's name in the ledger and in Strategies' `venue`.
    #[schemars(regex(pattern = r"^[a-z0-9][-_a-z0-9]{0,31}$"))]
    pub name: String,
    /// `host:port` of the venue's order and market-data link.
    #[schemars(length(min = 3))]
    pub address: String,
}

impl TradingClusterSpec {
    /// The venue links as `hft node --venue` takes them (`(None, address)` for the one
    /// unnamed link), or why the spec names none, or names one twice.
    pub fn venue_links(&self) -> Result<Vec<(Option<String>, String)>, String> {
        match (&self.venue, self.venues.is_empty()) {
            (Some(v), true) => Ok(vec![(None, v.address.clone())]),
            (None, false) => {
                for (i, v) in self.venues.iter().enumerate() {
                    if self.venues[..i].iter().any(|w| w.name == v.name) {
                        return Err(format!("spec.venues: {:?} is named twice", v.name));
                    }
                }
                Ok(self
                    .venues
                    .iter()
                    .map(|v| (Some(v.name.clone()), v.address.clone()))
                    .collect())
            }
            (None, true) => Err(
                "spec: give `venue` (one venue link) or `venues` (named links) for the nodes to trade through".into(),
            ),
            (Some(_), false) => Err("spec: `venue` and `venues` are both set; keep one".into()),
        }
    }

    /// The names Strategies may give as `venue`: the named links, or `sim` for the one
    /// unnamed link (as the nodes name it).
    pub fn venue_names(&self) -> Vec<String> {
        match self.venue_links() {
            Ok(links) => links
                .into_iter()
                .map(|(n, _)| n.unwrap_or_else(|| "sim".into()))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// A key of a Secret in the cluster's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in the Secret.
    #[schemars(length(min = 1))]
    pub key: String,
}

/// Secrets of a cluster.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretsSpec {
    /// The shared secret nodes authenticate each other's control channels with (at
    /// least 32 bytes).
    pub cluster_secret: SecretKeyRef,
    /// An admin API token (`hft token create --role admin`) the operator reads status
    /// and disables strategies with.
    pub admin_token: SecretKeyRef,
}

/// Ledger TLS.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Secret with `tls.crt`, `tls.key` and `ca.crt`; the certificate must name every
    /// member's DNS name (`*.<cluster>-nodes.<namespace>.svc`).
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// Volume of each node.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size (`10Gi`).
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    pub size: String,
    /// Storage class (the default class when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: "10Gi".into(),
            storage_class_name: None,
        }
    }
}

/// Metrics.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSpec {
    /// Serve Prometheus metrics.
    pub enabled: bool,
    /// Port of the metrics endpoint.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Create a ServiceMonitor when the Prometheus operator's CRD is installed.
    pub service_monitor: bool,
}

impl Default for MetricsSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            port: 9100,
            service_monitor: true,
        }
    }
}

/// What the operator observed of a cluster.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TradingClusterStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods of the StatefulSet.
    #[serde(default)]
    pub replicas: i32,
    /// Pods ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// etcd revision of the configuration the operator last wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_revision: Option<i64>,
    /// Members that founded the ledger (the replicas at creation); pods above them
    /// join, and the operator adds them as learners and promotes them once ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub founders: Option<i32>,
    /// Voting ledger members as the operator last saw them (after a scale-down or a
    /// promotion): fewer than `replicas` means members are to be added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_members: Option<i32>,
    /// `Ready`, `Progressing`, `Degraded`, `Invalid`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// One strategy instance on a cluster.
// kube's `printcolumn(...)` repeats `type_ = ...` once per column, which clippy takes
// for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "hft.dev",
    version = "v1alpha1",
    kind = "Strategy",
    namespaced,
    status = "StrategyStatus",
    shortname = "hst",
    category = "hft",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "Kind", type_ = "string", json_path = ".spec.kind"),
    printcolumn(name = "Instrument", type_ = "string", json_path = ".spec.instrument"),
    printcolumn(name = "Enabled", type_ = "boolean", json_path = ".spec.enabled"),
    printcolumn(name = "Node", type_ = "integer", json_path = ".status.node"),
    printcolumn(name = "Position", type_ = "string", json_path = ".status.position"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct StrategySpec {
    /// The TradingCluster (same namespace) it runs on.
    #[schemars(length(min = 1, max = 253))]
    pub cluster: String,
    /// Strategy kind, as in the configuration: `market_making`, `touch`, `cross_arb`,
    /// `triangular`, `pairs`, `ml`. Checked by the operator, so that a kind this
    /// version does not know is reported on the resource rather than refused unseen.
    #[schemars(length(min = 1))]
    pub kind: String,
    /// Symbol of the instrument it trades.
    #[schemars(length(min = 1))]
    pub instrument: String,
    /// The kind's parameters (the keys of its `[strategies.<kind>]` table).
    #[serde(default)]
    #[schemars(schema_with = "free_form")]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Risk limits; absent ones take the configuration's defaults.
    #[serde(default)]
    pub risk: StrategyRisk,
    /// Whether it trades. Disabling one stops its engine (orders cancelled) and keeps
    /// its configuration.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A/B variants: each runs as its own instance `<name>-<variant>` with its
    /// parameters over the base ones, and `weight` percent of the base position and
    /// loss limits. Empty: one instance named after the resource.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub variants: Vec<Variant>,
    /// Where its engines may run.
    #[serde(default, skip_serializing_if = "Placement::is_any")]
    pub placement: Placement,
    /// The cluster venue (a name in its `venues`) it trades through; none: the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9][-_a-z0-9]{0,31}$"))]
    pub venue: Option<String>,
}

/// Placement hints of a strategy.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// Nodes (ids: pod ordinal + 1) its engines may run on; empty: any. Placement never
    /// runs them elsewhere, and leaves them unplaced while none of these is up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 9), inner(range(min = 1, max = 9)))]
    pub nodes: Vec<u32>,
}

impl Placement {
    fn is_any(&self) -> bool {
        self.nodes.is_empty()
    }
}

fn yes() -> bool {
    true
}

/// A/B variant of a strategy.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Variant {
    /// Suffix of the instance name.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$"))]
    pub name: String,
    /// Share of the base position and daily-loss limits, percent (0 disables it).
    #[schemars(range(min = 0, max = 100))]
    pub weight: i32,
    /// Parameters that differ from the base ones.
    #[serde(default)]
    #[schemars(schema_with = "free_form")]
    pub params: BTreeMap<String, serde_json::Value>,
}

/// A strategy's limits, as decimal strings at the instrument's scale (quote currency
/// for money), like the configuration's `[strategies.risk]`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StrategyRisk {
    /// Largest quantity of one order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_order_qty: Option<String>,
    /// Largest notional of one order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_order_notional: Option<String>,
    /// Limit prices further than this from mid are refused, basis points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub price_band_bps: Option<i64>,
    /// Largest absolute position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_position: Option<String>,
    /// Order messages per rolling second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub max_orders_per_sec: Option<i64>,
    /// Open orders at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_open_orders: Option<i64>,
    /// Loss that trips the strategy's circuit breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_daily_loss: Option<String>,
}

/// What the cluster reports of a strategy.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StrategyStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The node running its engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<i64>,
    /// Its net position, as the ledger books it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    /// `Ready`, `Progressing`, `Degraded`, `Invalid`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// Firm-wide limits of a cluster.
// kube's `printcolumn(...)` repeats `type_ = ...` once per column, which clippy takes
// for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "hft.dev",
    version = "v1alpha1",
    kind = "RiskPolicy",
    namespaced,
    status = "RiskPolicyStatus",
    shortname = "hrp",
    category = "hft",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "Kill", type_ = "boolean", json_path = ".spec.killSwitch"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RiskPolicySpec {
    /// The TradingCluster (same namespace) it governs; one policy per cluster.
    #[schemars(length(min = 1, max = 253))]
    pub cluster: String,
    /// Each node's limit on the sum of |net position| × mark price, quote currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_gross_notional: Option<String>,
    /// Engaged: nothing trades until it is released.
    #[serde(default)]
    pub kill_switch: bool,
    /// Limits every strategy of the cluster gets unless its own say otherwise.
    #[serde(default)]
    pub strategy_defaults: StrategyRisk,
}

/// What the operator observed of a policy.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RiskPolicyStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Invalid`, `Degraded`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The kill switch as this policy last asked the cluster's ledger to set it (in
    /// force on every node at once, not at their next start); absent until the policy
    /// first engages it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_switch_pushed: Option<KillSwitchPush>,
}

/// One change of the global kill switch asked of a cluster by its RiskPolicy.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KillSwitchPush {
    /// Engaged or released.
    pub engaged: bool,
    /// When the operator first saw the policy ask for it, ns since the epoch: the time
    /// the ledger orders kill switch changes by, the same on every retry, so a change
    /// made later by someone else (`hft kill`) is never undone by this one.
    pub at_ns: u64,
    /// The ledger took it (or a later change was already in force); false while the
    /// operator still retries.
    pub done: bool,
    /// What the ledger answered.
    #[serde(default)]
    pub message: String,
    /// For a release: the time of the policy's engage it releases. The release is sent
    /// only while that engage is still the switch's last change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub releases: Option<u64>,
}
