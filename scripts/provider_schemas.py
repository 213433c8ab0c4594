"""Extracts what Vapi's and Twilio's official SDKs allow in an outbound-call request into
crates/server/tests/fixtures/provider-schemas.json, which the strict test fakes enforce.

Run through scripts/provider-schemas (it installs the pinned SDKs into a venv first).

- Vapi (`vapi-server-sdk`): the body of `POST /call` is the keyword arguments of
  `CallsClient.create` under the JSON names its raw client sends; nested objects
  (`customer`, `assistantOverrides`, `assistantOverrides.server`, ...) are the SDK's
  pydantic models, read field by field (alias and annotation). Fern's models allow extra
  fields, so `model_validate` alone is not strict: the property lists are what the fakes
  check against, the way Vapi's whitelist validation does.
- Twilio (`twilio`): the form of `POST Calls.json` is the parameters of `CallList.create`,
  under the form names `CallList._create` sends (read from its source), with the values
  its docstring lists ("Can be: `Enable` or `DetectMessageEnd`") as enums.

`--check FILE` validates captured requests (a JSON list of {"vapi": body} or
{"twilio": {name: [values]}}) with the SDKs themselves and exits non-zero on a problem.
"""

import ast
import inspect
import json
import re
import sys
import textwrap
import types
import typing
from importlib import metadata

import pydantic

# Limits the API documents but the SDK's models do not carry (shared/providers/vapi.md).
VAPI_MAX_LENGTH = {("CreateCustomerDto", "name"): 40}
# The nested models the dialer sends, by the property that holds them.
VAPI_MODELS = ["CreateCustomerDto", "AssistantOverrides", "Server"]
# What callgate reads from an end-of-call report (`artifact.performanceMetrics` and
# `costs[]`): the test fakes send only what these allow, and the parser reads only
# these names.
VAPI_REPORT_MODELS = ["PerformanceMetrics", "TurnLatency"]
# A `tool-calls` server message and the answer callgate gives to it (opt-out tools, and
# tool calls it cannot pass on): with their required fields, both ways.
VAPI_TOOL_MODELS = [
    "ServerMessageToolCalls",
    "ToolCall",
    "ToolCallFunction",
    "ServerMessageResponseToolCalls",
    "ToolCallResult",
]


def type_of(annotation, models):
    """A small JSON-schema-like description of a Python annotation."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is typing.Annotated:
        return type_of(args[0], models)
    if origin in (typing.Union, types.UnionType):
        if len(args) == 1:
            return type_of(args[0], models)
        kinds = [type_of(a, models) for a in args]
        return {"type": "any", "one_of": kinds}
    if origin is typing.Literal:
        return {"type": "string", "enum": list(typing.get_args(annotation))}
    if origin in (list, typing.List, typing.Sequence) or (origin is not None and getattr(origin, "__name__", "") == "Sequence"):
        return {"type": "array", "items": type_of(args[0], models) if args else {"type": "any"}}
    if origin in (dict, typing.Dict):
        return {"type": "map"}
    if isinstance(annotation, typing.ForwardRef):
        return {"type": "object", "ref": annotation.__forward_arg__}
    if isinstance(annotation, str):
        return {"type": "object", "ref": annotation}
    if annotation is str:
        return {"type": "string"}
    if annotation is bool:
        return {"type": "boolean"}
    if annotation is int:
        return {"type": "integer"}
    if annotation is float:
        return {"type": "number"}
    if inspect.isclass(annotation) and issubclass(annotation, pydantic.BaseModel):
        return {"type": "object", "ref": annotation.__name__}
    return {"type": "any"}


def model_properties(model, models, required=False):
    """`required`: mark the fields the model requires (for what the fakes send)."""
    model.model_rebuild(force=True, raise_errors=False)
    props = {}
    for name, field in model.model_fields.items():
        key = field.alias or name
        props[key] = type_of(field.annotation, models)
        if required and field.is_required():
            props[key]["required"] = True
        limit = VAPI_MAX_LENGTH.get((model.__name__, key))
        if limit:
            props[key]["max_length"] = limit
    return props


def vapi_schema():
    import vapi
    from vapi.calls.client import CallsClient
    from vapi.calls.raw_client import RawCallsClient

    # The JSON names: the keys of the `json={...}` the raw client sends.
    source = textwrap.dedent(inspect.getsource(RawCallsClient.create))
    names = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.keyword) and node.arg == "json" and isinstance(node.value, ast.Dict):
            for k, v in zip(node.value.keys, node.value.values):
                py = v.id if isinstance(v, ast.Name) else next(
                    (kw.value.id for kw in v.keywords if kw.arg == "object_"), None
                )
                names[py] = k.value
    hints = typing.get_type_hints(CallsClient.create, globalns=vars(vapi), include_extras=False)
    top = {}
    for py, json_name in names.items():
        top[json_name] = type_of(hints[py], None)
    out = {"CreateCallDto": top}
    for name in VAPI_MODELS:
        out[name] = model_properties(getattr(vapi, name), None)
    for name in VAPI_REPORT_MODELS:
        out[name] = model_properties(getattr(vapi, name), None)
    # `costs[]` is a union tagged by `type`: each member's properties, by its tag.
    costs = {}
    for member in typing.get_args(typing.get_args(vapi.ServerMessageEndOfCallReportCostsItem)[0]):
        props = model_properties(member, None, required=True)
        tag = typing.get_args(member.model_fields["type"].annotation)[0]
        costs[tag] = props
    out["EndOfCallReportCostsItem"] = costs
    for name in VAPI_TOOL_MODELS:
        out[name] = model_properties(getattr(vapi, name), None, required=True)
    # `toolWithToolCallList[]` is a union tagged by `type`, like `costs[]`.
    tools = {}
    union = typing.get_args(vapi.ServerMessageToolCallsToolWithToolCallListItem)[0]
    for member in typing.get_args(union):
        props = model_properties(member, None, required=True)
        tag = typing.get_args(member.model_fields["type"].annotation)[0]
        tools[tag] = props
    out["ToolWithToolCallListItem"] = tools
    # serverMessages' allowed values, for the other end of the proxy.
    return out


def twilio_schema():
    from twilio.rest.api.v2010.account.call import CallList

    source = textwrap.dedent(inspect.getsource(CallList._create))
    form = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "To" for k in node.keys):
            for k, v in zip(node.keys, node.values):
                py = v.id if isinstance(v, ast.Name) else next(
                    (a.id for a in getattr(v, "args", []) if isinstance(a, ast.Name)), None
                )
                form[py] = k.value
    sig = inspect.signature(CallList.create)
    doc = inspect.getdoc(CallList.create) or ""
    params = {}
    for py, p in sig.parameters.items():
        if py == "self":
            continue
        name = form[py]
        ann = p.annotation
        # `Union[X, object]`: X, or unset.
        args = [a for a in typing.get_args(ann) if a is not object] or [ann]
        desc = type_of(args[0], None)
        if desc["type"] == "array":
            desc = {"type": "string", "repeated": True}
        desc["required"] = p.default is inspect.Parameter.empty
        m = re.search(r":param " + py + r": (.*)", doc)
        if m:
            can = re.search(r"Can be: ([^.]*)\.", m.group(1))
            if can and desc["type"] in ("string", "boolean"):
                values = re.findall(r"`([^`]+)`", can.group(1))
                if values:
                    desc["enum"] = values
        params[name] = desc
    return {"Calls.create": params}


def generate():
    return {
        "generated_by": "scripts/provider-schemas",
        "sdks": {
            "vapi-server-sdk": metadata.version("vapi-server-sdk"),
            "twilio": metadata.version("twilio"),
        },
        "vapi": vapi_schema(),
        "twilio": twilio_schema(),
    }


def check(path):
    """Validates captured requests with the SDKs' own models and signatures."""
    import vapi
    from twilio.rest.api.v2010.account.call import CallList

    schema = generate()
    problems = []
    for i, req in enumerate(json.load(open(path))):
        if "vapi" in req:
            body = req["vapi"]
            allowed = schema["vapi"]["CreateCallDto"]
            for k in body:
                if k not in allowed:
                    problems.append(f"[{i}] vapi: property {k} should not exist")
            for key, model in (("customer", vapi.CreateCustomerDto), ("assistantOverrides", vapi.AssistantOverrides)):
                if key in body:
                    try:
                        model.model_validate(body[key])
                    except pydantic.ValidationError as e:
                        problems.append(f"[{i}] vapi {key}: {e}")
                    extra = set(body[key]) - set(schema["vapi"][model.__name__])
                    if extra:
                        problems.append(f"[{i}] vapi {key}: properties {sorted(extra)} should not exist")
            name = body.get("customer", {}).get("name")
            if name is not None and len(name) > 40:
                problems.append(f"[{i}] vapi customer.name is longer than 40")
        if "twilio" in req:
            form = req["twilio"]
            params = schema["twilio"]["Calls.create"]
            by_form = {v: k for k, v in _twilio_names(CallList).items()}
            kwargs = {}
            for name, values in form.items():
                if name not in params:
                    problems.append(f"[{i}] twilio: unknown parameter {name}")
                    continue
                enum = params[name].get("enum")
                for v in values:
                    if enum and v not in enum:
                        problems.append(f"[{i}] twilio {name}: `{v}` is not one of {enum}")
                kwargs[by_form[name]] = values if params[name].get("repeated") else values[-1]
            try:
                inspect.signature(CallList.create).bind(None, **kwargs)
            except TypeError as e:
                problems.append(f"[{i}] twilio: {e}")
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


def _twilio_names(CallList):
    source = textwrap.dedent(inspect.getsource(CallList._create))
    out = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "To" for k in node.keys):
            for k, v in zip(node.keys, node.values):
                py = v.id if isinstance(v, ast.Name) else next(
                    (a.id for a in getattr(v, "args", []) if isinstance(a, ast.Name)), None
                )
                out[py] = k.value
    return out


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        sys.exit(check(sys.argv[2]))
    json.dump(generate(), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
