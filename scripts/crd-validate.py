#!/usr/bin/env python3
"""Validates custom resources against the CRDs' OpenAPI v3 schemas, offline.

    crd-validate.py CRDS.yaml MANIFEST.yaml...

Each document of each manifest whose kind one of the CRDs defines is checked against
that CRD's schema for its version, strictly: an object field the schema does not name
is an error (the API server would prune it silently, hiding a typo), except where the
schema preserves unknown fields. Kubernetes' schema extensions are translated to JSON
Schema first (`nullable`, `x-kubernetes-int-or-string`); CEL rules are not evaluated.
Prints every error and exits 1 if there is one.
"""
import sys

import jsonschema
import yaml


def strict(s):
    """The JSON Schema of a Kubernetes structural schema."""
    if not isinstance(s, dict):
        return s
    s = {k: strict(v) if isinstance(v, dict) else v for k, v in s.items()}
    for k in ("items", "additionalProperties"):
        if isinstance(s.get(k), dict):
            s[k] = strict(s[k])
    if "properties" in s:
        s["properties"] = {k: strict(v) for k, v in s["properties"].items()}
        if not s.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in s:
            s["additionalProperties"] = False
    for k in ("allOf", "anyOf", "oneOf"):
        if k in s:
            s[k] = [strict(x) for x in s[k]]
    if s.pop("x-kubernetes-int-or-string", False):
        s.pop("type", None)
        s["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if s.pop("nullable", False) and "type" in s:
        s["type"] = [s["type"], "null"]
    return s


def main(crds_path, manifests):
    schemas = {}
    for crd in yaml.safe_load_all(open(crds_path)):
        if not crd:
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            schema = strict(v["schema"]["openAPIV3Schema"])
            # apiVersion, kind and metadata are the API server's to check.
            for k, t in (("apiVersion", "string"), ("kind", "string"), ("metadata", "object")):
                schema["properties"][k] = {"type": t}
            schemas[(f"{group}/{v['name']}", kind)] = schema
    errors = 0
    checked = 0
    for path in manifests:
        for doc in yaml.safe_load_all(open(path)):
            if not doc:
                continue
            key = (doc.get("apiVersion"), doc.get("kind"))
            if key not in schemas:
                continue
            checked += 1
            name = doc.get("metadata", {}).get("name", "?")
            for e in jsonschema.Draft7Validator(schemas[key]).iter_errors(doc):
                where = ".".join(str(p) for p in e.absolute_path) or "(root)"
                print(f"{path}: {key[1]} {name}: {where}: {e.message}")
                errors += 1
    if checked == 0:
        print("no custom resource of these CRDs in the manifests")
        return 1
    print(f"{checked} custom resources checked, {errors} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2:]))
