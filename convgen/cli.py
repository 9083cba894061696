"""The ``convgen`` command: a thin layer over the library.

User mistakes print ``convgen: error: ...`` and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ._version import __version__
from .config import (
    Network,
    bundled_examples,
    load,
    parse_layer,
    parse_shape,
    resolve_target,
    symbolic_input,
)
from .documents import (
    dumps,
    generate_document,
    junit_xml,
    model_summary_document,
    prove_document,
    shape_document,
    summary_document,
    verify_document,
)
from .errors import ConvgenError
from .progress import reporting
from .spec import Sequential
from .summary import format_value, pending


def _networks(args: argparse.Namespace) -> list[Network]:
    """The networks named on the command line: files, bundled examples or one layer."""
    targets = list(args.targets)
    if args.examples:
        targets += [str(p) for p in bundled_examples().values()]
    if not targets:
        raise ConvgenError("give a layer file, a bundled example name, a layer such as "
                           "'Conv2d(3, 16, 3)' with --input-shape, or --examples")
    networks = []
    for target in targets:
        if "(" in target:
            if args.input_shape is None:
                raise ConvgenError(f"layer {target!r} needs --input-shape, e.g. "
                                   "--input-shape 3,32,32")
            layer = parse_layer(target)
            shape = parse_shape(args.input_shape)
            model = Sequential(layer, names=[layer.describe()])
            model.shapes(shape)
            networks.append(Network(layer.describe(), shape, model))
        else:
            if args.input_shape is not None:
                raise ConvgenError("--input-shape applies to a layer given on the command "
                                   "line; layer files carry their own input shapes")
            networks += load(resolve_target(target))
    return networks


def _load_model(target: str):
    from .netemit import bundled_models
    from .onnx_import import load_onnx

    path = bundled_models().get(target, target)
    return load_onnx(path, name=_model_folder(target))


def _summary(args: argparse.Namespace) -> None:
    models = [t for t in args.targets if _is_model(t)]
    if models:
        from .summary import summarize_network

        if len(models) != len(args.targets) or args.examples or args.input_shape:
            raise ConvgenError("summary: give ONNX models alone (no layer files, --examples "
                               "or --input-shape: a model has its own shapes)")
        tables = [summarize_network(_load_model(m), symbolic=args.symbolic) for m in models]
        if args.format == "json":
            print(dumps(model_summary_document(models, tables)))
            return
        print("\n\n".join(t.to_markdown() if args.format == "markdown" else t.to_text()
                          for t in tables))
        return
    if args.format == "json":
        print(dumps(summary_document(_networks(args), symbolic=args.symbolic)))
        return
    blocks = []
    for network in _networks(args):
        summary = network.summary(symbolic=args.symbolic)
        blocks.append(summary.to_markdown() if args.format == "markdown" else summary.to_text())
    print("\n\n".join(blocks))


def _shape(args: argparse.Namespace) -> None:
    entries = []
    for network in _networks(args):
        shape = symbolic_input(network.model, network.input_shape) if args.symbolic \
            else network.input_shape
        layers = list(zip(network.model.names, network.model.shapes(shape)))
        undecided = pending(network.model.constraints(shape))
        entries.append((network.name, tuple(shape), layers, undecided))
        if args.format == "json":
            continue
        print(f"{network.name}: {format_value(tuple(shape))}")
        for name, out in layers:
            print(f"  {name}: {format_value(out)}")
        if undecided:
            print("  valid when:")
            for constraint in undecided:
                print(f"    {constraint.text}   ({constraint.requirement})")
    if args.format == "json":
        print(dumps(shape_document(entries)))


LATEX_LIMIT = 4096  # matrix entries; past this LaTeX is unreadable


def _toeplitz(args: argparse.Namespace) -> None:
    from .toeplitz import structure, toeplitz

    layer = parse_layer(args.layer)
    shape = parse_shape(args.input_shape)
    info = structure(layer, shape)
    print(f"{layer.describe()} on {format_value(tuple(shape))}: {info}")
    if getattr(layer, "num_weights", 0):
        print(f"weights in the spec: {layer.num_weights:,} (num_params {layer.num_params:,} "
              f"minus {layer.num_bias:,} bias)")
    if args.latex:
        rows, cols = info.shape
        if rows * cols > LATEX_LIMIT:
            raise ConvgenError(f"--latex: the matrix has {rows:,} x {cols:,} entries, more "
                               f"than {LATEX_LIMIT:,}; use a smaller --input-shape or --plot")
        import sympy
        print(sympy.latex(toeplitz(layer, shape, symbolic=True)))
    if args.plot:
        from .plot import plot_toeplitz
        print(f"wrote {plot_toeplitz(layer, shape, _output_file(args.plot, '--plot'))}")


def _layer_files(args: argparse.Namespace) -> list:
    """Layer files named on the command line; the bundled examples by default."""
    targets = [t for t in args.targets if not _is_model(t)]
    if args.examples or not args.targets:
        targets += [str(p) for p in bundled_examples().values()]
    return [resolve_target(t) for t in targets]


def _is_model(target: str) -> bool:
    """An ONNX file, or a bundled model's name (``lenet5_network``)."""
    from .netemit import bundled_models

    return target.lower().endswith(".onnx") or target in bundled_models()


def _model_targets(args: argparse.Namespace) -> list[str]:
    """ONNX models named on the command line; the bundled models by default, unless the
    options ask for what a network's C does not take (another schedule or profile, no C)."""
    from .netemit import bundled_models

    models = [t for t in args.targets if _is_model(t)]
    special = args.schedule or args.profile or "c" not in _kinds(args.kinds)
    if models and special:
        raise ConvgenError("a network's C uses the default profile and each layer's default "
                           "schedule, and is C only: no --schedule, --profile or --target "
                           "without c for MODEL.onnx")
    if (args.examples or not args.targets) and not special:
        models += list(bundled_models())
    return models


def _generate(args: argparse.Namespace) -> int:
    from .emit import check, kernel_files, write
    from .netemit import network_files

    layer_files = _layer_files(args)
    planned = kernel_files(layer_files, _kinds(args.kinds), args.schedule, args.profile) \
        if layer_files else []
    planned += [network_files(model, _model_folder(model)) for model in _model_targets(args)]
    if args.check:
        problems = check(planned, args.output)
        if args.format == "json":
            print(dumps(generate_document(planned, args.output, True, problems=problems)))
            return 1 if problems else 0
        for problem in problems:
            print(problem)
        if problems:
            print(f"{args.output} differs from what convgen {__version__} generates: "
                  f"{len(problems)} file(s); run 'convgen generate -o {args.output}'")
            return 1
        networks = sum(item.kernel is None for item in planned)
        print(f"{args.output} matches the generator: {len(planned) - networks} kernels"
              + (f" and {networks} network(s)" if networks else ""))
        return 0
    written = write(planned, args.output)
    if args.format == "json":
        print(dumps(generate_document(planned, args.output, False, written=written)))
        return 0
    networks = sum(item.kernel is None for item in planned)
    print(f"wrote {len(planned) - networks} kernels"
          + (f" and {networks} network(s)" if networks else "")
          + f" ({len(written)} files) to {args.output}")
    return 0


def _model_folder(model: str) -> str:
    from .netemit import bundled_models
    from .onnx_import import c_identifier

    return model if model in bundled_models() else c_identifier(Path(model).stem, "net")


def _verify_items(target: str) -> list:
    """``(file, network)`` items of a layer file or a bundled example."""
    file = resolve_target(target)
    return [(file, network) for network in load(file)]


def _kinds(text: str) -> list[str]:
    from .emit import TARGETS

    kinds = [k.strip() for k in text.split(",") if k.strip()]
    if not kinds or any(k not in TARGETS for k in kinds):
        raise ConvgenError(f"--target {text!r} must be a comma-separated list of "
                           f"{', '.join(TARGETS)}")
    return kinds


def _schedule_option(parser: argparse.ArgumentParser, action: str) -> None:
    from .schedules import names

    parser.add_argument("--schedule", choices=("auto", *names("c")), default=None,
                        help=f"the C schedule {action} every layer (default: each layer's own "
                        "'schedule' key, else 'auto': the cost model's choice); a schedule "
                        "that does not apply to a layer is an error that says why")


def _profile_option(parser: argparse.ArgumentParser, action: str) -> None:
    from .profiles import PROFILES

    parser.add_argument("--profile", choices=tuple(PROFILES), default=None,
                        help=f"what the C {action} may assume of its compiler: "
                        + "; ".join(f"{k}: {v}" for k, v in PROFILES.items())
                        + " (default: each layer file's 'profile' key, else 'default')")


def _verify(args: argparse.Namespace) -> int:
    """A generated folder, or the spec of one of its kernels: build and check exactly its
    files on disk, and fail on any file that is missing, orphaned, inconsistent or stale.  A
    layer file: generate, build and check its kernels."""
    from pathlib import Path

    from .emit import named_layers
    from .verify import (
        check_arch,
        check_kernels,
        is_shipped,
        verify_folder,
        verify_layers,
        verify_spec,
    )

    path = Path(args.target)
    if _is_model(args.target):
        return _verify_model(args)
    if args.exhaustive and args.kind != "c":
        raise ConvgenError(f"--exhaustive reads the C text and probes the C binary; it needs "
                           f"--target c, not --target {args.kind}")
    check_arch(args.kind, args.arch, args.exhaustive)
    if path.is_dir() or is_shipped(path):
        if args.profile is not None:
            raise ConvgenError("--profile applies to layer files: a generated folder's specs "
                               "record each kernel's profile (regenerate it with "
                               "convgen generate --profile)")
        shipped = verify_folder if path.is_dir() else verify_spec
        outcomes, problems = shipped(path, args.kind, args.cases, args.batch, args.schedule,
                                     exhaustive=args.exhaustive, arch=args.arch)
        if not outcomes and not problems:
            raise ConvgenError(f"{args.target!r} holds no layer files (.toml)")
        return _report_verify(args, outcomes, problems)
    outcomes = []
    for _, network in _verify_items(args.target):
        layers = named_layers([network], path.stem)
        items = [(i.layer, i.shape, i.name, args.schedule or i.schedule) for i in layers]
        if args.kind == "c":
            outcomes += verify_layers(items, dtype=network.dtype, cases=args.cases,
                                      batch=args.batch, exhaustive=args.exhaustive,
                                      profile=args.profile or network.profile, arch=args.arch)
            continue
        items = [item[:3] for item in items]  # the C schedule has no CUDA meaning
        if args.kind == "cuda":
            from .runtime.gpu import compile_gpu as compile_cuda
        else:
            from .runtime.pocl import compile_cpu as compile_cuda
        outcomes += check_kernels(compile_cuda(items, dtype=network.dtype), cases=args.cases,
                                  batch=args.batch)
    return _report_verify(args, outcomes, [])


def _verify_model(args: argparse.Namespace) -> int:
    """``convgen verify model.onnx``: the network's C generated now, built and checked
    (:func:`convgen.netverify.verify_network`), ONNX Runtime included."""
    import onnx

    from .netemit import bundled_models
    from .netverify import verify_network
    from .verify import Outcome

    if args.kind != "c" or args.arch != "native" or args.exhaustive or args.schedule or \
            args.profile:
        raise ConvgenError("verify MODEL.onnx checks the network's C on this machine: no "
                           "--target other than c, --arch, --exhaustive, --schedule or "
                           "--profile")
    network = _load_model(args.target)
    result = verify_network(network, args.cases, args.batch, onnx_model=onnx.load(
        bundled_models().get(args.target, args.target)))
    if args.format != "json":
        print(f"memory plan: {result.plan}")
        print(f"end to end: |C - oracle| <= {result.max_error:.3g}, at most "
              f"{result.max_ratio:.3g} of the error bound (largest bound {result.max_bound:.3g})")
        if result.ort_ratio is not None:
            print(f"ONNX Runtime: |ORT - oracle| <= {result.ort_max_error:.3g} "
                  f"({result.ort_ratio:.3g} of the bound); |C - ORT| <= {result.ort_vs_c:.3g}")
        print(f"traced C = planned C: {result.traced_identical}; fused C = unfused C: "
              f"{result.fused_identical}")
        width = max(len(c.node) for c in result.nodes) if result.nodes else 4
        print(f"{'node'.ljust(width)}  {'|error|':>9}  {'/ bound':>8}  op")
        for check in result.nodes:
            print(f"{check.node.ljust(width)}  {check.max_error:9.3g}  {check.ratio:8.3g}  "
                  f"{check.op}")
    detail = "; ".join(result.problems) or (f"within {result.max_ratio:.2g} of its bound; "
                                            f"nodes within {result.node_ratio:.2g}")
    outcome = Outcome(network.name, f"network of {len(network.nodes)} nodes", "float32",
                      args.cases, 0.0, result.passed, detail)
    return _report_verify(args, [outcome], [])


def _report_verify(args: argparse.Namespace, outcomes: list, problems: list[str]) -> int:
    """The verdict table (or JSON), then every file problem; each problem counts as a
    failure.  ``--junit FILE`` also writes JUnit XML."""
    failed = sum(not o.passed for o in outcomes) + len(problems)
    if args.junit:
        _write_text(args.junit, junit_xml(outcomes, problems, args.kind), "--junit")
    if args.format == "json":
        print(dumps(verify_document(outcomes, problems, args.kind, args.target, args.arch)))
        return 1 if failed else 0
    if outcomes:
        width = max(len(o.name) for o in outcomes)
        print(f"{'kernel'.ljust(width)}  {'dtype':7}  cases  {'worst ULP':>9}  result")
    for o in outcomes:
        verdict = "pass" if o.passed else f"FAIL: {o.detail}"
        if o.exhaustive and o.passed:
            verdict += f"; exhaustive: {o.exhaustive}"
        if o.footprint is not None:
            verdict += f" ({args.arch}: {o.footprint})"
        print(f"{o.name.ljust(width)}  {o.dtype:7}  {o.cases:5}  {o.worst_ulps:9.3g}  {verdict}")
    for problem in problems:
        print(problem)
    passed = sum(o.passed for o in outcomes)
    print(f"{passed} passed, {failed} failed" + (f" ({len(problems)} file problem(s))"
                                                  if problems else ""))
    return 1 if failed else 0


def _prove(args: argparse.Namespace) -> int:
    from .proofs import layer_statements, run_catalogue

    if args.layer:
        layer = parse_layer(args.layer)
        rows = [("layer", r) for r in layer_statements(layer)]
        if args.input_shape:
            from .bounds import prove_access, prove_bounds
            from .codegen import generate
            from .cudagen import generate_cuda
            kernel = generate(layer, parse_shape(args.input_shape))
            rows += [("bounds", r) for r in prove_bounds(kernel)]
            cuda = generate_cuda(layer, parse_shape(args.input_shape))
            rows += [("cuda", prove_access(cuda.name, a)) for a in cuda.accesses
                     if a.where.startswith(("direct:", "tiled:"))]  # the rest are C's
    elif args.input_shape:
        raise ConvgenError("--input-shape needs --layer")
    else:
        rows = [(str(statement.number), r) for statement, r in run_catalogue()]
    if args.format == "json":
        print(dumps(prove_document(rows)))
    else:
        print(_proof_table(rows, args.format))
    wrong = [r for _, r in rows if not r.as_expected]
    return 1 if wrong else 0


def _proof_table(rows, fmt: str) -> str:
    lines = []
    if fmt == "markdown":
        lines += ["| # | statement | assumptions | status | counterexample / reason |",
                  "|---|---|---|---|---|"]
    for label, r in rows:
        detail = ", ".join(f"{k}={v}" for k, v in r.counterexample.items()) or r.reason
        status = r.status + ("" if r.as_expected else " (UNEXPECTED)")
        if fmt == "markdown":
            lines.append(f"| {label} | {r.name}: {r.statement} | "
                         f"{'; '.join(r.assumptions)} | {status} | {detail} |")
        else:
            lines += [f"[{label}] {r.name}: {status} ({r.method}, {r.seconds:.2f} s)",
                      f"    {r.statement}"]
            if r.assumptions:
                lines.append(f"    assuming {'; '.join(r.assumptions)}")
            if detail:
                lines.append(f"    {'counterexample' if r.counterexample else 'reason'}: "
                             f"{detail}")
    proved = sum(r.status == "proved" for _, r in rows)
    refuted = sum(r.status == "refuted" for _, r in rows)
    unexpected = sum(not r.as_expected for _, r in rows)
    lines.append(f"{proved} proved, {refuted} refuted, {len(rows) - proved - refuted} unknown; "
                 f"{unexpected} not as expected")
    return "\n".join(lines)


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise ConvgenError(f"{what} {text!r} must be a comma-separated list of positive "
                           "integers, e.g. 1,2")
    return values


def _bench(args: argparse.Namespace) -> int:
    import json

    from .bench import SUITE, format_tables, plot_roofline, run

    names = [n.strip() for n in args.layers.split(",")] if args.layers else None
    threads, batches = _ints(args.threads, "--threads"), _ints(args.batch, "--batch")
    if args.model:
        return _bench_model(args, threads, batches)
    if args.smoke:  # one small layer, few repeats: checks the harness, not the speed
        names, batches, repeats, min_time = names or [SUITE[0][0]], batches[:1], 1, 0.0
    else:
        repeats, min_time = args.repeats, args.min_time
    if args.target == "cuda":
        if args.march != "native":
            raise ConvgenError("--march applies to --target c (the C kernels' flags); the "
                               "CUDA kernels are built by nvcc for the GPU")
        return _bench_cuda(args, batches, names, repeats, min_time)
    runs = run(threads, batches, names, repeats, min_time, args.march)
    print(format_tables(runs))
    if args.json:
        _write_text(args.json, json.dumps(runs, indent=1), "--json")
        print(f"wrote {args.json}")
    if args.png:
        plot_roofline(runs, _output_file(args.png, "--png"))
        print(f"wrote {args.png}")
    return 0


def _bench_model(args: argparse.Namespace, threads: list, batches: list) -> int:
    import json

    from .bench_model import format_model_tables, run_model
    from .netemit import bundled_models

    if args.layers or args.target != "c" or args.march != "native" or args.png:
        raise ConvgenError("--model times a whole network's C on this machine: no --layers, "
                           "--target, --march or --png")
    path = str(bundled_models().get(args.model, args.model))
    repeats, min_time = (1, 0.0) if args.smoke else (args.repeats, args.min_time)
    runs = run_model(path, threads, batches[:1] if args.smoke else batches, repeats,
                     min_time, _model_folder(args.model))
    print(format_model_tables(runs))
    if args.json:
        _write_text(args.json, json.dumps(runs, indent=1), "--json")
        print(f"wrote {args.json}")
    return 0


def _bench_cuda(args: argparse.Namespace, batches: list, names: list | None, repeats: int,
                min_time: float) -> int:
    import json

    from .bench_cuda import format_cuda_tables, measure_cuda
    from .verify import check_kernel

    if args.png:
        raise ConvgenError("--png: the roofline plot is drawn for --target c only")
    run = measure_cuda(batches, names, repeats, min_time, check=check_kernel)
    print(format_cuda_tables(run))
    if args.json:
        _write_text(args.json, json.dumps([run], indent=1), "--json")
        print(f"wrote {args.json}")
    return 0


def _mutate(args: argparse.Namespace) -> int:
    import json

    from .mutants import mutants
    from .mutate import (
        document,
        from_log,
        markdown,
        read_log,
        rerun,
        run,
        score_table,
        source_root,
    )

    if args.sample is not None and args.sample < 1:
        raise ConvgenError(f"--sample {args.sample}: must be at least 1")
    if args.jobs < 1:
        raise ConvgenError(f"--jobs {args.jobs}: must be at least 1")
    if args.list:
        for mutant in mutants(source_root()):
            if not args.only or any(s in mutant.source for s in args.only):
                print(f"{mutant.key}  {mutant.describe()}")
        return 0
    import signal

    # a stopped run cleans up its scratch copies and workers: SIGTERM unwinds like Ctrl-C
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    log = Path(_output_file(args.log, "--log")) if args.log else None
    if args.report:
        result = from_log(read_log(args.report, "--report"))
    elif args.rerun:
        try:
            previous = json.loads(Path(args.rerun).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ConvgenError(f"--rerun {args.rerun}: cannot read it ({error})") from None
        result = rerun(previous, args.jobs, tests=not args.no_tests, log=log)
    else:
        resume = read_log(args.resume, "--resume") if args.resume else ()
        result = run(args.sample, args.seed, args.jobs, tests=not args.no_tests,
                     only=args.only, log=log, resume=resume)
    for row in score_table(result.results, result.existing):
        print(f"{row['source']:44} {row['total']:5} mutants  killed {row['killed']:5}  "
              f"timeout {row['timeout']:3}  survived {row['survived']:3}  equivalent "
              f"{row['equivalent']:3}  score {100 * row['score']:5.1f} %")
    survivors = [r for r in result.results if r.outcome == "survived"]
    for r in survivors:
        print(f"survived: {r.key} {r.source}:{r.line} {r.operator}: {r.before.strip()!r} -> "
              f"{r.after.strip()!r}")
    if args.json:
        _write_text(args.json, json.dumps(document(result), indent=1), "--json")
        print(f"wrote {args.json}")
    if args.verdicts:
        # a kill by the tests stage may depend on Hypothesis's draws: recorded apart, so that
        # CI's sample holds only the stages that judge the same inputs every time
        verdicts = {r.key: "killed by tests" if r.stage == "tests" else r.outcome
                    for r in result.results}
        _write_text(args.verdicts, json.dumps(verdicts, indent=0, sort_keys=True) + "\n",
                    "--verdicts")
        print(f"wrote {args.verdicts}")
    if args.markdown:
        command = "convgen mutate" + (f" --sample {args.sample} --seed {args.seed}"
                                      if args.sample else "") + \
            (f" --rerun {args.rerun}" if args.rerun else "") + \
            (f" --report {args.report}" if args.report else "")
        _write_text(args.markdown, markdown(result, command), "--markdown")
        print(f"wrote {args.markdown}")
    return 1 if survivors else 0


def _examples(args: argparse.Namespace) -> None:
    for name, path in bundled_examples().items():
        networks = load(path)
        print(f"{name}: {path}")
        for network in networks:
            print(f"  {network.name}: {network.description or network.model[0].describe()}")


def _add_targets(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("targets", nargs="*", metavar="TARGET",
                        help="a layer file (TOML), a bundled example name, or a layer "
                             "such as 'Conv2d(3, 16, 3, padding=1)'")
    parser.add_argument("--input-shape", metavar="SHAPE",
                        help="input shape for a layer given on the command line: (C, *spatial) "
                             "or (N, C, *spatial), e.g. 3,32,32 or 3,H,W")
    parser.add_argument("--symbolic", action="store_true",
                        help="keep the spatial input sizes as symbols (L; H, W; D, H, W)")
    parser.add_argument("--examples", action="store_true",
                        help="also take every bundled example layer file")


_FORMAT_HELP = ("json: one document on standard output, described by the JSON Schema "
                "convgen/schemas/{}.schema.json (default: text)")


def _quiet_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress on standard error (shown by default: a bar with "
                        "the current kernel and the time left on a terminal, plain lines "
                        "every few seconds otherwise)")


def _output_file(path: str, option: str) -> str:
    """``path``, its folder created if missing (``--json out/b.json`` in a fresh clone)."""
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    except OSError as error:
        raise ConvgenError(f"{option} {path!r}: cannot create its folder: "
                           f"{error.strerror or error}") from None
    return path


def _write_text(path: str, text: str, option: str) -> None:
    try:
        with open(_output_file(path, option), "w", encoding="utf-8") as stream:
            stream.write(text)
    except OSError as error:
        raise ConvgenError(f"{option} {path!r}: cannot write it: "
                           f"{error.strerror or error}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convgen", description="Convolution and pooling layers: symbolic shapes, "
        "parameter counts, MACs and equivalent matrices.")
    parser.add_argument("--version", action="version", version=f"convgen {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    summary = commands.add_parser("summary", help="per-layer table of shapes, params, MACs, "
                                  "receptive field")
    _add_targets(summary)
    summary.add_argument("--format", choices=("text", "markdown", "json"), default="text",
                         help=_FORMAT_HELP.format("summary"))
    summary.set_defaults(run=_summary)
    shape = commands.add_parser("shape", help="output shape after every layer")
    _add_targets(shape)
    shape.add_argument("--format", choices=("text", "json"), default="text",
                       help=_FORMAT_HELP.format("shape"))
    shape.set_defaults(run=_shape)
    matrix = commands.add_parser("toeplitz", help="the layer's equivalent matrix: structure, "
                                 "LaTeX, picture")
    matrix.add_argument("layer", metavar="LAYER", help="a layer such as 'Conv2d(1, 1, 2)'")
    matrix.add_argument("--input-shape", metavar="SHAPE", required=True,
                        help="concrete input shape (C, *spatial), e.g. 1,3,3")
    matrix.add_argument("--latex", action="store_true",
                        help="print the symbolic matrix as LaTeX (small cases)")
    matrix.add_argument("--plot", metavar="FILE.png",
                        help="draw the matrix structure, coloured by weight")
    matrix.set_defaults(run=_toeplitz)
    generate = commands.add_parser("generate", help="write C and CUDA kernels, specs and "
                                   "reports for layer files (the bundled examples by default)")
    generate.add_argument("targets", nargs="*", metavar="LAYERS",
                          help="layer files (TOML) or bundled example names")
    generate.add_argument("--examples", action="store_true",
                          help="also take every bundled example layer file")
    generate.add_argument("-o", "--output", default="generated", metavar="DIR",
                          help="output folder (default: generated)")
    generate.add_argument("--check", action="store_true",
                          help="write nothing; exit 1 when DIR differs from the generator")
    generate.add_argument("--target", dest="kinds", default="c,cuda", metavar="KINDS",
                          help="kernels to write: c, cuda or c,cuda (default; cuda needs "
                          "nvcc, which checks each kernel and reports its resources)")
    _schedule_option(generate, "to generate for")
    _profile_option(generate, "written")
    generate.add_argument("--format", choices=("text", "json"), default="text",
                          help=_FORMAT_HELP.format("generate"))
    _quiet_option(generate)
    generate.set_defaults(run=_generate)
    verify = commands.add_parser("verify", help="compile kernels and compare them with the "
                                 "exact oracle; exit 1 on any failure")
    verify.add_argument("target", metavar="DIR_OR_TOML",
                        help="a generated folder, a layer file or a bundled example name")
    verify.add_argument("--cases", type=int, default=2, help="random inputs per kernel")
    verify.add_argument("--batch", type=int, default=2, help="batch size of each input")
    verify.add_argument("--target", dest="kind", choices=("c", "cuda-cpu", "cuda"), default="c",
                        help="c: the C kernels (default); cuda-cpu: the CUDA text on the CPU "
                        "(PyOpenCL + PoCL); cuda: the CUDA kernels on a GPU (PyCUDA)")
    _schedule_option(verify, "to build and check for")
    _profile_option(verify, "built from a layer file")
    from .runtime.cross import ARCHES

    verify.add_argument("--arch", default="native", choices=("native", *ARCHES),
                        help="native: load each C kernel into Python (default); aarch64 or "
                        "cortex-m4: build it with a generated test program for AArch64 Linux "
                        "(gcc-aarch64-linux-gnu) or QEMU's MPS2 AN386 board "
                        "(gcc-arm-none-eabi, libnewlib-arm-none-eabi), run it under QEMU "
                        "(qemu-user, qemu-system-arm) and report its measured code, data and "
                        "stack")
    verify.add_argument("--exhaustive", action="store_true",
                        help="also translation validation (C only): probe each built kernel "
                        "with one-hot inputs and weights until its operator is determined, "
                        "and compare it entry by entry with the symbolic one")
    verify.add_argument("--format", choices=("text", "json"), default="text",
                        help=_FORMAT_HELP.format("verify"))
    verify.add_argument("--junit", metavar="FILE",
                        help="also write JUnit XML, one test case per kernel and per file "
                        "problem (for a CI system's test report)")
    _quiet_option(verify)
    verify.set_defaults(run=_verify)
    prove = commands.add_parser("prove", help="prove the formula catalogue, or the statements "
                                "and kernel bounds of one layer")
    prove.add_argument("--layer", metavar="LAYER",
                       help="prove one layer's statements, e.g. 'MaxPool2d(3, 2, ceil_mode=True)'")
    prove.add_argument("--input-shape", metavar="SHAPE",
                       help="with --layer: also prove the generated kernel's bounds")
    prove.add_argument("--format", choices=("text", "markdown", "json"), default="text",
                       help=_FORMAT_HELP.format("prove"))
    prove.set_defaults(run=_prove)
    bench = commands.add_parser("bench", help="time the generated C kernels against ONNX "
                                "Runtime, numpy (im2col + BLAS) and PyTorch (when installed), "
                                "or the CUDA kernels against PyTorch's cuDNN on a GPU")
    bench.add_argument("--target", choices=("c", "cuda"), default="c",
                       help="c: the C kernels on the CPU (default); cuda: the CUDA kernels "
                       "on the GPU (PyCUDA; PyTorch for the peer and the roofs)")
    bench.add_argument("--threads", default="1,2",
                       help="thread counts (default 1,2; --target c only)")
    bench.add_argument("--batch", default="1,8", help="batch sizes (default 1,8)")
    bench.add_argument("--layers", help="comma-separated suite names (default: all)")
    bench.add_argument("--model", metavar="MODEL.onnx",
                       help="time a whole network instead: the model's C (convgen generate "
                       "MODEL.onnx) against ONNX Runtime on the same file, end to end, with "
                       "each node's share of the time (a bundled model's name works too)")
    bench.add_argument("--repeats", type=int, default=7, help="timed calls at least")
    bench.add_argument("--min-time", type=float, default=0.3,
                       help="seconds of timed calls at least, per measurement")
    bench.add_argument("--march", default="native",
                       help="build the C kernels with -O3 -march=MARCH (default native: this "
                       "CPU; x86-64-v3: AVX2 and FMA only, the other ISA class on an AVX-512 "
                       "machine)")
    bench.add_argument("--json", metavar="FILE", help="write every measurement as JSON")
    bench.add_argument("--png", metavar="FILE", help="write a roofline plot (matplotlib)")
    bench.add_argument("--smoke", action="store_true",
                       help="one small layer, one batch, one repeat: a check of the harness")
    _quiet_option(bench)
    bench.set_defaults(run=_bench)
    examples = commands.add_parser("examples", help="list the bundled example layer files")
    examples.set_defaults(run=_examples)
    mutate = commands.add_parser("mutate", help="mutation testing of the templates and formula "
                                 "modules (a source checkout); exit 1 when a mutant survives "
                                 "unexplained")
    mutate.add_argument("--sample", type=int, metavar="N",
                        help="judge N mutants drawn at random (default: all of them)")
    mutate.add_argument("--seed", type=int, default=0, help="seed of the sample (default: 0)")
    mutate.add_argument("--jobs", type=int, default=os.cpu_count() or 1, metavar="J",
                        help="mutants judged at once (default: the CPU count)")
    mutate.add_argument("--only", action="append", default=[], metavar="TEXT",
                        help="only sources whose path contains TEXT (repeatable)")
    mutate.add_argument("--no-tests", action="store_true",
                        help="skip the last stage (the formula tests, for mutants that "
                        "change no kernel)")
    mutate.add_argument("--list", action="store_true", help="list the mutants and exit")
    mutate.add_argument("--report", metavar="LOG",
                        help="judge nothing: report what a --log holds (a stopped run)")
    mutate.add_argument("--resume", metavar="LOG",
                        help="keep the kills of an interrupted run's --log, judge the rest")
    mutate.add_argument("--rerun", metavar="FILE.json",
                        help="judge again only the survivors of an earlier run (its --json), "
                        "keeping its other verdicts")
    mutate.add_argument("--json", metavar="FILE", help="write every result as JSON")
    mutate.add_argument("--verdicts", metavar="FILE",
                        help="write each mutant's outcome by key (what CI's sample is held to)")
    mutate.add_argument("--log", metavar="FILE",
                        help="append each result to FILE as a JSON line as soon as it is known")
    mutate.add_argument("--markdown", metavar="FILE",
                        help="write the report (MUTATION.md is the latest full run)")
    _quiet_option(mutate)
    mutate.set_defaults(run=_mutate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``convgen`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with reporting(args.command, enabled=not getattr(args, "quiet", False)):
            return args.run(args) or 0
    except BrokenPipeError:
        # the reader went away (convgen summary ... | head): stop quietly, as cat does; point
        # stdout at devnull so the interpreter's final flush cannot fail again
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # no file descriptor behind stdout (captured)
            pass
        return 141  # what a shell reports for a writer stopped by SIGPIPE
    except ConvgenError as error:
        print(f"convgen: error: {error}", file=sys.stderr)
        return 2
    except (RecursionError, MemoryError) as error:  # a last guard: the parsers limit sizes
        print(f"convgen: error: the input is too large or nested too deeply to process "
              f"({type(error).__name__})", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
