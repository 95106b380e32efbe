//! The shipped artefacts against real validators: the chart rendered by a real Helm and
//! checked against the Kubernetes 1.33 OpenAPI schemas (kubernetes-validate, strict),
//! the example and broken manifests against the generated CRD schemas, the chart's
//! CRDs against `hft-operator crd`, and the Dockerfile against hadolint. The tools are
//! installed by `scripts/chart-tools.sh` (the test command runs it first).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The tools directory, installing the tools if they are missing.
fn tools() -> PathBuf {
    let out = Command::new(root().join("scripts/chart-tools.sh"))
        .output()
        .expect("run scripts/chart-tools.sh");
    assert!(
        out.status.success(),
        "scripts/chart-tools.sh could not install Helm and kubernetes-validate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn run(cmd: &mut Command) -> Output {
    cmd.current_dir(root()).output().expect("the tool runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `helm template` with `sets`, then kubernetes-validate --strict on the output.
fn render_and_validate(t: &Path, sets: &[&str]) -> String {
    let mut helm = Command::new(t.join("helm"));
    helm.args(["template", "rel", "charts/hft", "--namespace", "ops"])
        .args(["--kube-version", "1.33.0"]);
    for s in sets {
        helm.args(["--set", s]);
    }
    let rendered = run(&mut helm);
    assert!(
        rendered.status.success(),
        "helm template: {}",
        text(&rendered)
    );
    let mut kv = Command::new(t.join("venv/bin/kubernetes-validate"))
        .args(["--strict", "-k", "1.33.0", "-"])
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    kv.stdin
        .take()
        .unwrap()
        .write_all(&rendered.stdout)
        .unwrap();
    let v = kv.wait_with_output().unwrap();
    assert!(v.status.success(), "kubernetes-validate: {}", text(&v));
    String::from_utf8(rendered.stdout).unwrap()
}

#[test]
fn the_chart_lints_renders_and_validates_against_kubernetes_1_33() {
    let t = tools();
    let lint = run(Command::new(t.join("helm")).args(["lint", "charts/hft", "--strict"]));
    assert!(lint.status.success(), "helm lint: {}", text(&lint));
    let all = render_and_validate(&t, &[]);
    assert!(all.contains("kind: ClusterRole\n"), "{all}");
    assert!(all.contains("runAsNonRoot: true"));
    // Leader election: a Role on the one Lease, named after the release (`rel-hft`)
    // so that two releases in a namespace elect apart, in the release's namespace; the
    // Lease's name and the namespace passed to the pods.
    assert_eq!(all.matches("\nkind: Role\n").count(), 1, "{all}");
    assert!(
        all.contains("coordination.k8s.io") && all.contains("resourceNames: [\"rel-hft\"]"),
        "{all}"
    );
    assert!(all.contains("- --lease=rel-hft"), "{all}");
    assert!(all.contains("name: POD_NAMESPACE"));
    // Watching one namespace: a Role there instead of a ClusterRole.
    let one = render_and_validate(&t, &["watchNamespace=trading"]);
    assert_eq!(one.matches("\nkind: Role\n").count(), 2, "{one}");
    assert!(one.contains("namespace: trading"));
    assert!(one.contains("--namespace=trading"));
    // values.schema.json refuses what the chart does not support.
    for bad in ["replicas=9", "image.pullPolicy=Sometimes", "metrics.port=0"] {
        let o = run(Command::new(t.join("helm")).args([
            "template",
            "rel",
            "charts/hft",
            "--kube-version",
            "1.33.0",
            "--set",
            bad,
        ]));
        assert!(!o.status.success(), "{bad} was accepted");
        assert!(text(&o).contains("schema"), "{bad}: {}", text(&o));
    }
}

fn crd_check(t: &Path, files: &[PathBuf]) -> Output {
    run(Command::new(t.join("venv/bin/python"))
        .arg("scripts/crd-validate.py")
        .arg("charts/hft/crds/hft.dev.yaml")
        .args(files))
}

#[test]
fn examples_match_the_crd_schemas_and_broken_manifests_do_not() {
    let t = tools();
    let examples: Vec<PathBuf> = std::fs::read_dir(root().join("charts/hft/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(examples.len() >= 5);
    let ok = crd_check(&t, &examples);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        text(&ok).contains(&format!(
            "{} custom resources checked, 0 errors",
            examples.len()
        )),
        "{}",
        text(&ok)
    );
    let mut bad: Vec<PathBuf> = std::fs::read_dir(root().join("operator/tests/manifests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("bad-"))
        .collect();
    bad.sort();
    assert!(bad.len() >= 6);
    for b in bad {
        let o = crd_check(&t, std::slice::from_ref(&b));
        assert!(!o.status.success(), "{} was accepted", b.display());
        assert!(text(&o).contains("errors"), "{}", text(&o));
    }
}

#[test]
fn the_charts_crds_are_what_the_operator_prints() {
    let shipped = std::fs::read_to_string(root().join("charts/hft/crds/hft.dev.yaml")).unwrap();
    let now = hft_operator::crds_yaml().unwrap();
    assert!(
        shipped == now,
        "charts/hft/crds/hft.dev.yaml is out of date: run `hft-operator crd > charts/hft/crds/hft.dev.yaml`"
    );
    for kind in ["TradingCluster", "Strategy", "RiskPolicy"] {
        assert!(now.contains(&format!("kind: {kind}\n")), "{kind}");
    }
    // Status subresources, printer columns and the scale subresource.
    assert_eq!(now.matches("status: {}").count(), 3, "{now}");
    assert!(now.contains("specReplicasPath: .spec.replicas"));
    assert!(now.contains("additionalPrinterColumns"));
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let t = tools();
    let o = run(Command::new(t.join("venv/bin/hadolint")).args(["--no-color", "Dockerfile"]));
    assert!(o.status.success(), "hadolint: {}", text(&o));
}
