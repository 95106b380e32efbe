//! The `hft-operator` binary: `crd` prints the CRDs, `run` runs the controllers.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use futures::StreamExt;
use hft_operator::controller::{self, Context};
use hft_operator::crd::{RiskPolicy, Strategy, TradingCluster};
use hft_operator::leader::Elector;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, ResourceExt};

#[derive(Parser)]
#[command(
    name = "hft-operator",
    version,
    about = "Kubernetes operator for hft clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the CustomResourceDefinitions (YAML) for `kubectl apply -f -`.
    Crd,
    /// Exit 0 if the operator's metrics endpoint answers (a container HEALTHCHECK).
    Health {
        /// The endpoint to ask.
        #[arg(long, default_value = "http://127.0.0.1:9090/metrics")]
        url: String,
    },
    /// Run the controllers against the cluster of the in-cluster service account (or
    /// the current kubeconfig context).
    Run {
        /// Serve Prometheus metrics here.
        #[arg(long, default_value = "0.0.0.0:9090")]
        metrics: SocketAddr,
        /// Watch only this namespace (default: all).
        #[arg(long)]
        namespace: Option<String>,
        /// Log as JSON lines.
        #[arg(long)]
        json_logs: bool,
        /// Namespace of the Lease that replicas elect their leader on (the operator's
        /// own; the chart passes it through the downward API).
        #[arg(long, env = "POD_NAMESPACE")]
        leader_election_namespace: Option<String>,
        /// This replica's name in the election (the pod's name).
        #[arg(long, env = "POD_NAME")]
        identity: Option<String>,
        /// Name of the Lease the replicas elect their leader on: one per operator
        /// release in a namespace (the chart names it after the release).
        #[arg(long, default_value = "hft-operator")]
        lease: String,
        /// Run without leader election: only safe when a single replica can run.
        #[arg(long)]
        no_leader_election: bool,
    },
}

/// Where and as whom a replica takes part in the leader election.
struct Election {
    /// Namespace of the Lease.
    namespace: String,
    /// The Lease's name.
    lease: String,
    /// This replica.
    identity: String,
}

/// How long a leader's lease lasts without renewal before another replica takes over.
const LEASE_DURATION: std::time::Duration = std::time::Duration::from_secs(15);
/// How often a candidate tries, and a leader renews.
const LEASE_RETRY: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a leader keeps reconciling while its renewals fail: well inside the lease
/// duration, so it has stopped before anyone else may start.
const LEASE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Crd => match hft_operator::crds_yaml() {
            Ok(y) => {
                print!("{y}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot print the CRDs: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Health { url } => {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(std::time::Duration::from_secs(3)))
                .build()
                .into();
            match agent.get(&url).call() {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {url}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Run {
            metrics,
            namespace,
            json_logs,
            leader_election_namespace,
            identity,
            lease,
            no_leader_election,
        } => {
            hft_telemetry::init_tracing(json_logs, "info");
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: no async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let election = if no_leader_election {
                None
            } else {
                match leader_election_namespace {
                    Some(namespace) => Some(Election {
                        namespace,
                        lease,
                        identity: identity.unwrap_or_else(hostname),
                    }),
                    None => {
                        eprintln!(
                            "error: leader election needs the operator's namespace: pass --leader-election-namespace (or set POD_NAMESPACE), or --no-leader-election when one replica runs"
                        );
                        return ExitCode::from(2);
                    }
                }
            };
            match rt.block_on(run(metrics, namespace, election)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// This host's name, for the election when no pod name is given.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| format!("hft-operator-{}", std::process::id()))
}

async fn run(
    metrics: SocketAddr,
    namespace: Option<String>,
    election: Option<Election>,
) -> anyhow::Result<()> {
    hft_telemetry::install_metrics(Some(metrics))
        .map_err(|e| anyhow::anyhow!("metrics on {metrics}: {e}"))?;
    let client = Client::try_default().await.map_err(|e| {
        anyhow::anyhow!("no Kubernetes API (in-cluster service account or kubeconfig): {e}")
    })?;
    let elector = election.map(|el| {
        let e = Elector::new(
            Api::namespaced(client.clone(), &el.namespace),
            &el.lease,
            &el.identity,
            LEASE_DURATION,
        );
        (e, el.lease)
    });
    if let Some((e, lease)) = &elector {
        tracing::info!(%lease, "waiting to lead");
        e.acquire(LEASE_RETRY).await;
        tracing::info!(%lease, "leading");
    }
    let ns = namespace.as_deref();
    let ctx = Arc::new(Context {
        client: client.clone(),
        reporter: kube::runtime::events::Reporter {
            controller: controller::MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        },
        etcd: Default::default(),
        admin_url: None,
    });
    let wc = watcher::Config::default();
    // A cluster is reconciled again when its objects or its RiskPolicy change, or the
    // spec of one of its Strategies (not their status, which the operator writes as
    // positions move).
    let clusters = Controller::new(api::<TradingCluster>(&client, ns), wc.clone())
        .owns(api::<StatefulSet>(&client, ns), wc.clone())
        .owns(api::<Service>(&client, ns), wc.clone())
        .owns(api::<ConfigMap>(&client, ns), wc.clone())
        .watches_stream(
            controller::cluster_triggers(watcher(api::<Strategy>(&client, ns), wc.clone())),
            |s| {
                let ns = s.namespace()?;
                Some(ObjectRef::new(&s.spec.cluster).within(&ns))
            },
        )
        // Every RiskPolicy event, deletion included (it has no finalizer to mark it):
        // the operator writes its status only when its kill switch changes.
        .watches(api::<RiskPolicy>(&client, ns), wc.clone(), |p| {
            let ns = p.namespace()?;
            Some(ObjectRef::new(&p.spec.cluster).within(&ns))
        })
        .shutdown_on_signal()
        .run(
            controller::reconcile_cluster,
            controller::retry,
            ctx.clone(),
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "cluster reconcile");
            }
        });
    let strategies = Controller::new(api::<Strategy>(&client, ns), wc.clone())
        .shutdown_on_signal()
        .run(
            controller::reconcile_strategy,
            controller::retry,
            ctx.clone(),
        )
        .for_each(|_| async {});
    let policies = Controller::new(api::<RiskPolicy>(&client, ns), wc)
        .shutdown_on_signal()
        .run(controller::reconcile_policy, controller::retry, ctx)
        .for_each(|_| async {});
    tracing::info!(namespace = ns.unwrap_or("(all)"), "hft-operator running");
    let controllers = async {
        tokio::join!(clusters, strategies, policies);
    };
    match &elector {
        // Losing the lease ends the process: the replica restarts as a candidate, and
        // nothing it had in flight outlives its leadership.
        Some((e, _)) => tokio::select! {
            () = controllers => {
                // Stopped by a signal (a rollout, a drain): a standby leads at once.
                if let Err(err) = e.release().await {
                    tracing::warn!(error = %err, "lease not released; a standby takes over when it lapses");
                }
                Ok(())
            }
            lost = e.keep(LEASE_RETRY, LEASE_DEADLINE) => Err(lost),
        },
        None => {
            controllers.await;
            Ok(())
        }
    }
}
