"""The README's excerpt of `make demo` is what a user sees (issue 27): at 80 columns (make's output is
not a terminal), without native-library chatter, with the demo's own lines and the tables exactly as
the code renders them today. Re-paste it from a real `make demo` when the output changes."""

from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console

from hairseg_edge.bench import BenchOptions, BenchResult

REPO = Path(__file__).resolve().parents[1]
MARK = "<!-- make-demo-output -->"


def _excerpt() -> list[str]:
    text = (REPO / "README.md").read_text()
    assert MARK in text, "the README lost its make demo excerpt"
    block = text[text.index(MARK):].split("```", 2)[1]
    return block.split("\n", 1)[1].rstrip("\n").splitlines()  # drop the fence's language tag


def test_the_excerpt_fits_80_columns_and_has_no_native_chatter():
    lines = _excerpt()
    assert len(lines) > 20
    for line in lines:
        # Tables and the demo's own lines fit 80 columns; a sentence or a path is printed whole (a
        # terminal wraps it at a space, a pipe keeps it copyable).
        if re.search(r"[│┃┏┗┡└━─]|^ model |^ (float|int8|float32) ", line) or re.match(r"== |WARNING| {9}\S", line):
            assert len(line) <= 80, line
    text = "\n".join(lines)
    for noise in ("fully_quantize", "inference_type", "Editable install", "absl", "XNNPACK"):
        assert noise not in text


def test_the_excerpts_demo_lines_are_the_ones_demo_sh_prints():
    script = (REPO / "scripts" / "demo.sh").read_text()
    echoed = {m.group(1).replace("$PHOTO", "examples/astronaut.png")
              for m in re.finditer(r'^\s*echo "(.*)"\s*$', script, re.M)}
    demo_lines = [line for line in _excerpt() if re.match(r"== |WARNING|NOTE| {9}\S", line)]
    assert len(demo_lines) >= 4
    for line in demo_lines:
        assert line in echoed, line


def test_the_excerpts_bench_table_is_what_bench_renders_for_those_numbers():
    from hairseg_edge.cli.bench import _print_table

    lines = _excerpt()
    start = next(i for i, line in enumerate(lines) if line.startswith("hairseg-edge bench:"))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("== 3/3"))
    block = lines[start:end]
    cells = {}
    for line in block:
        parts = [p.strip() for p in line.strip("│").split("│")]
        if line.startswith("│") and len(parts) > 2:
            cells.setdefault(parts[0], []).extend(parts[1:])
    paths = dict(line.split(": ", 1) for line in block if re.match(r"^[\w.-]+: ", line))
    results = []
    for label, c in cells.items():
        threads, p50, p90, p99, mean_std, fps, first, load, mb, rss, shape_dtype = c
        mean, std = (float(x) for x in mean_std.split(" ± "))
        path, adapter = re.fullmatch(r"(.*) \((\w+)\)", paths[label]).groups()
        shape, dtype = shape_dtype.split()
        results.append(BenchResult(
            model=path, threads=int(threads), size_bytes=int(float(mb) * 1e6), input_dtype=dtype,
            input_shape=tuple(int(d) for d in shape.split("x")), load_ms=float(load), first_ms=float(first),
            p50_ms=float(p50), p90_ms=float(p90), p99_ms=float(p99), mean_ms=mean, std_ms=std, fps=float(fps),
            peak_rss_mb=float(rss), adapter=adapter))
    assert len(results) == 2
    console = Console(width=80, record=True, color_system=None, force_terminal=False)
    _print_table(results, BenchOptions(threads=[1], runs=200, warmup=5), console)
    assert console.export_text().rstrip("\n").splitlines() == block


def test_the_excerpts_export_table_has_the_terminal_headers():
    from hairseg_edge.export.report import TERMINAL_HEADERS

    headers = ["model", "status", "size KB", "size vs float", "IoU", "agreement IoU", "max prob diff",
               "p50 ms", "speed-up"]
    expected = " ".join(TERMINAL_HEADERS.get(h, h) for h in headers)
    lines = _excerpt()
    assert any(" ".join(line.split()) == expected for line in lines), expected
