"""infra/k8s: schema-valid manifests, no secrets in git, the gpu pool's job template wired in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import REPO, run, tool

K8S = REPO / "infra" / "k8s"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
JOB_TEMPLATE = REPO / "infra" / "prefect" / "gpu-k8s-job-template.json"


def _documents() -> list[dict]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def _pod_specs() -> dict[str, dict]:
    specs = {}
    for doc in _documents():
        if doc["kind"] in ("Deployment", "Job"):
            specs[doc["metadata"]["name"]] = doc["spec"]["template"]["spec"]
    return specs


def test_kubernetes_validate_strict() -> None:
    assert len(MANIFESTS) >= 5
    result = run([tool("kubernetes-validate"), "--strict", *map(str, MANIFESTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed for resource") == len(_documents())


def test_kubernetes_validate_is_really_checking(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: two}\n")
    assert run([tool("kubernetes-validate"), "--strict", str(bad)]).returncode != 0


def test_kustomization_lists_the_steady_state_manifests() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert set(kustomization["resources"]) == {p.name for p in MANIFESTS} - {"db-init.yaml"}


def test_no_secrets_in_git_and_secret_refs_point_at_operator_made_secrets() -> None:
    assert not [d for d in _documents() if d["kind"] == "Secret"]
    refs = set()
    for spec in _pod_specs().values():
        for container in spec.get("initContainers", []) + spec["containers"]:
            for env in container.get("env", []):
                value = env.get("value", "")
                assert "PASSWORD" not in env["name"] or not value, env
                if "secretKeyRef" in env.get("valueFrom", {}):
                    refs.add(env["valueFrom"]["secretKeyRef"]["name"])
    assert refs == {"smmdn-secrets", "smmdn-db-admin"}
    config = next(d for d in _documents() if d["kind"] == "ConfigMap")
    assert ":" not in config["data"]["SMMDN_DATABASE_URL"].split("//", 1)[1].split("@")[0], "password in URL"


def test_pods_run_as_non_root_without_privileges() -> None:
    for name, spec in _pod_specs().items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        for container in spec.get("initContainers", []) + spec["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert security["capabilities"]["drop"] == ["ALL"], (name, container["name"])


def test_workers_poll_the_two_pools_and_the_gpu_pool_gets_its_template() -> None:
    specs = _pod_specs()
    cpu = specs["smmdn-worker-cpu"]["containers"][0]["args"]
    gpu_spec = specs["smmdn-worker-gpu"]
    gpu = gpu_spec["containers"][0]["args"]
    assert cpu[cpu.index("--pool") + 1] == "cpu" and cpu[cpu.index("--type") + 1] == "process"
    assert gpu[gpu.index("--pool") + 1] == "gpu" and gpu[gpu.index("--type") + 1] == "kubernetes"
    apply = gpu_spec["initContainers"][0]["args"]
    assert apply[:4] == ["prefect", "work-pool", "create", "gpu"] and "--overwrite" in apply
    template_path = Path(apply[apply.index("--base-job-template") + 1])
    mount = next(
        m for m in gpu_spec["initContainers"][0]["volumeMounts"] if m["mountPath"] == str(template_path.parent)
    )
    volume = next(v for v in gpu_spec["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == "smmdn-gpu-job-template"
    assert template_path.name == JOB_TEMPLATE.name  # the key `kubectl create configmap --from-file` gives it
    assert gpu_spec["serviceAccountName"] == "prefect-worker"


def test_gpu_job_template_is_a_prefect_base_job_template() -> None:
    if not JOB_TEMPLATE.exists():
        pytest.skip(f"{JOB_TEMPLATE.relative_to(REPO)} not written yet (owned by the flows work)")
    template = json.loads(JOB_TEMPLATE.read_text())
    assert {"job_configuration", "variables"} <= set(template)
    assert "job_manifest" in template["job_configuration"]
    assert "gpu" in json.dumps(template).lower()
