"""Import cost: `import llmclient` and `llmclient --help` against a bare `python -c pass`.

Each command runs N times, each in a fresh subprocess, the commands taking turns so that load
from other processes falls on all of them alike. Prints the median wall time, what it adds to
bare Python and its ratio to it, measured in the same run, the peak RSS (the largest of three
runs under /usr/bin/time, else `os.wait4`'s rusage), the provider SDKs each command left
loaded, and the top imports of `import llmclient` and of `llmclient --help` by cumulative time
(`python -X importtime`). It prints figures; it never asserts them (the machine is shared,
timings are noisy).

    python benchmarks/bench_import.py [--runs 15] [--top 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HEAVY = ("openai", "ollama", "pydantic_settings", "pydantic", "httpx", "httpx2")
_LOADED = (
    "import sys; import {what}; "
    "print(','.join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)"
)
_TIME = "/usr/bin/time"
IMPORTED = {  # whose imports are listed: label -> python's arguments
    "import llmclient": ["-c", "import llmclient"],
    "llmclient --help": ["-m", "llmclient", "--help"],
}


@dataclass(frozen=True, slots=True)
class Figures:
    """What N runs of one command measured."""

    label: str
    median_s: float
    min_s: float
    peak_rss_mib: float


def _run_once(command: list[str]) -> float:
    """Wall seconds of one fresh child process."""
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def _peak_rss_mib(command: list[str]) -> float:
    """Peak RSS of one fresh child, in MiB.

    Through /usr/bin/time when present: Linux folds the RSS of the process that called exec
    into the child's ru_maxrss, so a child forked straight from this script would report at
    least this script's own RSS. Without it, `os.wait4`'s rusage (an upper bound).
    """
    if os.path.exists(_TIME):
        done = subprocess.run(
            [_TIME, "-f", "%M", *command],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=True,
        )
        return int(done.stderr.split()[-1]) / 1024
    pid = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid
    _, _, usage = os.wait4(pid, 0)
    return usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024) / 2**20


def measure(commands: dict[str, list[str]], runs: int) -> list[Figures]:
    """N rounds, each running every command once in turn, after one warm-up round."""
    walls: dict[str, list[float]] = {label: [] for label in commands}
    for round_ in range(runs + 1):
        for label, command in commands.items():
            wall = _run_once(command)
            if round_:  # round 0 warms the page cache and .pyc files
                walls[label].append(wall)
    return [
        Figures(
            label,
            statistics.median(walls[label]),
            min(walls[label]),
            max(_peak_rss_mib(command) for _ in range(3)),
        )
        for label, command in commands.items()
    ]


def loaded_heavy(what: str) -> str:
    """Which heavy third-party modules `import <what>` leaves in sys.modules."""
    script = _LOADED.format(what=what, heavy=HEAVY)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return done.stderr.strip() or "none"


def loaded_by_help() -> str:
    script = (
        "import sys, contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    import llmclient.cli; llmclient.cli.main(['--help'])\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return done.stderr.strip() or "none"


def top_imports(arguments: list[str], top: int) -> list[tuple[int, int, str]]:
    """(cumulative us, self us, name) of the slowest imports of `python <arguments>`, one run."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *arguments],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, cumulative, name = line.removeprefix("import time:").split("|")
        rows.append((int(cumulative), int(own), name.rstrip()))
    rows.sort(reverse=True)
    return rows[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per command (default: 15)")
    parser.add_argument("--top", type=int, default=10, help="imports listed (default: 10)")
    args = parser.parse_args()

    python = sys.executable
    commands = {
        "python -c pass": [python, "-c", "pass"],
        "python -c 'import llmclient'": [python, "-c", "import llmclient"],
        "python -m llmclient --help": [python, "-m", "llmclient", "--help"],
    }
    script = shutil.which("llmclient", path=str(Path(python).parent))
    if script:
        commands["llmclient --help (console script)"] = [script, "--help"]

    print(f"{sys.version.split()[0]} on {sys.platform}, {os.cpu_count()} CPUs, {args.runs} runs")
    results = measure(commands, args.runs)
    bare = results[0].median_s
    width = max(len(r.label) for r in results)
    print(f"{'command':<{width}}  median ms  min ms  over bare ms  x bare  peak RSS MiB")
    for r in results:
        print(
            f"{r.label:<{width}}  {r.median_s * 1000:9.1f}  {r.min_s * 1000:6.1f}  "
            f"{(r.median_s - bare) * 1000:12.1f}  {r.median_s / bare:6.1f}  "
            f"{r.peak_rss_mib:12.1f}"
        )

    print(f"\nheavy modules loaded by `import llmclient`: {loaded_heavy('llmclient')}")
    print(f"heavy modules loaded by `llmclient --help`: {loaded_by_help()}")
    print(
        f"(for scale: `import llmclient; llmclient.OpenAIClient` loads the SDK: "
        f"{loaded_heavy('llmclient; llmclient.OpenAIClient')})"
    )

    for label, arguments in IMPORTED.items():
        print(f"\ntop {args.top} imports of `{label}` by cumulative time (one run):")
        print(f"{'cumulative ms':>13}  {'self ms':>7}  module")
        for cumulative, own, name in top_imports(arguments, args.top):
            print(f"{cumulative / 1000:13.1f}  {own / 1000:7.1f}  {name}")


if __name__ == "__main__":
    main()
