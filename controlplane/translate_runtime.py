"""Translate the accepted config into ext_proc's runtime config (weir.config.v1)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from controlplane.errors import ConfigError, ConfigInvalid
from controlplane.model import ConfigSet, Limits
from controlplane.translate_envoy import (
    CLUSTER_HEADER,
    ENDPOINT_HEADER,
    backend_cluster_name,
    fallback_cluster_name,
    parse_upstream,
)
from weir.config.v1 import runtime_pb2

RUNTIME_RESOURCE_NAME = "runtime"
_PII_ACTIONS = {
    "anonymize": runtime_pb2.PiiPolicy.ACTION_ANONYMIZE,
    "block": runtime_pb2.PiiPolicy.ACTION_BLOCK,
    "flag": runtime_pb2.PiiPolicy.ACTION_FLAG,
}
_ART9_ACTIONS = {
    "flag": runtime_pb2.PiiPolicy.ART9_ACTION_FLAG,
    "block": runtime_pb2.PiiPolicy.ART9_ACTION_BLOCK,
    "ignore": runtime_pb2.PiiPolicy.ART9_ACTION_IGNORE,
}
_STAGES = {
    "request": runtime_pb2.Policy.STAGE_REQUEST,
    "response": runtime_pb2.Policy.STAGE_RESPONSE,
}


def translate(
    config: ConfigSet, environ: Mapping[str, str], max_request_bytes: int = 0
) -> runtime_pb2.RuntimeConfig:
    """Raises ConfigInvalid when a referenced credential is missing from `environ`."""
    errors: list[ConfigError] = []
    runtime = runtime_pb2.RuntimeConfig(
        cluster_header=CLUSTER_HEADER,
        endpoint_header=ENDPOINT_HEADER,
        max_request_bytes=max_request_bytes,
    )
    for backend in config.backends:
        upstream = parse_upstream(backend.base_url)
        api_key = ""
        if backend.api_key_env:
            api_key = environ.get(backend.api_key_env, "")
            if not api_key:
                errors.append(
                    ConfigError(
                        backend.source_file,
                        "Backend",
                        backend.name,
                        "spec.apiKey.env",
                        f"environment variable {backend.api_key_env} is not set or empty",
                    )
                )
        elif backend.api_key_secret:
            name, key = backend.api_key_secret
            secret = config.secret(name)
            api_key = secret.values.get(key, "").strip() if secret else ""
            if not api_key:
                errors.append(
                    ConfigError(
                        backend.source_file,
                        "Backend",
                        backend.name,
                        "spec.apiKey.secretRef",
                        f"Secret {name!r} has no value for key {key!r}",
                    )
                )
        runtime.backends.append(
            runtime_pb2.Backend(
                name=backend.name,
                cluster=backend_cluster_name(backend.name),
                path_prefix=upstream.path_prefix,
                authority=upstream.authority,
                api_key=api_key,
                models=[
                    runtime_pb2.BackendModel(
                        name=m.name,
                        context_window=m.context_window or 0,
                        max_output_tokens=m.max_output_tokens or 0,
                        input_price=m.pricing.input,
                        cached_input_price=m.pricing.cached_input,
                        output_price=m.pricing.output,
                        quality_tier=m.quality,
                    )
                    for m in backend.models
                ],
            )
        )
    for endpoint in config.endpoints:
        runtime.endpoints.append(
            runtime_pb2.Endpoint(
                name=endpoint.name,
                project=endpoint.project,
                slug=endpoint.slug,
                models=[
                    runtime_pb2.ModelRoute(
                        name=alias.name,
                        targets=[
                            runtime_pb2.ModelTarget(backend=t.backend, model=t.model)
                            for t in alias.targets
                        ],
                        fallback_cluster=fallback_cluster_name(endpoint.name, index)
                        if len(alias.targets) > 1
                        else "",
                    )
                    for index, alias in enumerate(endpoint.models)
                ],
                pii_policy=endpoint.pii_policy or "",
                service_tier=endpoint.service_tier or "",
                auto_routing=runtime_pb2.AutoRouting(
                    models=endpoint.auto.models, mode=endpoint.auto.mode
                )
                if endpoint.auto
                else None,
            )
        )
    every_endpoint = [endpoint.name for endpoint in config.endpoints]
    for policy in sorted(config.policies, key=lambda p: p.name):
        if not (policy.endpoints or every_endpoint):
            continue  # "every endpoint" of a config that has none
        runtime.policies.append(
            runtime_pb2.Policy(
                name=policy.name,
                stage=_STAGES[policy.stage],
                module=policy.rego,
                package=policy.package,
                endpoints=list(policy.endpoints) or every_endpoint,
                fail_open=policy.fail_open,
            )
        )
    for pii in sorted(config.pii_policies, key=lambda p: p.name):
        runtime.pii_policies.append(
            runtime_pb2.PiiPolicy(
                name=pii.name,
                action=_PII_ACTIONS[pii.action],
                entity_types=list(pii.entity_types),
                art9_detect=pii.art9_detect,
                art9_action=_ART9_ACTIONS[pii.art9_action],
                restore_responses=pii.restore_responses,
                max_scan_bytes=pii.max_scan_bytes,
            )
        )
    for tier in sorted(config.service_tiers, key=lambda t: t.name):
        runtime.service_tiers.append(
            runtime_pb2.ServiceTier(
                name=tier.name,
                per_key=_rate_limits(tier.per_key),
                per_project=_rate_limits(tier.per_project),
                request_timeout_ms=round((tier.request_timeout_seconds or 0) * 1000),
            )
        )
    if errors:
        raise ConfigInvalid(tuple(errors))
    runtime.revision = hashlib.sha256(runtime.SerializeToString(deterministic=True)).hexdigest()[
        :16
    ]
    return runtime


def _rate_limits(limits: Limits) -> runtime_pb2.RateLimits:
    return runtime_pb2.RateLimits(
        requests_per_minute=limits.requests_per_minute,
        tokens_per_minute=limits.tokens_per_minute,
        concurrent_requests=limits.concurrent_requests,
    )
