"""Tests of the Helm chart in charts/ocync, rendered without a helm binary.

The chart is rendered by Helm's own Go engine through the helm-python-sdk package (import name
`helm_python`, which bundles libhelm_c: Helm's SDK behind a C ABI), offline: no cluster, no
network. The rendered objects are also validated against the Kubernetes API's OpenAPI schemas
bundled in the kubernetes-validate package (strict: unknown fields are errors). A render validates the values against values.schema.json first, exactly as
`helm install` and `helm template` do; a second copy of the chart without its schema shows that
the templates' own `fail` checks give the same clear message when schema validation is skipped
(`helm template --skip-schema-validation`).

Run with scripts/chart-test.sh, or: python -m unittest discover -s charts/tests -v
"""

from __future__ import annotations

import copy
import glob
import hashlib
import json
import os
import shutil
import tempfile
import unittest

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART_DIR = os.path.join(ROOT, "charts", "ocync")
RELEASE = "my-release"
NAMESPACE = "registry-sync"
FULLNAME = "my-release-ocync"

# A small valid ocync configuration (no `tags` block: a mapping without one syncs every tag).
CONFIG = {
    "registries": {
        "src": {"url": "cgr.dev"},
        "ecr": {"url": "123456789012.dkr.ecr.us-east-1.amazonaws.com"},
    },
    "defaults": {"source": "src", "targets": "ecr"},
    "mappings": [{"from": "chainguard/static", "to": "static"}],
}

POD_SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "fsGroup": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
SELECTOR_LABELS = {"app.kubernetes.io/name": "ocync", "app.kubernetes.io/instance": RELEASE}
STANDARD_LABELS = {
    **SELECTOR_LABELS,
    "app.kubernetes.io/version": "0.1.0",
    "app.kubernetes.io/managed-by": "Helm",
    "helm.sh/chart": "ocync-0.1.0",
}
WATCH_ARGS = [
    "watch",
    "--config",
    "/etc/ocync/config.yaml",
    "--interval",
    "300",
    "--health-bind",
    "0.0.0.0",
    "--health-port",
    "8080",
    "--log-format",
    "text",
]
SYNC_ARGS = ["sync", "--config", "/etc/ocync/config.yaml", "--log-format", "text"]
AZURE_USE = "azure.workload.identity/use"

_chart: helm.Chart | None = None
_chart_no_schema: helm.Chart | None = None
_tmp: str | None = None


def setUpModule() -> None:  # noqa: N802 (unittest's name)
    global _chart, _chart_no_schema, _tmp
    _chart = helm.Chart.load(CHART_DIR)
    # The same chart without values.schema.json: what `--skip-schema-validation` renders.
    _tmp = tempfile.mkdtemp(prefix="ocync-chart-")
    copy_dir = os.path.join(_tmp, "ocync")
    shutil.copytree(CHART_DIR, copy_dir)
    os.remove(os.path.join(copy_dir, "values.schema.json"))
    _chart_no_schema = helm.Chart.load(copy_dir)


def tearDownModule() -> None:  # noqa: N802
    for chart in (_chart, _chart_no_schema):
        if chart is not None:
            chart.close()
    if _tmp:
        shutil.rmtree(_tmp, ignore_errors=True)


def with_config(values: dict | None = None) -> dict:
    """`values` plus the test configuration (unless they bring their own)."""
    merged = {"config": copy.deepcopy(CONFIG)}
    merged.update(copy.deepcopy(values or {}))
    return merged


class Rendered:
    """The objects of one render, by kind."""

    def __init__(self, manifests: dict[str, str]):
        self.manifests = manifests
        self.notes = manifests.get("ocync/templates/NOTES.txt", "")
        self.objects: list[dict] = []
        for path, text in sorted(manifests.items()):
            if path.endswith("NOTES.txt"):
                continue
            for doc in yaml.safe_load_all(text):
                if doc is not None:
                    self.objects.append(doc)

    def kinds(self) -> set[str]:
        return {o["kind"] for o in self.objects}

    def all(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str) -> dict:
        found = self.all(kind)
        if len(found) != 1:
            raise AssertionError(f"expected one {kind}, found {len(found)} in {sorted(self.kinds())}")
        return found[0]

    def pod_template(self) -> dict:
        """The pod template of whichever workload was rendered."""
        kinds = self.kinds()
        if "Deployment" in kinds:
            return self.one("Deployment")["spec"]["template"]
        if "CronJob" in kinds:
            return self.one("CronJob")["spec"]["jobTemplate"]["spec"]["template"]
        return self.one("Job")["spec"]["template"]

    def pod(self) -> dict:
        return self.pod_template()["spec"]

    def container(self) -> dict:
        containers = self.pod()["containers"]
        assert len(containers) == 1, containers
        return containers[0]

    def env(self) -> dict[str, object]:
        return {e["name"]: e.get("value", e.get("valueFrom")) for e in self.container().get("env", [])}

    def volumes(self) -> dict[str, dict]:
        return {v["name"]: v for v in self.pod()["volumes"]}

    def mounts(self) -> dict[str, dict]:
        return {m["name"]: m for m in self.container()["volumeMounts"]}

    def config_yaml(self) -> str:
        return self.one("ConfigMap")["data"]["config.yaml"]


def render(values: dict | None = None, *, name: str = RELEASE, schema: bool = True) -> Rendered:
    chart = _chart if schema else _chart_no_schema
    assert chart is not None
    return Rendered(chart.render(values, name=name, namespace=NAMESPACE))


class RenderFailure(unittest.TestCase):
    """Invalid values fail the render with a message that names the value to fix."""

    def assert_fails(self, values: dict, *messages: str, schema: bool = True, error=helm.HelmError):
        with self.assertRaises(error) as caught:
            render(values, schema=schema)
        text = str(caught.exception)
        for message in messages:
            self.assertIn(message, text)
        return text

    def test_bad_mode(self):
        # The schema's enum answers first, as with `helm install`...
        self.assert_fails(
            with_config({"mode": "daemon"}),
            "/mode",
            "'watch', 'cronjob', 'job'",
            error=helm.HelmValuesError,
        )
        # ...and the template's own check when schema validation is skipped.
        self.assert_fails(
            with_config({"mode": "daemon"}),
            'mode must be one of watch, cronjob or job (got "daemon")',
            schema=False,
            error=helm.HelmRenderError,
        )

    def test_aws_without_role_arn(self):
        for schema in (True, False):
            self.assert_fails(
                with_config({"workloadIdentity": {"provider": "aws"}}),
                "workloadIdentity.aws.roleArn is empty",
                "EKS Pod Identity",
                schema=schema,
                error=helm.HelmRenderError,
            )

    def test_aws_role_arn_not_an_arn(self):
        self.assert_fails(
            with_config({"workloadIdentity": {"provider": "aws", "aws": {"roleArn": "ocync-role"}}}),
            'workloadIdentity.aws.roleArn must be an IAM role ARN like arn:aws:iam::123456789012:role/ocync (got "ocync-role")',
            error=helm.HelmRenderError,
        )

    def test_azure_without_client_id(self):
        for schema in (True, False):
            self.assert_fails(
                with_config({"workloadIdentity": {"provider": "azure", "azure": {"tenantId": "t"}}}),
                "workloadIdentity.azure.clientId is empty",
                schema=schema,
                error=helm.HelmRenderError,
            )

    def test_gcp_without_service_account(self):
        self.assert_fails(
            with_config({"workloadIdentity": {"provider": "gcp"}}),
            "workloadIdentity.gcp.serviceAccount is empty",
            error=helm.HelmRenderError,
        )

    def test_bad_provider(self):
        self.assert_fails(
            with_config({"workloadIdentity": {"provider": "eks-pod-identity"}}),
            "/workloadIdentity/provider",
            "'none', 'aws', 'azure', 'gcp'",
            error=helm.HelmValuesError,
        )
        self.assert_fails(
            with_config({"workloadIdentity": {"provider": "eks-pod-identity"}}),
            'workloadIdentity.provider must be one of none, aws, azure or gcp (got "eks-pod-identity"); EKS Pod Identity needs none',
            schema=False,
            error=helm.HelmRenderError,
        )

    def test_service_monitor_outside_watch_mode(self):
        for mode in ("cronjob", "job"):
            for schema in (True, False):
                self.assert_fails(
                    with_config({"mode": mode, "serviceMonitor": {"enabled": True}}),
                    f"serviceMonitor.enabled needs mode watch: only `ocync watch` serves /metrics (mode is {mode})",
                    schema=schema,
                    error=helm.HelmRenderError,
                )

    def test_shards_in_watch_mode(self):
        for schema in (True, False):
            self.assert_fails(
                with_config({"mode": "watch", "shards": 3}),
                "shards is 3 but mode is watch",
                "use mode cronjob or job for sharding",
                schema=schema,
                error=helm.HelmRenderError,
            )

    def test_shards_below_one(self):
        self.assert_fails(with_config({"mode": "job", "shards": 0}), "/shards", error=helm.HelmValuesError)
        self.assert_fails(
            with_config({"mode": "job", "shards": -2}),
            "shards must be 1 or more (got -2)",
            schema=False,
            error=helm.HelmRenderError,
        )

    def test_empty_config(self):
        self.assert_fails(
            {}, "config is empty: set config", "or existingConfigMap", error=helm.HelmRenderError
        )

    def test_bad_log_format(self):
        self.assert_fails(
            with_config({"logging": {"format": "xml"}}), "/logging/format", error=helm.HelmValuesError
        )
        self.assert_fails(
            with_config({"logging": {"format": "xml"}}),
            'logging.format must be text or json (got "xml")',
            schema=False,
            error=helm.HelmRenderError,
        )

    def test_bad_verbosity(self):
        self.assert_fails(
            with_config({"logging": {"verbosity": 3}}), "/logging/verbosity", error=helm.HelmValuesError
        )

    def test_bad_schedule(self):
        self.assert_fails(
            with_config({"watch": {"schedule": "0 */15 * * * *"}}),
            "watch.schedule must be a cron expression of 5 fields",
            error=helm.HelmRenderError,
        )

    def test_misspelt_key(self):
        # A typo in a structured block is refused instead of silently ignored.
        self.assert_fails(
            with_config({"workloadIdentity": {"provider": "azure", "azure": {"clientID": "x"}}}),
            "clientID",
            error=helm.HelmValuesError,
        )
        self.assert_fails(with_config({"shard": 3}), "shard", error=helm.HelmValuesError)

    def test_wrong_types(self):
        self.assert_fails(
            with_config({"watch": {"interval": "5m"}}), "/watch/interval", error=helm.HelmValuesError
        )
        self.assert_fails(with_config({"config": "registries: {}"}), "/config", error=helm.HelmValuesError)


class WatchMode(unittest.TestCase):
    def setUp(self):
        self.r = render(with_config())

    def test_objects(self):
        self.assertEqual(self.r.kinds(), {"ConfigMap", "ServiceAccount", "Deployment", "Service"})
        for obj in self.r.objects:
            self.assertEqual(obj["metadata"]["name"], FULLNAME, obj["kind"])
            self.assertEqual(obj["metadata"]["namespace"], NAMESPACE, obj["kind"])
            self.assertEqual(obj["metadata"]["labels"], STANDARD_LABELS, obj["kind"])
        self.assertNotIn("Secret", self.r.kinds())

    def test_deployment(self):
        d = self.r.one("Deployment")
        self.assertEqual(d["apiVersion"], "apps/v1")
        self.assertEqual(d["spec"]["replicas"], 1)
        self.assertEqual(d["spec"]["strategy"], {"type": "Recreate"})
        self.assertEqual(d["spec"]["selector"], {"matchLabels": SELECTOR_LABELS})
        labels = d["spec"]["template"]["metadata"]["labels"]
        self.assertEqual(labels, STANDARD_LABELS)
        self.assertNotIn(AZURE_USE, labels)

    def test_args(self):
        c = self.r.container()
        self.assertEqual(c["args"], WATCH_ARGS)
        self.assertNotIn("command", c, "the image's entrypoint is /usr/local/bin/ocync")
        self.assertEqual(c["image"], "ghcr.io/ocync/ocync:0.1.0")
        self.assertEqual(c["imagePullPolicy"], "IfNotPresent")

    def test_probes_and_port(self):
        c = self.r.container()
        self.assertEqual(c["ports"], [{"name": "http", "containerPort": 8080, "protocol": "TCP"}])
        self.assertEqual(
            c["livenessProbe"],
            {
                "httpGet": {"path": "/healthz", "port": "http"},
                "initialDelaySeconds": 10,
                "periodSeconds": 30,
                "timeoutSeconds": 5,
                "failureThreshold": 3,
            },
        )
        self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "http"})
        self.assertEqual(c["readinessProbe"]["periodSeconds"], 10)

    def test_custom_health_port(self):
        r = render(with_config({"watch": {"healthPort": 9102, "healthBind": "::"}}))
        c = r.container()
        self.assertEqual(c["ports"][0]["containerPort"], 9102)
        self.assertEqual(c["args"][c["args"].index("--health-port") + 1], "9102")
        self.assertEqual(c["args"][c["args"].index("--health-bind") + 1], "::")
        self.assertEqual(c["livenessProbe"]["httpGet"]["port"], "http")

    def test_service(self):
        s = self.r.one("Service")
        self.assertEqual(s["spec"]["type"], "ClusterIP")
        self.assertEqual(s["spec"]["selector"], SELECTOR_LABELS)
        # Metrics stay reachable while /readyz says the last cycle failed.
        self.assertIs(s["spec"]["publishNotReadyAddresses"], True)
        self.assertEqual(
            s["spec"]["ports"], [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
        )
        self.assertNotIn("annotations", s["metadata"])
        s = render(with_config({"service": {"annotations": {"prometheus.io/scrape": "true"}}})).one("Service")
        self.assertEqual(s["metadata"]["annotations"], {"prometheus.io/scrape": "true"})

    def test_security_contexts(self):
        self.assertEqual(self.r.pod()["securityContext"], POD_SECURITY_CONTEXT)
        self.assertEqual(self.r.container()["securityContext"], CONTAINER_SECURITY_CONTEXT)
        r = render(
            with_config(
                {
                    "podSecurityContext": {"runAsNonRoot": True, "runAsUser": 1000},
                    "securityContext": {"readOnlyRootFilesystem": True},
                }
            )
        )
        # An override replaces the whole block, as values maps do.
        self.assertEqual(r.pod()["securityContext"]["runAsUser"], 1000)
        self.assertEqual(r.container()["securityContext"]["readOnlyRootFilesystem"], True)

    def test_pod_basics(self):
        pod = self.r.pod()
        self.assertEqual(pod["serviceAccountName"], FULLNAME)
        self.assertIs(pod["automountServiceAccountToken"], False)
        self.assertEqual(pod["terminationGracePeriodSeconds"], 60)
        self.assertNotIn("restartPolicy", pod)  # a Deployment's is Always
        self.assertEqual(
            self.r.container()["resources"],
            {"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        )
        for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName", "imagePullSecrets"):
            self.assertNotIn(key, pod)

    def test_env_and_volumes(self):
        self.assertEqual(
            self.r.container()["env"], [{"name": "OCYNC_CACHE_DIR", "value": "/var/cache/ocync"}]
        )
        self.assertNotIn("envFrom", self.r.container())
        self.assertEqual(
            self.r.container()["volumeMounts"],
            [
                {"name": "config", "mountPath": "/etc/ocync", "readOnly": True},
                {"name": "cache", "mountPath": "/var/cache/ocync"},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
        )
        self.assertEqual(
            self.r.volumes(),
            {
                "config": {
                    "name": "config",
                    "projected": {
                        "sources": [
                            {
                                "configMap": {
                                    "name": FULLNAME,
                                    "items": [{"key": "config.yaml", "path": "config.yaml"}],
                                }
                            }
                        ]
                    },
                },
                "cache": {"name": "cache", "emptyDir": {}},
                "tmp": {"name": "tmp", "emptyDir": {}},
            },
        )

    def test_schedule_and_jitter(self):
        r = render(with_config({"watch": {"schedule": "*/15 * * * *", "jitter": 30}}))
        self.assertEqual(
            r.container()["args"],
            [
                "watch",
                "--config",
                "/etc/ocync/config.yaml",
                "--schedule",
                "*/15 * * * *",
                "--health-bind",
                "0.0.0.0",
                "--health-port",
                "8080",
                "--jitter",
                "30",
                "--log-format",
                "text",
            ],
        )

    def test_interval(self):
        args = render(with_config({"watch": {"interval": 3600}})).container()["args"]
        self.assertEqual(args[3:5], ["--interval", "3600"])
        self.assertNotIn("--schedule", args)
        self.assertNotIn("--jitter", args)

    def test_logging_and_extra_args(self):
        args = render(with_config({"logging": {"format": "json", "verbosity": 1}})).container()["args"]
        self.assertEqual(args[-3:], ["--log-format", "json", "-v"])
        args = render(with_config({"logging": {"verbosity": 2}, "extraArgs": ["--json"]})).container()["args"]
        self.assertEqual(args[-4:], ["--log-format", "text", "-vv", "--json"])

    def test_notes(self):
        self.assertIn(f"kubectl -n {NAMESPACE} logs -f deployment/{FULLNAME}", self.r.notes)
        self.assertIn("/metrics", self.r.notes)


class CronJobMode(unittest.TestCase):
    def setUp(self):
        self.r = render(with_config({"mode": "cronjob"}))

    def test_objects(self):
        self.assertEqual(self.r.kinds(), {"ConfigMap", "ServiceAccount", "CronJob"})

    def test_cronjob(self):
        cj = self.r.one("CronJob")
        self.assertEqual(cj["apiVersion"], "batch/v1")
        spec = cj["spec"]
        self.assertEqual(spec["schedule"], "0 */6 * * *")
        self.assertEqual(spec["concurrencyPolicy"], "Forbid")
        self.assertEqual(spec["successfulJobsHistoryLimit"], 3)
        self.assertEqual(spec["failedJobsHistoryLimit"], 3)
        self.assertIs(spec["suspend"], False)
        self.assertNotIn("timeZone", spec)
        self.assertNotIn("startingDeadlineSeconds", spec)
        job = spec["jobTemplate"]["spec"]
        self.assertEqual(job["backoffLimit"], 2)
        for key in (
            "completionMode",
            "completions",
            "parallelism",
            "activeDeadlineSeconds",
            "ttlSecondsAfterFinished",
        ):
            self.assertNotIn(key, job)

    def test_pod(self):
        pod = self.r.pod()
        self.assertEqual(pod["restartPolicy"], "OnFailure")
        c = self.r.container()
        self.assertEqual(c["args"], SYNC_ARGS)
        for key in ("ports", "livenessProbe", "readinessProbe"):
            self.assertNotIn(key, c)
        self.assertEqual(self.r.env(), {"OCYNC_CACHE_DIR": "/var/cache/ocync"})
        self.assertEqual(pod["securityContext"], POD_SECURITY_CONTEXT)
        self.assertEqual(c["securityContext"], CONTAINER_SECURITY_CONTEXT)
        self.assertEqual(pod["serviceAccountName"], FULLNAME)
        self.assertIn("checksum/config", self.r.pod_template()["metadata"]["annotations"])

    def test_settings(self):
        r = render(
            with_config(
                {
                    "mode": "cronjob",
                    "cronjob": {
                        "schedule": "*/30 * * * *",
                        "timeZone": "Europe/Paris",
                        "concurrencyPolicy": "Replace",
                        "suspend": True,
                        "successfulJobsHistoryLimit": 1,
                        "failedJobsHistoryLimit": 5,
                        "startingDeadlineSeconds": 300,
                    },
                    "job": {
                        "restartPolicy": "Never",
                        "backoffLimit": 0,
                        "activeDeadlineSeconds": 7200,
                        "ttlSecondsAfterFinished": 86400,
                    },
                }
            )
        )
        spec = r.one("CronJob")["spec"]
        self.assertEqual(spec["schedule"], "*/30 * * * *")
        self.assertEqual(spec["timeZone"], "Europe/Paris")
        self.assertEqual(spec["concurrencyPolicy"], "Replace")
        self.assertIs(spec["suspend"], True)
        self.assertEqual((spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]), (1, 5))
        self.assertEqual(spec["startingDeadlineSeconds"], 300)
        job = spec["jobTemplate"]["spec"]
        self.assertEqual(job["backoffLimit"], 0)
        self.assertEqual(job["activeDeadlineSeconds"], 7200)
        self.assertEqual(job["ttlSecondsAfterFinished"], 86400)
        self.assertEqual(r.pod()["restartPolicy"], "Never")

    def test_shards(self):
        r = render(with_config({"mode": "cronjob", "shards": 3}))
        job = r.one("CronJob")["spec"]["jobTemplate"]["spec"]
        self.assertEqual(job["completionMode"], "Indexed")
        self.assertEqual(job["completions"], 3)
        self.assertEqual(job["parallelism"], 3)
        self.assertEqual(
            r.container()["args"],
            ["sync", "--config", "/etc/ocync/config.yaml", "--shard", "3", "--log-format", "text"],
        )
        self.assertIn("3 shards", r.notes)


class JobMode(unittest.TestCase):
    def setUp(self):
        self.r = render(with_config({"mode": "job"}))

    def test_objects(self):
        self.assertEqual(self.r.kinds(), {"ConfigMap", "ServiceAccount", "Job"})

    def test_job(self):
        job = self.r.one("Job")
        # Renamed per Helm revision: a Job's pod template is immutable.
        self.assertEqual(job["metadata"]["name"], f"{FULLNAME}-1")
        self.assertEqual(job["spec"]["backoffLimit"], 2)
        for key in (
            "completionMode",
            "completions",
            "parallelism",
            "activeDeadlineSeconds",
            "ttlSecondsAfterFinished",
        ):
            self.assertNotIn(key, job["spec"])
        self.assertEqual(self.r.pod()["restartPolicy"], "OnFailure")
        self.assertEqual(self.r.container()["args"], SYNC_ARGS)
        self.assertNotIn("ports", self.r.container())
        self.assertEqual(self.r.env(), {"OCYNC_CACHE_DIR": "/var/cache/ocync"})
        self.assertIn(f"logs -f job/{FULLNAME}-1", self.r.notes)

    def test_revision_in_name(self):
        assert _chart is not None
        r = Rendered(
            _chart.render(with_config({"mode": "job"}), name=RELEASE, namespace=NAMESPACE, revision=7)
        )
        self.assertEqual(r.one("Job")["metadata"]["name"], f"{FULLNAME}-7")

    def test_deadlines(self):
        r = render(
            with_config({"mode": "job", "job": {"activeDeadlineSeconds": 600, "ttlSecondsAfterFinished": 0}})
        )
        spec = r.one("Job")["spec"]
        self.assertEqual(spec["activeDeadlineSeconds"], 600)
        self.assertEqual(spec["ttlSecondsAfterFinished"], 0)

    def test_shards(self):
        r = render(with_config({"mode": "job", "shards": 3, "logging": {"format": "json"}}))
        spec = r.one("Job")["spec"]
        self.assertEqual(spec["completionMode"], "Indexed")
        self.assertEqual(spec["completions"], 3)
        self.assertEqual(spec["parallelism"], 3)
        self.assertEqual(
            r.container()["args"],
            ["sync", "--config", "/etc/ocync/config.yaml", "--shard", "3", "--log-format", "json"],
        )

    def test_one_shard_is_not_indexed(self):
        spec = render(with_config({"mode": "job", "shards": 1})).one("Job")["spec"]
        self.assertNotIn("completionMode", spec)


class WorkloadIdentity(unittest.TestCase):
    def sa(self, r: Rendered) -> dict:
        sa = r.one("ServiceAccount")
        self.assertEqual(sa["metadata"]["name"], FULLNAME)
        self.assertEqual(r.pod()["serviceAccountName"], FULLNAME)
        return sa

    def test_none_is_eks_pod_identity(self):
        r = render(with_config())
        sa = self.sa(r)
        self.assertNotIn("annotations", sa["metadata"])
        self.assertNotIn(AZURE_USE, r.pod_template()["metadata"]["labels"])

    def test_aws_irsa(self):
        arn = "arn:aws:iam::123456789012:role/ocync-irsa"
        r = render(with_config({"workloadIdentity": {"provider": "aws", "aws": {"roleArn": arn}}}))
        self.assertEqual(self.sa(r)["metadata"]["annotations"], {"eks.amazonaws.com/role-arn": arn})
        self.assertNotIn(AZURE_USE, r.pod_template()["metadata"]["labels"])

    def test_aws_partitions(self):
        for arn in (
            "arn:aws-us-gov:iam::123456789012:role/ocync",
            "arn:aws-cn:iam::123456789012:role/path/ocync",
        ):
            r = render(with_config({"workloadIdentity": {"provider": "aws", "aws": {"roleArn": arn}}}))
            self.assertEqual(self.sa(r)["metadata"]["annotations"]["eks.amazonaws.com/role-arn"], arn)

    def test_azure(self):
        for mode in ("watch", "cronjob", "job"):
            r = render(
                with_config(
                    {
                        "mode": mode,
                        "workloadIdentity": {
                            "provider": "azure",
                            "azure": {
                                "clientId": "00000000-0000-0000-0000-000000000000",
                                "tenantId": "tenant",
                            },
                        },
                    }
                )
            )
            self.assertEqual(
                self.sa(r)["metadata"]["annotations"],
                {
                    "azure.workload.identity/client-id": "00000000-0000-0000-0000-000000000000",
                    "azure.workload.identity/tenant-id": "tenant",
                },
            )
            # The string "true", on the pod (not the ServiceAccount): the webhook's selector.
            self.assertEqual(r.pod_template()["metadata"]["labels"][AZURE_USE], "true")
            self.assertNotIn(AZURE_USE, r.one("ServiceAccount")["metadata"]["labels"])

    def test_azure_without_tenant(self):
        r = render(with_config({"workloadIdentity": {"provider": "azure", "azure": {"clientId": "cid"}}}))
        self.assertEqual(self.sa(r)["metadata"]["annotations"], {"azure.workload.identity/client-id": "cid"})

    def test_gcp(self):
        gsa = "ocync@my-project.iam.gserviceaccount.com"
        r = render(with_config({"workloadIdentity": {"provider": "gcp", "gcp": {"serviceAccount": gsa}}}))
        self.assertEqual(self.sa(r)["metadata"]["annotations"], {"iam.gke.io/gcp-service-account": gsa})
        self.assertNotIn(AZURE_USE, r.pod_template()["metadata"]["labels"])

    def test_extra_annotations_merged(self):
        arn = "arn:aws:iam::123456789012:role/ocync"
        r = render(
            with_config(
                {
                    "workloadIdentity": {"provider": "aws", "aws": {"roleArn": arn}},
                    "serviceAccount": {"annotations": {"eks.amazonaws.com/sts-regional-endpoints": "true"}},
                }
            )
        )
        self.assertEqual(
            self.sa(r)["metadata"]["annotations"],
            {"eks.amazonaws.com/role-arn": arn, "eks.amazonaws.com/sts-regional-endpoints": "true"},
        )

    def test_existing_service_account(self):
        r = render(with_config({"serviceAccount": {"create": False, "name": "ocync-sa"}}))
        self.assertNotIn("ServiceAccount", r.kinds())
        self.assertEqual(r.pod()["serviceAccountName"], "ocync-sa")
        r = render(with_config({"serviceAccount": {"create": False}}))
        self.assertEqual(r.pod()["serviceAccountName"], "default")

    def test_named_service_account(self):
        r = render(with_config({"serviceAccount": {"name": "sync"}}))
        self.assertEqual(r.one("ServiceAccount")["metadata"]["name"], "sync")
        self.assertEqual(r.pod()["serviceAccountName"], "sync")


class Names(unittest.TestCase):
    def test_release_containing_ocync(self):
        for release in ("ocync", "ocync-prod", "team-ocync"):
            r = render(with_config(), name=release)
            self.assertEqual(r.one("Deployment")["metadata"]["name"], release)
            self.assertEqual(r.pod()["serviceAccountName"], release)

    def test_fullname_override(self):
        r = render(with_config({"fullnameOverride": "mirror"}))
        self.assertEqual({o["metadata"]["name"] for o in r.objects}, {"mirror"})
        self.assertEqual(r.pod()["serviceAccountName"], "mirror")

    def test_image(self):
        c = render(
            with_config(
                {"image": {"repository": "registry.example/ocync", "tag": "1.2.3", "pullPolicy": "Always"}}
            )
        ).container()
        self.assertEqual((c["image"], c["imagePullPolicy"]), ("registry.example/ocync:1.2.3", "Always"))
        digest = "sha256:" + "a" * 64
        c = render(with_config({"image": {"digest": digest}})).container()
        self.assertEqual(c["image"], f"ghcr.io/ocync/ocync@{digest}")


class Config(unittest.TestCase):
    def test_round_trip(self):
        config = {
            "global": {"max_concurrent_transfers": 8, "cache_ttl": "0", "staging_size_limit": "500MB"},
            "registries": {
                "ghcr": {
                    "url": "ghcr.io",
                    "credentials": {"username": "bot", "password": "${GHCR_TOKEN}"},
                    "head_first": True,
                },
                "ecr": {"url": "123456789012.dkr.ecr.us-east-1.amazonaws.com", "auth_type": "ecr"},
            },
            "defaults": {"source": "ghcr", "targets": ["ecr"], "tags": {"semver": ">=1.2, <2", "latest": 5}},
            "mappings": [
                {"from": "owner/app", "to": "app"},
                {"from": "owner/tool", "to": "tool", "tags": {"glob": ["v*"], "exclude": ["*-rc*"]}},
            ],
        }
        for mode in ("watch", "cronjob", "job"):
            r = render({"mode": mode, "config": config})
            self.assertEqual(yaml.safe_load(r.config_yaml()), config)

    def test_seed_configs_round_trip(self):
        for path in sorted(glob.glob(os.path.join(CHART_DIR, "ci", "*.yaml"))):
            with open(path) as f:
                values = yaml.safe_load(f)
            self.assertEqual(yaml.safe_load(render(values).config_yaml()), values["config"], path)

    def test_checksum(self):
        r = render(with_config())
        checksum = r.pod_template()["metadata"]["annotations"]["checksum/config"]
        self.assertEqual(checksum, hashlib.sha256(r.config_yaml().encode()).hexdigest())
        changed = copy.deepcopy(CONFIG)
        changed["mappings"].append({"from": "chainguard/busybox", "to": "busybox"})
        other = render({"config": changed}).pod_template()["metadata"]["annotations"]["checksum/config"]
        self.assertNotEqual(checksum, other)
        # Values outside the configuration leave it alone.
        same = render(with_config({"logging": {"format": "json"}})).pod_template()["metadata"]["annotations"]
        self.assertEqual(same["checksum/config"], checksum)

    def test_existing_config_map(self):
        r = render({"existingConfigMap": "my-ocync-config"})
        self.assertNotIn("ConfigMap", r.kinds())
        source = r.volumes()["config"]["projected"]["sources"][0]["configMap"]
        self.assertEqual(
            source, {"name": "my-ocync-config", "items": [{"key": "config.yaml", "path": "config.yaml"}]}
        )
        self.assertNotIn("annotations", r.pod_template()["metadata"])

    def test_pod_annotations(self):
        r = render(with_config({"podAnnotations": {"a": "b"}}))
        annotations = r.pod_template()["metadata"]["annotations"]
        self.assertEqual(annotations["a"], "b")
        self.assertIn("checksum/config", annotations)


class SeedExamples(unittest.TestCase):
    """The values files of charts/ocync/ci, as promised in the README: EKS and AKS with only them."""

    def load(self, name: str) -> dict:
        with open(os.path.join(CHART_DIR, "ci", name)) as f:
            return yaml.safe_load(f)

    def check_common(self, r: Rendered):
        self.assertEqual(r.kinds(), {"ConfigMap", "ServiceAccount", "Deployment", "Service"})
        self.assertEqual(r.one("ServiceAccount")["metadata"]["name"], FULLNAME)
        self.assertEqual(r.pod()["serviceAccountName"], FULLNAME)
        self.assertEqual(r.container()["args"], WATCH_ARGS)
        self.assertEqual(r.env()["OCYNC_CACHE_DIR"], "/var/cache/ocync")

    def test_aks_workload_identity(self):
        r = render(self.load("aks-workload-identity-values.yaml"))
        self.check_common(r)
        self.assertEqual(
            r.one("ServiceAccount")["metadata"]["annotations"],
            {
                "azure.workload.identity/client-id": "00000000-0000-0000-0000-000000000000",
                "azure.workload.identity/tenant-id": "11111111-1111-1111-1111-111111111111",
            },
        )
        self.assertEqual(r.pod_template()["metadata"]["labels"][AZURE_USE], "true")
        self.assertIn("myregistry.azurecr.io", r.config_yaml())

    def test_eks_pod_identity(self):
        r = render(self.load("eks-pod-identity-values.yaml"))
        self.check_common(r)
        self.assertNotIn("annotations", r.one("ServiceAccount")["metadata"])
        self.assertNotIn(AZURE_USE, r.pod_template()["metadata"]["labels"])

    def test_eks_irsa(self):
        r = render(self.load("eks-irsa-values.yaml"))
        self.check_common(r)
        self.assertEqual(
            r.one("ServiceAccount")["metadata"]["annotations"],
            {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/ocync-irsa"},
        )
        self.assertNotIn(AZURE_USE, r.pod_template()["metadata"]["labels"])


class Persistence(unittest.TestCase):
    def test_new_claim(self):
        for mode in ("watch", "cronjob", "job"):
            r = render(with_config({"mode": mode, "persistence": {"enabled": True}}))
            pvc = r.one("PersistentVolumeClaim")
            self.assertEqual(pvc["metadata"]["name"], f"{FULLNAME}-cache")
            self.assertEqual(
                pvc["spec"],
                {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            )
            self.assertEqual(
                r.volumes()["cache"],
                {"name": "cache", "persistentVolumeClaim": {"claimName": f"{FULLNAME}-cache"}},
            )
            self.assertEqual(r.mounts()["cache"]["mountPath"], "/var/cache/ocync")
            self.assertEqual(r.env()["OCYNC_CACHE_DIR"], "/var/cache/ocync")
            self.assertEqual(r.volumes()["tmp"], {"name": "tmp", "emptyDir": {}})

    def test_claim_settings(self):
        r = render(
            with_config(
                {
                    "mode": "cronjob",
                    "shards": 2,
                    "persistence": {
                        "enabled": True,
                        "size": "20Gi",
                        "storageClass": "efs-sc",
                        "accessModes": ["ReadWriteMany"],
                        "annotations": {"a": "b"},
                    },
                }
            )
        )
        pvc = r.one("PersistentVolumeClaim")
        self.assertEqual(pvc["spec"]["storageClassName"], "efs-sc")
        self.assertEqual(pvc["spec"]["accessModes"], ["ReadWriteMany"])
        self.assertEqual(pvc["spec"]["resources"]["requests"]["storage"], "20Gi")
        self.assertEqual(pvc["metadata"]["annotations"], {"a": "b"})
        pvc = render(with_config({"persistence": {"enabled": True, "storageClass": "-"}})).one(
            "PersistentVolumeClaim"
        )
        self.assertEqual(pvc["spec"]["storageClassName"], "")

    def test_existing_claim(self):
        r = render(with_config({"persistence": {"enabled": True, "existingClaim": "ocync-cache"}}))
        self.assertNotIn("PersistentVolumeClaim", r.kinds())
        self.assertEqual(
            r.volumes()["cache"], {"name": "cache", "persistentVolumeClaim": {"claimName": "ocync-cache"}}
        )

    def test_empty_dir_settings(self):
        r = render(with_config({"cacheEmptyDir": {"sizeLimit": "10Gi"}, "tmpEmptyDir": {"medium": "Memory"}}))
        self.assertEqual(r.volumes()["cache"]["emptyDir"], {"sizeLimit": "10Gi"})
        self.assertEqual(r.volumes()["tmp"]["emptyDir"], {"medium": "Memory"})
        self.assertNotIn("PersistentVolumeClaim", r.kinds())


class ServiceMonitor(unittest.TestCase):
    def test_enabled(self):
        r = render(
            with_config({"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}})
        )
        sm = r.one("ServiceMonitor")
        self.assertEqual(sm["apiVersion"], "monitoring.coreos.com/v1")
        self.assertEqual(sm["metadata"]["labels"]["release"], "kube-prometheus-stack")
        self.assertEqual(sm["spec"]["selector"], {"matchLabels": SELECTOR_LABELS})
        # The selector finds the Service, and the endpoint names its port.
        service = r.one("Service")
        for key, value in sm["spec"]["selector"]["matchLabels"].items():
            self.assertEqual(service["metadata"]["labels"][key], value)
        self.assertEqual(sm["spec"]["endpoints"], [{"port": "http", "path": "/metrics", "interval": "60s"}])
        self.assertEqual(service["spec"]["ports"][0]["name"], "http")
        self.assertEqual(sm["spec"]["namespaceSelector"], {"matchNames": [NAMESPACE]})

    def test_settings(self):
        sm = render(
            with_config({"serviceMonitor": {"enabled": True, "interval": "30s", "scrapeTimeout": "10s"}})
        ).one("ServiceMonitor")
        self.assertEqual(sm["spec"]["endpoints"][0]["interval"], "30s")
        self.assertEqual(sm["spec"]["endpoints"][0]["scrapeTimeout"], "10s")

    def test_disabled_by_default(self):
        self.assertNotIn("ServiceMonitor", render(with_config()).kinds())


class SecretsAndEnv(unittest.TestCase):
    def test_docker_config(self):
        for mode in ("watch", "cronjob", "job"):
            r = render(with_config({"mode": mode, "dockerConfig": {"existingSecret": "regcred"}}))
            sources = r.volumes()["config"]["projected"]["sources"]
            self.assertEqual(
                sources[1],
                {
                    "secret": {
                        "name": "regcred",
                        "items": [{"key": ".dockerconfigjson", "path": "docker/config.json"}],
                    }
                },
            )
            # /etc/ocync/docker/config.json and /etc/ocync/config.yaml from one read-only mount.
            self.assertEqual(
                r.mounts()["config"], {"name": "config", "mountPath": "/etc/ocync", "readOnly": True}
            )
            self.assertEqual(r.env()["DOCKER_CONFIG"], "/etc/ocync/docker")
            self.assertNotIn("Secret", r.kinds())

    def test_credentials(self):
        r = render(with_config({"credentials": {"existingSecret": "registry-passwords"}}))
        self.assertEqual(r.container()["envFrom"], [{"secretRef": {"name": "registry-passwords"}}])
        self.assertNotIn("Secret", r.kinds())
        self.assertNotIn("DOCKER_CONFIG", r.env())

    def test_env_passthrough(self):
        env = [
            {"name": "HTTPS_PROXY", "value": "http://proxy:3128"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ]
        env_from = [{"configMapRef": {"name": "proxy-settings"}}]
        r = render(with_config({"env": env, "envFrom": env_from, "credentials": {"existingSecret": "creds"}}))
        self.assertEqual(r.container()["env"][1:], env)
        self.assertEqual(r.container()["envFrom"], [{"secretRef": {"name": "creds"}}] + env_from)

    def test_aws_fips_and_region(self):
        r = render(with_config({"aws": {"useFipsEndpoint": True, "region": "us-gov-west-1"}}))
        self.assertEqual(
            r.container()["env"],
            [
                {"name": "OCYNC_CACHE_DIR", "value": "/var/cache/ocync"},
                {"name": "AWS_REGION", "value": "us-gov-west-1"},
                {"name": "AWS_USE_FIPS_ENDPOINT", "value": "true"},
            ],
        )
        self.assertNotIn("AWS_USE_FIPS_ENDPOINT", render(with_config()).env())


class Passthrough(unittest.TestCase):
    def test_pod_settings(self):
        values = with_config(
            {
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "tolerations": [{"key": "sync", "operator": "Exists", "effect": "NoSchedule"}],
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "Exists"}]}]
                        }
                    }
                },
                "priorityClassName": "low",
                "imagePullSecrets": [{"name": "pull"}],
                "podLabels": {"team": "platform"},
                "extraVolumes": [{"name": "ca", "configMap": {"name": "corp-ca"}}],
                "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ocync-ca", "readOnly": True}],
                "terminationGracePeriodSeconds": 90,
                "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
            }
        )
        for mode in ("watch", "cronjob", "job"):
            r = render({**values, "mode": mode})
            pod = r.pod()
            for key in (
                "nodeSelector",
                "tolerations",
                "affinity",
                "priorityClassName",
                "imagePullSecrets",
                "terminationGracePeriodSeconds",
            ):
                self.assertEqual(pod[key], values[key], key)
            self.assertEqual(r.pod_template()["metadata"]["labels"]["team"], "platform")
            self.assertEqual(r.volumes()["ca"], values["extraVolumes"][0])
            self.assertEqual(r.mounts()["ca"], values["extraVolumeMounts"][0])
            self.assertEqual(r.container()["resources"], values["resources"])

    def test_resources_merge_with_defaults(self):
        # Helm merges maps with the defaults: a request alone keeps the default limit, and
        # null removes a default (as values.yaml says).
        r = render(with_config({"resources": {"requests": {"memory": "256Mi"}}}))
        self.assertEqual(
            r.container()["resources"],
            {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        )
        r = render(with_config({"resources": {"limits": None}}))
        self.assertEqual(r.container()["resources"], {"requests": {"cpu": "250m", "memory": "128Mi"}})


class KubernetesSchemas(unittest.TestCase):
    """Every rendered object is valid for the Kubernetes API, checked against the API's own
    OpenAPI schemas (kubernetes-validate, strict: an unknown or misspelt field is an error),
    for the oldest and the newest Kubernetes versions the package carries."""

    VERSIONS = ("1.25.0", kubernetes_validate.utils.latest_version())

    def variants(self):
        everything = with_config(
            {
                "persistence": {"enabled": True, "storageClass": "gp3", "annotations": {"a": "b"}},
                "dockerConfig": {"existingSecret": "regcred"},
                "credentials": {"existingSecret": "creds"},
                "aws": {"useFipsEndpoint": True, "region": "us-east-1"},
                "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                "envFrom": [{"configMapRef": {"name": "c"}}],
                "podAnnotations": {"a": "b"},
                "podLabels": {"team": "x"},
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "tolerations": [{"key": "k", "operator": "Exists"}],
                "priorityClassName": "low",
                "imagePullSecrets": [{"name": "pull"}],
                "extraVolumes": [{"name": "ca", "configMap": {"name": "ca"}}],
                "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ca"}],
                "cacheEmptyDir": {"sizeLimit": "5Gi"},
                "service": {"annotations": {"a": "b"}},
                "serviceAccount": {"annotations": {"a": "b"}},
                "logging": {"format": "json", "verbosity": 2},
                "extraArgs": ["--json"],
            }
        )
        identities = [
            {"provider": "none"},
            {"provider": "aws", "aws": {"roleArn": "arn:aws:iam::123456789012:role/ocync"}},
            {"provider": "azure", "azure": {"clientId": "c", "tenantId": "t"}},
            {"provider": "gcp", "gcp": {"serviceAccount": "s@p.iam.gserviceaccount.com"}},
        ]
        for identity in identities:
            yield with_config({"workloadIdentity": identity})
            yield with_config({"mode": "cronjob", "workloadIdentity": identity})
            yield with_config({"mode": "job", "workloadIdentity": identity})
        yield {**everything, "serviceMonitor": {"enabled": True}, "watch": {"schedule": "*/5 * * * *"}}
        yield {
            **everything,
            "mode": "cronjob",
            "shards": 3,
            "cronjob": {"timeZone": "UTC", "startingDeadlineSeconds": 60},
            "job": {"activeDeadlineSeconds": 60, "ttlSecondsAfterFinished": 0, "restartPolicy": "Never"},
        }
        yield {
            **everything,
            "mode": "job",
            "shards": 3,
            "persistence": {"enabled": True, "existingClaim": "c"},
        }
        yield {"existingConfigMap": "cm", "serviceAccount": {"create": False}}
        for path in sorted(glob.glob(os.path.join(CHART_DIR, "ci", "*.yaml"))):
            with open(path) as f:
                yield yaml.safe_load(f)

    def test_objects_are_valid(self):
        checked = set()
        for values in self.variants():
            for obj in render(values).objects:
                if obj["kind"] == "ServiceMonitor":
                    continue  # a CRD: its fields are checked in ServiceMonitor above
                for version in self.VERSIONS:
                    with self.subTest(kind=obj["kind"], version=version, values=values):
                        try:
                            kubernetes_validate.validate(obj, version, strict=True)
                        except kubernetes_validate.ValidationError as e:
                            path = ".".join(str(p) for p in e.path)
                            self.fail(
                                f"{obj['kind']} is invalid for Kubernetes {version} at {path}: {e.message}"
                            )
                checked.add(obj["kind"])
        self.assertEqual(
            checked,
            {
                "ConfigMap",
                "ServiceAccount",
                "Deployment",
                "Service",
                "CronJob",
                "Job",
                "PersistentVolumeClaim",
            },
        )

    def test_a_misspelt_field_is_caught(self):
        # The check itself works: strict schemas refuse a field Kubernetes does not know.
        service = render(with_config()).one("Service")
        service["spec"]["publishNotReadyAdresses"] = True
        with self.assertRaises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(service, self.VERSIONS[-1], strict=True)


class Lint(unittest.TestCase):
    def assert_clean(self, values: dict):
        report = helm.lint(CHART_DIR, values, strict=True)
        self.assertEqual(report["errors"], [])
        # Severity 1 is informational (e.g. "icon is recommended"); nothing above it.
        self.assertEqual([m for m in report["messages"] if m["severity"] >= 2], [])

    def test_seed_values(self):
        files = sorted(glob.glob(os.path.join(CHART_DIR, "ci", "*.yaml")))
        self.assertEqual(len(files), 3)
        for path in files:
            with open(path) as f:
                self.assert_clean(yaml.safe_load(f))

    def test_every_mode(self):
        self.assert_clean(with_config({"mode": "cronjob", "shards": 4, "persistence": {"enabled": True}}))
        self.assert_clean(with_config({"mode": "job", "dockerConfig": {"existingSecret": "x"}}))

    def test_api_versions_current_for_oldest_supported_kubernetes(self):
        # Lint checks deprecated and removed API versions against the Kubernetes version given.
        for mode in ("watch", "cronjob", "job"):
            values = with_config({"mode": mode, "persistence": {"enabled": True}})
            if mode == "watch":
                values["serviceMonitor"] = {"enabled": True}
            for kube in ("v1.24.0", "v1.33.0"):
                report = helm.lint(CHART_DIR, values, strict=True, kube_version=kube)
                self.assertEqual(report["errors"], [], (mode, kube))
                self.assertEqual([m for m in report["messages"] if m["severity"] >= 2], [], (mode, kube))

    def test_lint_reports_schema_errors(self):
        report = helm.lint(CHART_DIR, with_config({"mode": "daemon"}))
        self.assertTrue(any("/mode" in e for e in report["errors"]), report)


class Documentation(unittest.TestCase):
    """values.yaml, values.schema.json and README.md describe the same values."""

    def setUp(self):
        with open(os.path.join(CHART_DIR, "values.yaml")) as f:
            self.values = yaml.safe_load(f)
        with open(os.path.join(CHART_DIR, "values.schema.json")) as f:
            self.schema = json.load(f)
        with open(os.path.join(CHART_DIR, "README.md")) as f:
            self.readme = f.read()

    def walk(self, values: dict, schema: dict, prefix: str = ""):
        props = schema.get("properties", {})
        for key, value in values.items():
            path = prefix + key
            self.assertIn(key, props, f"{path} is missing from values.schema.json")
            if isinstance(value, dict) and props[key].get("additionalProperties") is False:
                yield from self.walk(value, props[key], path + ".")
            else:
                yield path
        if schema.get("additionalProperties") is False:
            for key in props:
                if key != "global":
                    self.assertIn(key, values, f"{prefix}{key} is in the schema but not in values.yaml")

    def test_schema_matches_values(self):
        paths = list(self.walk(self.values, self.schema))
        self.assertGreater(len(paths), 60)

    def test_readme_lists_every_value(self):
        for path in self.walk(self.values, self.schema):
            self.assertIn(f"`{path}`", self.readme, f"{path} is missing from README.md")

    def test_defaults_render(self):
        self.assertEqual(_chart.values, self.values)  # type: ignore[union-attr]
        self.assertEqual(self.values["mode"], "watch")
        self.assertEqual(self.values["image"]["repository"], "ghcr.io/ocync/ocync")


if __name__ == "__main__":
    unittest.main()
