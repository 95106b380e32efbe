//! `hft-operator`: SREs declare hft deployments as Kubernetes custom resources and the
//! operator reconciles them (see docs/operator.md).

pub mod config;
pub mod controller;
pub mod crd;
pub mod leader;
pub mod resources;

use kube::CustomResourceExt;

/// The three CRDs as one YAML stream: what `hft-operator crd` prints and the Helm chart
/// ships in `charts/hft/crds/`.
pub fn crds_yaml() -> Result<String, String> {
    let crds = [
        crd::TradingCluster::crd(),
        crd::Strategy::crd(),
        crd::RiskPolicy::crd(),
    ];
    let mut out = String::new();
    for c in &crds {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(c).map_err(|e| e.to_string())?);
    }
    Ok(out)
}
