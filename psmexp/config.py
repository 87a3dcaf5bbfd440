"""Configuration checks run before anything is built: the task, loss and callbacks must fit each other
(psmexp.contracts), and every `_target_` node's keys must be parameters of its target, with values of the annotated
type. Errors name the full key, the value and the allowed names (for contracts: both choices).

Unknown group options (`optim=foo`) and unknown top-level keys are already rejected by Hydra itself, with the list
of available options.
"""
from __future__ import annotations

import inspect
import types
import typing

from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from psmexp import contracts

HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
SIMPLE_TYPES = (bool, int, float, str)


class ConfigError(ValueError):
    pass


def target_nodes(node, path: str = ""):
    """Yield (dotted path, dict) for every mapping with a `_target_` inside `node` (a resolved container)."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield path, node
        for key, value in node.items():
            yield from target_nodes(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from target_nodes(value, f"{path}[{i}]")


def signature_parameters(target) -> dict[str, inspect.Parameter] | None:
    """Named parameters accepted by `target` (for classes, following **kwargs up the MRO); None if open-ended."""
    functions = [klass.__init__ for klass in target.__mro__ if "__init__" in vars(klass)] \
        if inspect.isclass(target) else [target]
    params: dict[str, inspect.Parameter] = {}
    for fn in functions:
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            return None
        for name, p in sig.parameters.items():
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and name != "self":
                params.setdefault(name, p)
        if not any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
            return params
    return None


def allowed_types(fn, name: str, param: inspect.Parameter) -> tuple | None:
    """The simple types (bool/int/float/str) and literals a parameter accepts, or None when it cannot be checked."""
    try:
        hint = typing.get_type_hints(fn).get(name)
    except Exception:
        hint = None
    if hint is None:
        default = param.default
        return (type(default),) if isinstance(default, SIMPLE_TYPES) else None
    members = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    allowed = []
    for member in members:
        if member in SIMPLE_TYPES or member is type(None):
            allowed.append(member)
        elif typing.get_origin(member) is typing.Literal:
            allowed.extend(typing.get_args(member))
        elif typing.get_origin(member) is typing.Union or isinstance(member, types.UnionType):
            allowed.extend(a for a in typing.get_args(member) if a in SIMPLE_TYPES or a is type(None))
    # Members that are not simple (a tensor, a tuple, a callable) accept no scalar from YAML; a Union without any
    # simple member is left unchecked.
    return tuple(allowed) or None


def value_matches(value, allowed: tuple) -> bool:
    for a in allowed:
        if isinstance(a, type):
            if a is type(None) and value is None:
                return True
            if a is float and isinstance(value, (int, float)) and not isinstance(value, bool):
                return True
            if a is int and isinstance(value, int) and not isinstance(value, bool):
                return True
            if a in (bool, str) and isinstance(value, a):
                return True
        elif value == a and type(value) is type(a):
            return True
    return False


def check_node(path: str, node: dict) -> None:
    try:
        target = get_object(node["_target_"])
    except Exception as error:
        raise ConfigError(f"{path}._target_={node['_target_']!r} cannot be imported: {error}") from None
    params = signature_parameters(target)
    if params is None:
        return
    fn = target.__init__ if inspect.isclass(target) else target
    for key, value in node.items():
        if key in HYDRA_KEYS or isinstance(value, (dict, list)):
            continue
        if key not in params:
            raise ConfigError(f"{path}.{key} is not a parameter of {node['_target_']}; "
                              f"allowed: {', '.join(sorted(params))}")
        allowed = allowed_types(fn, key, params[key])
        if allowed == (type(None),) and value is not None:   # an object built from a `_target_` node, or null
            group = f"{path.replace('.', '/')}/{key}"
            raise ConfigError(f"{path}.{key}={value!r}: expected a `_target_` node or null (where {group} is a "
                              f"config group, select an option: {group}={value})")
        if allowed and not value_matches(value, allowed):
            names = ", ".join(a.__name__ if isinstance(a, type) else repr(a) for a in allowed)
            raise ConfigError(f"{path}.{key}={value!r} ({type(value).__name__}): expected {names}")


def hydra_choices(cfg: DictConfig) -> dict:
    """The selected option of each config group ({"task": "classification", ...}), when Hydra composed `cfg`."""
    if "hydra" in cfg:
        return dict(cfg.hydra.runtime.choices)
    return dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}


def validate(cfg: DictConfig) -> None:
    broken = contracts.check(cfg, hydra_choices(cfg))
    if broken:
        raise ConfigError("; ".join(broken))
    container = {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
                 for k in cfg if k != "hydra"}
    for path, node in target_nodes(container):
        check_node(path, node)
    for group in ("callbacks", "logger"):
        for name, node in (cfg.get(group) or {}).items():
            if node is not None and "_target_" not in node:
                raise ConfigError(f"{group}.{name} has no _target_: it sets keys of a {group} entry that no selected "
                                  f"option defines (select it, e.g. {group}=[default,{name}], or drop the keys)")
    if not isinstance(cfg.get("seed"), int):
        raise ConfigError(f"seed={cfg.get('seed')!r}: expected an integer")


def flatten(node, prefix: str = "") -> dict:
    """{"a.b.c": scalar} for every scalar leaf of a (resolved) config, for logging as hyperparameters."""
    out = {}
    items = node.items() if isinstance(node, (dict, DictConfig)) else enumerate(node) \
        if isinstance(node, (list, ListConfig)) else None
    if items is None:
        return {prefix: node}
    for key, value in items:
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out
