#!/usr/bin/env python3
"""Write kubeconform JSON schemas offline, from files on disk. Standard library only.

    schemas.py k8s SWAGGER_JSON OUT_DIR
        One schema per kind of a Kubernetes OpenAPI v2 spec (api/openapi-spec/swagger.json of
        k8s.io/kubernetes), named like yannh/kubernetes-json-schema's "standalone-strict" flavour,
        i.e. kubeconform's default template {{ .ResourceKind }}{{ .KindSuffix }}.json:
        deployment-apps-v1.json, configmap-v1.json, clusterrole-rbac-v1.json.

    schemas.py crd OUT_DIR OBJECT_META_SCHEMA < crds.jsonl
        One schema per served version of each CustomResourceDefinition read from stdin (one JSON
        document per line; other kinds are ignored), named like the CRDs-catalog convention, i.e.
        kubeconform's template {{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json:
        floe.dev/virtualcluster_v1alpha1.json. OBJECT_META_SCHEMA is a k8s schema written by the
        `k8s` command (e.g. configmap-v1.json); its `metadata` becomes the custom resources'
        metadata schema, so a misspelt metadata field is caught as the API server would.

"Strict" as kubeconform -strict expects: every object schema that lists properties is closed
(additionalProperties: false), except where the CRD says x-kubernetes-preserve-unknown-fields.
int-or-string accepts an integer or a string, Quantity a number or a string. Descriptions,
defaults and formats are dropped (they do not constrain, and the files shrink to a quarter). What
these schemas cannot check: CEL rules (x-kubernetes-validations), defaulting, immutability.
"""
import json
import os
import sys

# Keywords whose value is a schema, a list of schemas, or a map of name -> schema. Everything else
# is copied verbatim (an enum, default or example value is data, not a schema to walk).
SCHEMA_KEYS = {"items", "additionalProperties", "not"}
SCHEMA_LIST_KEYS = {"allOf", "anyOf", "oneOf"}
SCHEMA_MAP_KEYS = {"properties"}
DROPPED = {"description", "format", "example", "externalDocs", "nullable", "default"}

INT_OR_STRING = {"type": ["integer", "string", "null"]}
QUANTITY = {"type": ["number", "string", "null"]}
K8S_SPECIAL = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": INT_OR_STRING,
    "io.k8s.apimachinery.pkg.api.resource.Quantity": QUANTITY,
}


def walk(node, convert):
    """Rebuild a schema node: convert(node) first (it returns the node and whether it is final),
    then recurse into the sub-schemas."""
    node, final = convert(node)
    if final or not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in DROPPED or key.startswith("x-kubernetes-"):
            continue
        if key in SCHEMA_KEYS and isinstance(value, dict):
            out[key] = walk(value, convert)
        elif key == "items" and isinstance(value, list):
            out[key] = [walk(v, convert) for v in value]
        elif key in SCHEMA_LIST_KEYS:
            out[key] = [walk(v, convert) for v in value]
        elif key in SCHEMA_MAP_KEYS:
            out[key] = {name: walk(v, convert) for name, v in value.items()}
        else:
            out[key] = value
    if "properties" in out and "additionalProperties" not in out and not node.get(
        "x-kubernetes-preserve-unknown-fields"
    ):
        out["additionalProperties"] = False
    return out


def with_null(schema):
    """Let a node also accept null (type and enum)."""
    t = schema.get("type")
    if isinstance(t, str):
        schema["type"] = [t, "null"]
    elif isinstance(t, list) and "null" not in t:
        schema["type"] = t + ["null"]
    if "enum" in schema and None not in schema["enum"]:
        schema["enum"] = schema["enum"] + [None]
    return schema


def write(path, schema):
    schema = dict(schema)
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(schema, f, separators=(",", ":"), sort_keys=True)


def k8s(swagger_path, out_dir):
    with open(swagger_path) as f:
        definitions = json.load(f)["definitions"]

    def expander(stack):
        def convert(node):
            if not isinstance(node, dict):
                return node, True
            if "$ref" in node:
                name = node["$ref"].rsplit("/", 1)[-1]
                if name in K8S_SPECIAL:
                    return K8S_SPECIAL[name], True
                if name in stack:
                    # Recursive type (JSONSchemaProps): accept anything below this point.
                    return {}, True
                return walk(definitions[name], expander(stack | {name})), True
            if node.get("format") == "int-or-string":
                return INT_OR_STRING, True
            # The Kubernetes spec marks nothing nullable, yet the API server accepts null for
            # every optional field (and kubeconform's published schemas do too).
            return with_null(dict(node)), False

        return convert

    count = 0
    for name, definition in sorted(definitions.items()):
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            group, version, kind = gvk["group"], gvk["version"], gvk["kind"]
            suffix = f"-{group.split('.')[0]}-{version}" if group else f"-{version}"
            schema = walk(definition, expander(frozenset({name})))
            write(os.path.join(out_dir, f"{kind.lower()}{suffix}.json"), schema)
            count += 1
    if count < 100:
        sys.exit(f"schemas.py: only {count} kinds in {swagger_path}; not a Kubernetes swagger.json?")
    print(f"{count} Kubernetes schemas in {out_dir}")


def crd_convert(node):
    if not isinstance(node, dict):
        return node, True
    node = dict(node)
    if node.get("x-kubernetes-int-or-string"):
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if node.get("nullable"):
            node["anyOf"].append({"type": "null"})
    elif node.get("nullable"):
        with_null(node)
    return node, False


def crd(out_dir, object_meta_path):
    with open(object_meta_path) as f:
        object_meta = json.load(f)["properties"]["metadata"]
    count = 0
    for line in sys.stdin:
        doc = json.loads(line)
        if doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc["spec"]
        group, kind = spec["group"], spec["names"]["kind"]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            schema = walk(version["schema"]["openAPIV3Schema"], crd_convert)
            # The API server owns these three at the root: the generated schema rarely lists them,
            # and closing the root would otherwise reject every object.
            props = schema.setdefault("properties", {})
            props["apiVersion"] = {"type": "string", "enum": [f"{group}/{version['name']}"]}
            props["kind"] = {"type": "string", "enum": [kind]}
            props["metadata"] = object_meta
            schema["additionalProperties"] = False
            schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
            write(os.path.join(out_dir, group, f"{kind.lower()}_{version['name']}.json"), schema)
            count += 1
    if count == 0:
        sys.exit("schemas.py: no CustomResourceDefinition on stdin")
    print(f"{count} CRD schemas in {out_dir}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "k8s":
        k8s(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "crd":
        crd(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
