"""The Kubernetes manifests (deploy/kustomize), as `kubectl kustomize` renders the base and
each overlay: valid for Kubernetes (its published schemas, strict), Weir's resources valid
for their CRDs and accepted by the control plane, and consistent with each other and with
the code they run (Services select pods, probes hit ports and health services that exist,
every container's arguments parse, the control plane may do what it needs and no more)."""

from __future__ import annotations

import argparse
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cel
import kubernetes_validate
import pytest
import yaml
from jsonschema import Draft202012Validator
from kubernetes_validate.utils import ValidationError, latest_version
from starlette.testclient import TestClient

from controlplane import server as controlplane_server
from controlplane.dataplane import Address, DataPlaneSettings
from controlplane.publisher import build_snapshot, generate
from controlplane.translate_envoy import EXTPROC_CLUSTER
from controlplane.validate import validate_documents
from extproc import server as extproc_server
from tests.manifests import (
    IMAGE,
    REPO,
    TARGETS,
    args_of,
    containers,
    environment,
    expand,
    is_weir,
    render,
    workloads,
)
from tests.unit.test_crds import cel_rules, strict
from weir import envoy_drain, envoy_launch
from weir.cli import build_parser
from weir.mock_llm.app import create_app

# The oldest Kubernetes the manifests are meant for (gRPC probes, autoscaling/v2, policy/v1
# are all GA there), and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30", latest_version())
NAMESPACE = "weir"
GROUP = "weir.dev"
WEIR_PLURALS = ("backends", "endpoints", "servicetiers", "policies", "piipolicies")
# (API group, resource, verb, resource name or None): what the control plane does
# (controlplane.kube_api): list and watch its resources and Secrets, patch the status of
# its resources, and hold its Lease.
CONTROL_PLANE_NEEDS = (
    {(GROUP, plural, verb, None) for plural in WEIR_PLURALS for verb in ("list", "watch")}
    | {(GROUP, f"{plural}/status", verb, None) for plural in WEIR_PLURALS for verb in ("patch",)}
    | {("", "secrets", verb, None) for verb in ("list", "watch")}
    | {("coordination.k8s.io", "leases", "create", None)}
    | {("coordination.k8s.io", "leases", verb, "weir-controlplane") for verb in ("get", "update")}
)


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def docs(target: str) -> list[dict[str, Any]]:
    return render(target)


def named(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def workload(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return named(docs, "Deployment")[name]


def container(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [only] = containers(workload(docs, name))
    return only


def parsed(docs: list[dict[str, Any]], name: str) -> argparse.Namespace:
    deployment = workload(docs, name)
    [only] = containers(deployment)
    return build_parser().parse_args(args_of(deployment, only))


def pod_labels(docs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, str]]]:
    return [(w, w["spec"]["template"]["metadata"]["labels"]) for w in workloads(docs)]


def selected(
    docs: list[dict[str, Any]], selector: dict[str, str], namespace: str
) -> list[dict[str, Any]]:
    """The workloads whose pods carry every label of `selector`."""
    return [
        w
        for w, labels in pod_labels(docs)
        if w["metadata"]["namespace"] == namespace and selector.items() <= labels.items()
    ]


def container_ports(workload: dict[str, Any]) -> dict[str | int, int]:
    """Port name and number -> number, of every container of the workload."""
    ports: dict[str | int, int] = {}
    for c in containers(workload):
        for port in c.get("ports", []):
            ports[port["containerPort"]] = port["containerPort"]
            if "name" in port:
                ports[port["name"]] = port["containerPort"]
    return ports


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def probes(c: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        if kind in c:
            yield kind, c[kind]


# --- Kubernetes' own schemas ------------------------------------------------------------------


def test_every_built_in_resource_is_valid_for_kubernetes(docs: list[dict[str, Any]]) -> None:
    checked = 0
    for doc in docs:
        if doc["apiVersion"].startswith(f"{GROUP}/"):
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except ValidationError as error:
                where = ".".join(str(p) for p in error.path)
                pytest.fail(
                    f"{doc['kind']}/{doc['metadata']['name']} (Kubernetes {version}): "
                    f"{where}: {error.message}"
                )
        checked += 1
    assert checked >= 20  # the CRDs, the workloads, Services, RBAC, ...


def test_the_validation_fails_on_a_broken_resource(docs: list[dict[str, Any]]) -> None:
    # What the test above relies on: strict validation refuses an unknown field.
    broken = copy.deepcopy(workload(docs, "weir-envoy"))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def test_every_resource_is_weirs_and_in_its_namespace(docs: list[dict[str, Any]]) -> None:
    assert set(named(docs, "Namespace")) == {NAMESPACE}
    cluster_scoped = {"Namespace", "CustomResourceDefinition"}
    for doc in docs:
        metadata = doc["metadata"]
        assert metadata["labels"]["app.kubernetes.io/part-of"] == "weir", metadata["name"]
        if doc["kind"] in cluster_scoped:
            assert "namespace" not in metadata
        else:
            assert metadata["namespace"] == NAMESPACE, (doc["kind"], metadata["name"])
    crds = named(docs, "CustomResourceDefinition")
    assert set(crds) == {f"{plural}.{GROUP}" for plural in WEIR_PLURALS}


# --- Weir's resources -------------------------------------------------------------------------


def weir_resources(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["apiVersion"].startswith(f"{GROUP}/")]


def test_weirs_resources_are_valid_for_their_crds(docs: list[dict[str, Any]]) -> None:
    crds = {
        (crd["spec"]["group"], crd["spec"]["names"]["kind"]): crd
        for crd in named(docs, "CustomResourceDefinition").values()
    }
    for doc in weir_resources(docs):
        group, _, version = doc["apiVersion"].partition("/")
        crd = crds[(group, doc["kind"])]
        [served] = [v for v in crd["spec"]["versions"] if v["name"] == version]
        schema = served["schema"]["openAPIV3Schema"]
        checked = strict(schema)
        del checked["properties"]["metadata"]["additionalProperties"]  # ObjectMeta: Kubernetes'
        errors = [e.message for e in Draft202012Validator(checked).iter_errors(doc)]
        assert errors == [], (doc["kind"], doc["metadata"]["name"])
        broken = [
            f"{path}: {rule}"
            for path, rule, value in cel_rules(schema, doc)
            if cel.evaluate(rule, {"self": value}) is not True
        ]
        assert broken == [], (doc["kind"], doc["metadata"]["name"])


def test_only_the_quickstart_brings_config(target: str, docs: list[dict[str, Any]]) -> None:
    kinds = sorted({d["kind"] for d in weir_resources(docs)})
    if target == "overlays/quickstart":
        assert kinds == ["Backend", "Endpoint", "PIIPolicy", "Policy", "ServiceTier"]
    else:
        assert kinds == []


def test_the_quickstart_config_is_accepted_and_translated_by_the_control_plane() -> None:
    docs = render("overlays/quickstart")
    # As the Kubernetes source hands them to the validator: one document per object.
    config = validate_documents(
        [(f"{NAMESPACE}/{d['kind']}/{d['metadata']['name']}", d) for d in weir_resources(docs)]
    )
    assert [e.name for e in config.endpoints] == ["demo-chat", "demo-trial"]
    # Translated with the data-plane settings the control plane's arguments give.
    args = parsed(docs, "weir-controlplane")
    dataplane = DataPlaneSettings(
        listener=Address.parse(args.listen),
        extproc=tuple(Address.parse(a) for a in args.extproc_address),
        extproc_message_timeout_ms=args.extproc_message_timeout_ms,
        max_request_bytes=args.max_request_bytes,
    )
    generated = generate(config, dataplane, {})
    build_snapshot(generated.envoy, generated.runtime).check()
    clusters = {c.name: c for c in generated.envoy.clusters}
    # Envoy finds the ext_proc replicas and the mock by DNS.
    assert clusters[EXTPROC_CLUSTER].type == clusters[EXTPROC_CLUSTER].STRICT_DNS
    assert clusters["backend-mock"].type == clusters["backend-mock"].STRICT_DNS


def test_the_quickstart_resources_are_the_examples_but_for_the_mock_url() -> None:
    examples: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted((REPO / "examples" / "quickstart").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                examples[(doc["kind"], doc["metadata"]["name"])] = doc
    rendered = {(d["kind"], d["metadata"]["name"]): d for d in weir_resources(render(TARGETS[1]))}
    assert set(rendered) == set(examples)
    for key, doc in rendered.items():
        expected = copy.deepcopy(examples[key]["spec"])
        if key[0] == "Backend":
            assert expected["baseURL"] == "${WEIR_MOCK_LLM_URL}"
            expected["baseURL"] = "http://weir-mock-llm.weir.svc.cluster.local:9100/v1"
        assert doc["spec"] == expected, key


# --- how the pieces fit -----------------------------------------------------------------------


def test_every_service_selects_pods_and_their_ports(docs: list[dict[str, Any]]) -> None:
    for service in named(docs, "Service").values():
        name = service["metadata"]["name"]
        pods = selected(docs, service["spec"]["selector"], service["metadata"]["namespace"])
        assert pods, f"Service {name} selects no pods"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for w in pods:
                assert target in container_ports(w), (name, port["name"], w["metadata"]["name"])


def test_pdbs_and_autoscalers_target_workloads(docs: list[dict[str, Any]]) -> None:
    for pdb in named(docs, "PodDisruptionBudget").values():
        pods = selected(docs, pdb["spec"]["selector"]["matchLabels"], NAMESPACE)
        assert len(pods) == 1, pdb["metadata"]["name"]
    for hpa in named(docs, "HorizontalPodAutoscaler").values():
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment" and ref["apiVersion"] == "apps/v1"
        deployment = workload(docs, ref["name"])
        # The autoscaler owns the count: applying the manifests again must not reset it.
        assert "replicas" not in deployment["spec"], ref["name"]
        assert hpa["spec"]["minReplicas"] >= 2
        for c in containers(deployment):  # CPU utilization is measured against requests
            assert c["resources"]["requests"]["cpu"], ref["name"]


def test_every_probe_hits_a_container_port(docs: list[dict[str, Any]]) -> None:
    for w in workloads(docs):
        for c in containers(w):
            ports = {p["containerPort"] for p in c.get("ports", [])}
            ports |= {p["name"] for p in c.get("ports", []) if "name" in p}
            for kind, probe in probes(c):
                handler = probe.get("httpGet") or probe.get("tcpSocket") or probe.get("grpc")
                if handler is None:
                    assert "exec" in probe, (w["metadata"]["name"], kind)
                    continue
                assert handler["port"] in ports, (w["metadata"]["name"], kind)
            assert "readinessProbe" in c and "livenessProbe" in c, w["metadata"]["name"]


def test_every_weir_container_runs_a_subcommand_with_valid_arguments(
    docs: list[dict[str, Any]],
) -> None:
    parser = build_parser()
    commands = set()
    for w in workloads(docs):
        for c in containers(w):
            if not is_weir(c):
                continue
            assert "command" not in c  # the image's ENTRYPOINT: `weir`
            args = args_of(w, c)
            assert not [a for a in args if "$(" in a], f"undefined variable in {args}"
            parser.parse_args(args)  # exits (SystemExit) on an unknown flag or bad value
            commands.add(args[0])
    assert commands >= {"controlplane", "extproc", "envoy"}


def test_every_weir_container_runs_this_version_of_the_image(docs: list[dict[str, Any]]) -> None:
    version = _pyproject_version()
    for w in workloads(docs):
        for c in containers(w):
            if c["image"].startswith("weir") or c["image"].startswith(IMAGE):
                assert c["image"] == f"{IMAGE}:{version}", w["metadata"]["name"]


def _pyproject_version() -> str:
    import tomllib

    with (REPO / "pyproject.toml").open("rb") as f:
        version: str = tomllib.load(f)["project"]["version"]
    return version


def test_the_control_plane_runs_the_kubernetes_source(docs: list[dict[str, Any]]) -> None:
    args = parsed(docs, "weir-controlplane")
    assert args.source == "kubernetes"
    assert args.namespace == NAMESPACE
    assert args.identity == "weir-pod-7d9c6b5f4-x2k8q"  # its pod's name
    assert args.lease_name == "weir-controlplane"  # the Lease the Role lets it renew
    assert not args.no_leader_election
    deployment = workload(docs, "weir-controlplane")
    env = {v["name"]: v for v in container(docs, "weir-controlplane").get("env", [])}
    if "WEIR_STORE_URL" in env:
        # Replicas sharing PostgreSQL: the URL (with its password) from a Secret only.
        assert set(env["WEIR_STORE_URL"]["valueFrom"]) == {"secretKeyRef"}
        assert deployment["spec"]["replicas"] >= 2
        assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
        assert "PersistentVolumeClaim" not in {d["kind"] for d in docs}
        return
    # One replica with an SQLite store on a ReadWriteOnce volume: never two at once.
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    mounts = {
        m["mountPath"]: m["name"] for m in container(docs, "weir-controlplane")["volumeMounts"]
    }
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    store_volume = volumes[mounts[str(Path(args.store).parent)]]
    claim = store_volume["persistentVolumeClaim"]["claimName"]
    assert named(docs, "PersistentVolumeClaim")[claim]["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_the_ports_in_the_arguments_are_the_ports_exposed(docs: list[dict[str, Any]]) -> None:
    plane = parsed(docs, "weir-controlplane")
    plane_ports = container_ports(workload(docs, "weir-controlplane"))
    assert plane_ports["xds"] == port_of(plane.xds_address)
    assert plane_ports["management"] == port_of(plane.management_address)
    # The control plane tells Envoy where to listen: where the gateway Service sends.
    envoy_ports = container_ports(workload(docs, "weir-envoy"))
    assert envoy_ports["http"] == port_of(plane.listen)
    gateway = named(docs, "Service")["weir-gateway"]["spec"]["ports"]
    assert [envoy_ports[p["targetPort"]] for p in gateway] == [port_of(plane.listen)]
    envoy = parsed(docs, "weir-envoy")
    assert envoy_ports["ready"] == envoy.ready_port
    extproc = parsed(docs, "weir-extproc")
    extproc_ports = container_ports(workload(docs, "weir-extproc"))
    assert extproc_ports["grpc"] == port_of(extproc.listen)
    assert extproc_ports["metrics"] == port_of(extproc.metrics_address)
    for address in (plane.xds_address, plane.listen, extproc.listen, extproc.metrics_address):
        assert address.startswith("0.0.0.0:"), address  # reachable from other pods


def cluster_names(docs: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    """(where, host:port) of every in-cluster DNS name the manifests use."""
    for w in workloads(docs):
        for c in containers(w):
            env = environment(w, c)
            texts = [*args_of(w, c), *env.values()]
            for text in texts:
                for word in text.replace("/", " ").split():
                    if ".svc.cluster.local" in word:
                        yield w["metadata"]["name"], word
    for doc in weir_resources(docs):
        if doc["kind"] == "Backend":
            netloc = urlsplit(doc["spec"]["baseURL"]).netloc
            if ".svc.cluster.local" in netloc:
                yield f"Backend/{doc['metadata']['name']}", netloc


def test_every_service_name_used_is_a_service_with_that_port(docs: list[dict[str, Any]]) -> None:
    services = named(docs, "Service")
    used = list(cluster_names(docs))
    assert len(used) >= 4  # ext_proc and Envoy -> control plane, -> ext_proc, -> Redis
    for where, host_port in used:
        host, _, port = host_port.rpartition(":")
        name, namespace, *_ = host.split(".")
        assert namespace == NAMESPACE, where
        assert name in services, f"{where}: no Service {name}"
        assert int(port) in [p["port"] for p in services[name]["spec"]["ports"]], where


def test_the_ext_proc_service_is_headless(docs: list[dict[str, Any]]) -> None:
    # Envoy's STRICT_DNS cluster resolves it to every ready ext_proc pod.
    spec = named(docs, "Service")["weir-extproc"]["spec"]
    assert spec["clusterIP"] == "None"
    assert spec.get("publishNotReadyAddresses", False) is False
    address = parsed(docs, "weir-controlplane").extproc_address
    assert address == ["weir-extproc.weir.svc.cluster.local:18080"]


def test_health_checks_ask_the_services_the_servers_register(docs: list[dict[str, Any]]) -> None:
    plane = container(docs, "weir-controlplane")
    assert plane["readinessProbe"]["grpc"]["service"] == controlplane_server.HEALTH_SERVICE
    assert plane["livenessProbe"]["grpc"]["service"] == controlplane_server.LIVENESS_SERVICE
    extproc = container(docs, "weir-extproc")
    assert extproc["readinessProbe"]["grpc"]["service"] == extproc_server.HEALTH_SERVICE
    assert extproc["livenessProbe"]["grpc"]["service"] == extproc_server.LIVENESS_SERVICE
    envoy = container(docs, "weir-envoy")
    assert envoy["readinessProbe"]["httpGet"]["path"] == envoy_launch.READY_PATH


def test_the_mock_llm_answers_its_probe() -> None:
    docs = render("overlays/quickstart")
    mock = container(docs, "weir-mock-llm")
    args = parsed(docs, "weir-mock-llm")
    assert container_ports(workload(docs, "weir-mock-llm"))["http"] == args.port
    with TestClient(create_app()) as client:
        for _, probe in probes(mock):
            assert client.get(probe["httpGet"]["path"]).status_code == 200


def test_envoy_drains_before_it_stops(docs: list[dict[str, Any]]) -> None:
    deployment = workload(docs, "weir-envoy")
    envoy = container(docs, "weir-envoy")
    command = envoy["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:3] == ["python", "-m", "weir.envoy_drain"]
    drain = envoy_drain.build_parser().parse_args(command[3:])
    args = parsed(docs, "weir-envoy")
    assert drain.admin == f"127.0.0.1:{args.admin_port}"
    # The grace period counts the hook: the drain must end before the kubelet kills Envoy.
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > (
        drain.timeout_s + 5
    )
    # ext_proc waits until Envoy has stopped sending it new streams (DNS refresh: 5 s).
    extproc = container(docs, "weir-extproc")
    hook = extproc["lifecycle"]["preStop"]["exec"]["command"]
    assert hook[:2] == ["python", "-c"]
    compile(hook[2], "preStop", "exec")
    # ...then lets the streams in flight finish, all before the kubelet kills it.
    waited = float(hook[2].rsplit("sleep(", 1)[1].rstrip(")"))
    grace = parsed(docs, "weir-extproc").grace_s
    assert grace >= 30  # LLM streams are long: not the 5 s default
    period = workload(docs, "weir-extproc")["spec"]["template"]["spec"]
    assert period["terminationGracePeriodSeconds"] > waited + grace


# --- least privilege --------------------------------------------------------------------------


def test_every_service_account_used_exists(docs: list[dict[str, Any]]) -> None:
    accounts = named(docs, "ServiceAccount")
    for w in workloads(docs):
        assert w["spec"]["template"]["spec"]["serviceAccountName"] in accounts
    for binding in named(docs, "RoleBinding").values():
        assert binding["roleRef"]["name"] in named(docs, "Role")
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount" and subject["name"] in accounts
            assert subject["namespace"] == NAMESPACE


def test_the_control_plane_may_do_what_it_needs_and_no_more(docs: list[dict[str, Any]]) -> None:
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    [binding] = named(docs, "RoleBinding").values()
    assert [s["name"] for s in binding["subjects"]] == ["weir-controlplane"]
    role = named(docs, "Role")[binding["roleRef"]["name"]]
    granted = set()
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    for name in rule.get("resourceNames", [None]):
                        granted.add((group, resource, verb, name))
    assert granted == CONTROL_PLANE_NEEDS
    assert (
        workload(docs, "weir-controlplane")["spec"]["template"]["spec"]["serviceAccountName"]
        == binding["subjects"][0]["name"]
    )


def test_only_the_control_plane_gets_an_api_token(docs: list[dict[str, Any]]) -> None:
    accounts = named(docs, "ServiceAccount")
    for w in workloads(docs):
        spec = w["spec"]["template"]["spec"]
        account = accounts[spec["serviceAccountName"]]
        if w["metadata"]["name"] == "weir-controlplane":
            assert spec.get("automountServiceAccountToken", True) is True
            continue
        assert spec["automountServiceAccountToken"] is False, w["metadata"]["name"]
        assert account["automountServiceAccountToken"] is False, w["metadata"]["name"]
        assert account["metadata"]["name"] != "weir-controlplane"


def test_every_container_is_locked_down(docs: list[dict[str, Any]]) -> None:
    for w in workloads(docs):
        spec = w["spec"]["template"]["spec"]
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert pod["runAsUser"] != 0
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in containers(w):
            where = f"{w['metadata']['name']}/{c['name']}"
            context = c["securityContext"]
            assert context["runAsNonRoot"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert context["readOnlyRootFilesystem"] is True, where
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert set(mounts.values()) <= set(volumes), where
            if is_weir(c):  # Python and Envoy write temp files
                assert "emptyDir" in volumes[mounts["/tmp"]], where
            for kind in ("requests", "limits"):
                assert set(c["resources"][kind]) == {"cpu", "memory"}, (where, kind)


def test_network_policies_keep_the_xds_port_to_the_data_plane(
    docs: list[dict[str, Any]],
) -> None:
    policies = named(docs, "NetworkPolicy")

    def components(peers: list[dict[str, Any]]) -> set[str]:
        found = set()
        for peer in peers:
            [w] = selected(docs, peer["podSelector"]["matchLabels"], NAMESPACE)
            found.add(w["metadata"]["labels"]["app.kubernetes.io/component"])
        return found

    allowed: dict[tuple[str, int], set[str] | None] = {}
    for policy in policies.values():
        [w] = selected(docs, policy["spec"]["podSelector"]["matchLabels"], NAMESPACE)
        ports = container_ports(w)
        component = w["metadata"]["labels"]["app.kubernetes.io/component"]
        for rule in policy["spec"]["ingress"]:
            for port in rule["ports"]:
                number = ports[port["port"]]  # a port the pods have
                allowed[(component, number)] = components(rule["from"]) if "from" in rule else None
    assert allowed[("controlplane", 18000)] == {"envoy", "extproc"}
    assert allowed[("extproc", 18080)] == {"envoy"}
    assert allowed[("redis", 6379)] == {"extproc"}
    # Every port of a guarded pod is listed: nothing closed by accident.
    for policy in policies.values():
        [w] = selected(docs, policy["spec"]["podSelector"]["matchLabels"], NAMESPACE)
        component = w["metadata"]["labels"]["app.kubernetes.io/component"]
        numbers = set(container_ports(w).values())
        assert {n for (c, n) in allowed if c == component} == numbers, component


def test_variable_references_expand_as_kubernetes_does() -> None:
    env = {"A": "x"}
    assert expand("$(A)-$(B)-$$(A)", env) == "x-$(B)-$(A)"


def test_production_scales_and_faces_the_outside() -> None:
    docs = render("overlays/production")
    assert set(named(docs, "HorizontalPodAutoscaler")) == {"weir-envoy", "weir-extproc"}
    assert named(docs, "Service")["weir-gateway"]["spec"]["type"] == "LoadBalancer"
    for name in ("weir-envoy", "weir-extproc"):
        assert named(docs, "PodDisruptionBudget")[name]["spec"] == {
            "maxUnavailable": 1,
            "selector": named(docs, "PodDisruptionBudget")[name]["spec"]["selector"],
        }
    # Two control planes share PostgreSQL (the base's single one keeps SQLite).
    env = container(docs, "weir-controlplane")["env"]
    assert any(v["name"] == "WEIR_STORE_URL" for v in env)
    assert workload(docs, "weir-controlplane")["spec"]["replicas"] == 2
    base = render("base")
    for name in ("weir-envoy", "weir-extproc", "weir-controlplane"):
        bigger = container(docs, name)["resources"]["requests"]
        smaller = container(base, name)["resources"]["requests"]
        assert _cpu(bigger["cpu"]) > _cpu(smaller["cpu"]), name


def _cpu(value: str) -> float:
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)
