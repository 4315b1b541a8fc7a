"""Manifest and gateway configuration: schema, loading and the checks that run before anything is applied."""

from __future__ import annotations

from edgefc.config.gateway import GatewayConfig, load_gateway_config
from edgefc.config.load import check_function_code, manifest_from_dict, parse_manifest
from edgefc.config.manifest import ContainerSection, DeviceSpec, FunctionSpec, Isolation, Manifest, Mode
from edgefc.config.routes import RouteSpec

__all__ = [
    "ContainerSection",
    "DeviceSpec",
    "FunctionSpec",
    "GatewayConfig",
    "Isolation",
    "Manifest",
    "Mode",
    "RouteSpec",
    "check_function_code",
    "load_gateway_config",
    "manifest_from_dict",
    "parse_manifest",
]
