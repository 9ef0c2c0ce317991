"""The runtime config compiled for the hot path.

`RouteTable.compile` checks a RuntimeConfig (a config that fails is NACKed and the
previous table stays) and precomputes everything a request needs, so serving a request
is a couple of dict look-ups with no allocation of config objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson

from extproc.accounting import UNPRICED, Prices
from extproc.limits import Tier
from extproc.pii_request import PiiPolicyInvalid, PiiSettings
from extproc.policies import NO_POLICIES, EndpointPolicies, PolicyConfigInvalid, compile_policies
from weir.config.v1 import runtime_pb2
from weir.pii_types import ENTITY_TYPES


class RuntimeConfigInvalid(Exception):
    """The runtime config from the control plane is not usable (it is NACKed)."""


@dataclass(frozen=True, slots=True)
class Target:
    backend: str
    cluster: str
    model: str
    path_prefix: str
    authority: str
    authorization: bytes  # b"" when the backend takes no key
    max_output_tokens: int  # 0 when the Backend does not say
    prices: Prices = UNPRICED  # the Backend's price of this model
    quality: int = 2  # quality tier: 1 basic .. 4 frontier


@dataclass(frozen=True, slots=True)
class AutoModels:
    """`model: "auto"`: the endpoint models it picks among, and the default mode."""

    models: tuple[str, ...]
    mode: str


@dataclass(frozen=True, slots=True)
class EndpointRoutes:
    name: str
    project: str
    slug: str
    models: MappingProxyType[str, tuple[Target, ...]]
    models_body: bytes  # GET /v1/models, prerendered
    policies: EndpointPolicies = NO_POLICIES
    pii: PiiSettings | None = None
    tier: Tier | None = None  # the ServiceTier whose limits apply
    # model -> the Envoy cluster of its candidates, for a model with fallbacks
    fallbacks: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))
    auto: AutoModels | None = None  # set: clients may ask for model "auto"

    def model_body(self, model: str) -> bytes | None:
        if model not in self.models and not (model == "auto" and self.auto):
            return None
        return orjson.dumps(_model_object(model))


def _model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "weir"}


@dataclass(frozen=True, slots=True)
class RouteTable:
    revision: str
    cluster_header: str
    endpoint_header: str
    max_request_bytes: int  # 0 = no limit of ext_proc's own
    endpoints: MappingProxyType[tuple[str, str], EndpointRoutes]
    # (backend, model) -> how to reach it: for the attempts of a model with fallbacks
    targets: MappingProxyType[tuple[str, str], Target] = field(
        default_factory=lambda: MappingProxyType({})
    )

    def endpoint(self, project: str, slug: str) -> EndpointRoutes | None:
        return self.endpoints.get((project, slug))

    def target(self, backend: str, model: str) -> Target | None:
        return self.targets.get((backend, model))

    @classmethod
    def compile(cls, config: runtime_pb2.RuntimeConfig) -> RouteTable:
        if not config.cluster_header or not config.endpoint_header:
            raise RuntimeConfigInvalid("cluster_header or endpoint_header is empty")
        backends: dict[str, runtime_pb2.Backend] = {}
        for backend in config.backends:
            if not backend.name or not backend.cluster:
                raise RuntimeConfigInvalid(f"backend {backend.name!r} has no name or cluster")
            if backend.name in backends:
                raise RuntimeConfigInvalid(f"backend {backend.name!r} is defined twice")
            backends[backend.name] = backend
        try:
            policies = compile_policies(config.policies)
        except PolicyConfigInvalid as error:
            raise RuntimeConfigInvalid(str(error)) from None
        unknown = set(policies) - {endpoint.name for endpoint in config.endpoints}
        if unknown:
            raise RuntimeConfigInvalid(
                f"policies name unknown endpoints: {', '.join(sorted(unknown))}"
            )
        pii: dict[str, PiiSettings] = {}
        try:
            for pii_policy in config.pii_policies:
                pii[pii_policy.name] = PiiSettings.compile(pii_policy, ENTITY_TYPES)
        except PiiPolicyInvalid as error:
            raise RuntimeConfigInvalid(str(error)) from None
        tiers: dict[str, Tier] = {}
        for tier in config.service_tiers:
            if not tier.name or tier.name in tiers:
                raise RuntimeConfigInvalid(f"service tier {tier.name!r} has no name or is twice")
            tiers[tier.name] = Tier.compile(tier)
        endpoints: dict[tuple[str, str], EndpointRoutes] = {}
        by_backend: dict[tuple[str, str], Target] = {}
        for endpoint in config.endpoints:
            if endpoint.service_tier and endpoint.service_tier not in tiers:
                raise RuntimeConfigInvalid(
                    f"endpoint {endpoint.name!r} names unknown service tier "
                    f"{endpoint.service_tier!r}"
                )
            if endpoint.pii_policy and endpoint.pii_policy not in pii:
                raise RuntimeConfigInvalid(
                    f"endpoint {endpoint.name!r} names unknown PII policy {endpoint.pii_policy!r}"
                )
            key = (endpoint.project, endpoint.slug)
            if key in endpoints:
                raise RuntimeConfigInvalid(f"endpoint /{key[0]}/{key[1]} is defined twice")
            models: dict[str, tuple[Target, ...]] = {}
            fallbacks: dict[str, str] = {}
            for route in endpoint.models:
                if not route.targets:
                    raise RuntimeConfigInvalid(
                        f"endpoint {endpoint.name!r} model {route.name!r} has no targets"
                    )
                targets = []
                for t in route.targets:
                    target_backend = backends.get(t.backend)
                    if target_backend is None:
                        raise RuntimeConfigInvalid(
                            f"endpoint {endpoint.name!r} model {route.name!r} names unknown "
                            f"backend {t.backend!r}"
                        )
                    model = next((m for m in target_backend.models if m.name == t.model), None)
                    targets.append(
                        Target(
                            backend=target_backend.name,
                            cluster=target_backend.cluster,
                            model=t.model,
                            path_prefix=target_backend.path_prefix,
                            authority=target_backend.authority,
                            authorization=(
                                b"Bearer " + target_backend.api_key.encode()
                                if target_backend.api_key
                                else b""
                            ),
                            max_output_tokens=model.max_output_tokens if model else 0,
                            prices=Prices(
                                model.input_price, model.cached_input_price, model.output_price
                            )
                            if model
                            else UNPRICED,
                            quality=(model.quality_tier or 2) if model else 2,
                        )
                    )
                models[route.name] = tuple(targets)
                if route.fallback_cluster:
                    fallbacks[route.name] = route.fallback_cluster
                for target in targets:
                    by_backend[(target.backend, target.model)] = target
            names = [*models, "auto"] if endpoint.HasField("auto_routing") else list(models)
            listing = {"object": "list", "data": [_model_object(name) for name in names]}
            endpoints[key] = EndpointRoutes(
                endpoint.name,
                endpoint.project,
                endpoint.slug,
                MappingProxyType(models),
                orjson.dumps(listing),
                policies.get(endpoint.name, NO_POLICIES),
                pii.get(endpoint.pii_policy) if endpoint.pii_policy else None,
                tiers.get(endpoint.service_tier) if endpoint.service_tier else None,
                MappingProxyType(fallbacks),
                _auto_models(endpoint, models),
            )
        return cls(
            config.revision,
            config.cluster_header,
            config.endpoint_header,
            config.max_request_bytes,
            MappingProxyType(endpoints),
            MappingProxyType(by_backend),
        )


def _auto_models(
    endpoint: runtime_pb2.Endpoint, models: dict[str, tuple[Target, ...]]
) -> AutoModels | None:
    if not endpoint.HasField("auto_routing"):
        return None
    auto = endpoint.auto_routing
    unknown = [name for name in auto.models if name not in models]
    if unknown or not auto.models:
        raise RuntimeConfigInvalid(
            f"endpoint {endpoint.name!r}: auto routing names unknown models {unknown}"
        )
    return AutoModels(tuple(auto.models), auto.mode or "balanced")


class RouteTableHolder:
    """The table in force; swapped whole, so a request sees one consistent table."""

    def __init__(self) -> None:
        self.table: RouteTable | None = None
