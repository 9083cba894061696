"""The JSON documents of ``convgen ... --format json`` and the JUnit XML of ``verify --junit``.

Each command's document has a JSON Schema (draft 2020-12) shipped with the package, in
``convgen/schemas/NAME.schema.json`` (:func:`schema` loads one); every document names its
schema and version in ``"schema"`` (``"convgen-verify/1"``), so a script can refuse a
version it does not know.  A version changes only when a field is removed or changes
meaning; new fields may appear within a version.

Sizes are JSON integers when concrete and strings (SymPy's text: ``"floor(H/2 - 1/2) + 1"``)
when symbolic; a worst ULP distance that is infinite (the kernel did not run) is ``null``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import xml.etree.ElementTree as ET
from importlib import resources

import sympy

from ._version import __version__

__all__ = ["NAMES", "dumps", "generate_document", "junit_xml", "prove_document", "schema",
           "shape_document", "summary_document", "verify_document"]

NAMES = ("summary", "shape", "verify", "prove", "generate", "model-summary")
VERSION = 1


def schema(name: str) -> dict:
    """The JSON Schema of the ``name`` document (one of :data:`NAMES`)."""
    if name not in NAMES:
        raise ValueError(f"schema {name!r} must be one of {', '.join(NAMES)}")
    text = resources.files("convgen").joinpath("schemas", f"{name}.schema.json").read_text(
        encoding="utf-8")
    return json.loads(text)


def _header(name: str) -> dict:
    return {"schema": f"convgen-{name}/{VERSION}", "convgen": __version__}


def size(value):
    """A size for JSON: an int, or the text of a symbolic expression."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, tuple | list):
        return [size(v) for v in value]
    if isinstance(value, sympy.Integer):
        return int(value)
    return str(value)


def _constraints(constraints) -> list[dict]:
    return [{"condition": str(c.condition), "requirement": c.requirement, "holds": c.holds}
            for c in constraints]


def summary_document(networks, symbolic: bool = False) -> dict:
    """``convgen summary --format json``: per network, every layer's row and the totals."""
    result = []
    for network in networks:
        s = network.summary(symbolic=symbolic)
        result.append({
            "name": network.name, "description": network.description,
            "input_shape": size(s.input_shape),
            "layers": [{"index": i, "name": r.name, "layer": r.layer,
                        "output_shape": size(r.output_shape), "params": size(r.params),
                        "dense_params": size(r.dense_params), "macs": size(r.macs),
                        "receptive_field": size(r.receptive_field)}
                       for i, r in enumerate(s.rows)],
            "total_params": size(s.total_params), "total_macs": size(s.total_macs),
            "total_flops": size(s.total_flops),
            "constraints": _constraints(s.constraints)})
    return {**_header("summary"), "networks": result}


def model_summary_document(models, tables) -> dict:
    """``convgen summary MODEL.onnx --format json``: per model, every node's row and the
    totals (:class:`convgen.summary.NetworkSummary`)."""
    return {**_header("model-summary"), "models": [
        {"model": str(model), "title": t.title,
         "inputs": [{"name": n, "shape": size(s)} for n, s in t.inputs],
         "nodes": [{"index": i, "name": r.name, "op": r.op, "output_shape": size(r.output_shape),
                    "params": r.params, "macs": size(r.macs), "memory": size(r.memory)}
                   for i, r in enumerate(t.rows)],
         "total_params": t.total_params, "total_macs": size(t.total_macs),
         "activation_memory": size(t.activation_memory)}
        for model, t in zip(models, tables)]}


def shape_document(entries) -> dict:
    """``convgen shape --format json``: ``entries`` are ``(name, input shape, [(layer name,
    output shape)], pending constraints)``."""
    return {**_header("shape"), "networks": [
        {"name": name, "input_shape": size(shape),
         "layers": [{"name": n, "output_shape": size(out)} for n, out in layers],
         "constraints": _constraints(pending)}
        for name, shape, layers, pending in entries]}


def _ulps(value: float):
    return None if math.isinf(value) or math.isnan(value) else value


def verify_document(outcomes, problems, target: str, source: str,
                    arch: str = "native") -> dict:
    """``convgen verify --format json``: one entry per kernel, then the file problems (each
    counts as a failure)."""
    failed = sum(not o.passed for o in outcomes) + len(problems)
    return {**_header("verify"), "target": target, "source": source, "arch": arch,
            "kernels": [{"name": o.name, "layer": o.description, "dtype": o.dtype,
                         "cases": o.cases, "worst_ulps": _ulps(o.worst_ulps),
                         "passed": o.passed, "detail": o.detail,
                         "exhaustive": o.exhaustive,
                         "footprint": dataclasses.asdict(o.footprint) if o.footprint else None}
                        for o in outcomes],
            "problems": list(problems),
            "passed": sum(o.passed for o in outcomes), "failed": failed}


def prove_document(rows) -> dict:
    """``convgen prove --format json``: ``rows`` are ``(label, Result)``."""
    results = [{"label": label, "name": r.name, "statement": r.statement,
                "assumptions": list(r.assumptions), "status": r.status,
                "expected": r.expected, "as_expected": r.as_expected, "method": r.method,
                "seconds": round(r.seconds, 4),
                "counterexample": {str(k): size(v) for k, v in r.counterexample.items()},
                "reason": r.reason} for label, r in rows]
    count = {status: sum(r["status"] == status for r in results)
             for status in ("proved", "refuted", "unknown")}
    return {**_header("prove"), "results": results, **count,
            "unexpected": sum(not r["as_expected"] for r in results)}


def generate_document(planned, output: str, check: bool, problems=(), written=()) -> dict:
    """``convgen generate --format json``: the kernels planned, and either the files written
    or (``--check``) every difference from the folder."""
    kernels = []
    for item in planned:
        k = item.kernel
        if k is None:  # a network (convgen.netemit.NetworkFiles)
            kernels.append({"name": item.name, "folder": item.folder, "source": item.source,
                            "layer": "network", "input_shape": size(item.input_shape),
                            "output_shape": size(item.output_shape), "dtype": "float32",
                            "schedule": "network", "files": sorted(item.files)})
            continue
        kernels.append({"name": k.name, "folder": item.folder, "source": item.source,
                        "layer": k.layer.describe(), "input_shape": size(tuple(k.input_shape)),
                        "output_shape": size(tuple(k.output_shape)), "dtype": k.dtype,
                        "schedule": k.schedule, "files": sorted(item.files)})
    document = {**_header("generate"), "output": str(output), "check": check,
                "kernels": kernels}
    if check:
        document.update(problems=list(problems), matches=not problems)
    else:
        document["written"] = [str(p) for p in written]
    return document


def dumps(document: dict) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False)


def junit_xml(outcomes, problems, target: str) -> str:
    """JUnit XML of a verify run: one test case per kernel and per file problem, so a CI
    system shows each kernel as a test."""
    suite = ET.Element("testsuite", name=f"convgen verify ({target})",
                       tests=str(len(outcomes) + len(problems)),
                       failures=str(sum(not o.passed for o in outcomes) + len(problems)),
                       errors="0", skipped="0")
    for o in outcomes:
        case = ET.SubElement(suite, "testcase", classname=f"convgen.{target}.{o.dtype}",
                             name=o.name)
        properties = ET.SubElement(case, "properties")
        for key, value in (("layer", o.description), ("cases", str(o.cases)),
                           ("worst_ulps", f"{o.worst_ulps:.6g}"),
                           *([("exhaustive", o.exhaustive)] if o.exhaustive else [])):
            ET.SubElement(properties, "property", name=key, value=value)
        if not o.passed:
            ET.SubElement(case, "failure", message=o.detail[:500]).text = o.detail
    for problem in problems:
        kind, _, detail = problem.partition(": ")
        case = ET.SubElement(suite, "testcase", classname=f"convgen.{target}.files",
                             name=detail.split(" ")[0] if detail else problem)
        ET.SubElement(case, "failure", message=problem[:500]).text = problem
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") \
        + "\n"
