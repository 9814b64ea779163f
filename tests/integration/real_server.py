"""Build, provision and run a real llama.cpp ``llama-server`` on loopback for integration tests.

The integration tier (``pytest -m integration -n 0``) talks to a real OpenAI-compatible server with
real parallel slots, real tokenisation and real logprobs.  No model can be downloaded, so this
script:

* **build** - fetches the ``llama-cpp-python==0.3.36`` sdist from PyPI with pip (sdist only, no
  wheel is built), and compiles ``llama-server`` (statically linked, CPU only, no web UI, no
  network features) from its vendored ``vendor/llama.cpp`` tree.  The binary and the vocabulary
  file ``ggml-vocab-llama-spm.gguf`` are cached; an existing binary is reused when it answers
  ``--version``.
* **model** - writes a tiny, deterministic, random-weight ``llama`` GGUF (4 blocks, width 256,
  f16, ~40 MB) whose ``tokenizer.*`` keys are copied from the vocabulary file, so tokenisation
  is real.  Needs the ``gguf`` package (it brings numpy).
* **serve** - starts ``llama-server`` on 127.0.0.1 (see :func:`start_server`, used by the
  fixtures in ``tests/integration/conftest.py``) and, from the command line, keeps it in the
  foreground.

The command line is ``scripts/real_server.py`` (a thin wrapper around :func:`main`)::

    python scripts/real_server.py [build|model|serve|all] [--cache-dir DIR] [--jobs N]
    python scripts/real_server.py serve --parallel 2 [--embeddings] [--port 8080]

The cache directory is ``$LLMCLIENT_CACHE_DIR`` if set, else
``~/.cache/llmclient/llama.cpp-0.3.36``.  Everything is idempotent and guarded by a file lock, so
concurrent callers (pytest-xdist workers, two terminals) build only once.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
SDIST_NAME = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}"
BINARY_NAME = "llama-server"
VOCAB_NAME = "ggml-vocab-llama-spm.gguf"

# Tiny random model.  Bump MODEL_REVISION whenever the generator changes so caches regenerate.
MODEL_REVISION = 1
MODEL_NAME = f"tiny-llama-random-r{MODEL_REVISION}.gguf"
MODEL_ALIAS = "tiny-llama"
MODEL_SEED = 20240601
N_EMBD = 256
N_HEAD = 4
N_HEAD_KV = 4
N_LAYER = 4
N_FF = 768
N_CTX_TRAIN = 2048
INIT_STD = 0.02
RMS_EPS = 1e-5

CMAKE_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_CURL=OFF",
    "-DGGML_NATIVE=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    # One self-contained binary instead of libllama.so/libggml*.so next to it.
    "-DBUILD_SHARED_LIBS=OFF",
    # The server lives in tools/server and is gated by these two (ON by default for a
    # standalone tree, spelled out so the build does not depend on that default).
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    # No web UI: the default (LLAMA_USE_PREBUILT_UI=ON) downloads assets from Hugging Face at
    # build time; with both OFF the server embeds an empty asset table.
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    # Loopback HTTP only; do not depend on OpenSSL headers being installed.
    "-DLLAMA_OPENSSL=OFF",
]


def log(msg: str) -> None:
    print(f"[real_server] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# cache


def default_cache_dir() -> Path:
    env = os.environ.get("LLMCLIENT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "llmclient" / f"llama.cpp-{LLAMA_CPP_PYTHON_VERSION}"


def _resolve(cache_dir: Path | str | None) -> Path:
    path = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def binary_path(cache_dir: Path | str | None = None) -> Path:
    return _resolve(cache_dir) / "bin" / BINARY_NAME


def vocab_path(cache_dir: Path | str | None = None) -> Path:
    return _resolve(cache_dir) / VOCAB_NAME


def model_path(cache_dir: Path | str | None = None) -> Path:
    return _resolve(cache_dir) / MODEL_NAME


@contextlib.contextmanager
def _cache_lock(cache: Path) -> Iterator[None]:
    """Exclusive lock on the cache dir so that concurrent callers build/generate only once."""
    with open(cache / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another process holding {cache / '.lock'} ...")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(cmd: list[str], *, cwd: Path | None = None, log_file: Path | None = None) -> None:
    log("$ " + " ".join(cmd) + (f"   (in {cwd})" if cwd else ""))
    if log_file is None:
        subprocess.run(cmd, cwd=cwd, check=True)
        return
    with open(log_file, "ab") as out:
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(
            f"command failed with exit code {proc.returncode}: {' '.join(cmd)}\n"
            f"--- last lines of {log_file} ---\n{_tail(log_file)}"
        )


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# build


def binary_works(binary: Path) -> bool:
    if not binary.is_file() or not os.access(binary, os.X_OK):
        return False
    try:
        proc = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def binary_version(binary: Path) -> str:
    proc = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    return (proc.stdout + proc.stderr).strip()


def _fetch_sdist(work: Path) -> Path:
    """Download (not build) the llama-cpp-python sdist with pip and extract it; return its root.

    ``pip download --no-binary :all:`` is the only way pip fetches an sdist; it still prepares
    the package metadata (a few seconds, installs scikit-build-core into an isolated env) but
    never runs CMake.
    """
    root = work / SDIST_NAME
    marker = work / ".extracted"
    if marker.is_file() and root.is_dir():
        log(f"reusing extracted sdist in {root}")
        return root
    tarball = work / f"{SDIST_NAME}.tar.gz"
    if not tarball.is_file():
        if importlib.util.find_spec("pip") is None:
            raise RuntimeError(f"building llama-server needs pip in {sys.executable}")
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--disable-pip-version-check",
                f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}",
                "-d",
                str(work),
            ]
        )
    if not tarball.is_file():
        raise RuntimeError(f"pip download did not produce {tarball}")
    log(f"extracting {tarball.name}")
    shutil.rmtree(root, ignore_errors=True)
    with tarfile.open(tarball) as tf:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
            tf.extractall(work, filter="data")
        else:  # pragma: no cover
            tf.extractall(work)
    marker.touch()
    return root


def ensure_binary(
    cache_dir: Path | str | None = None, *, jobs: int = 2, force: bool = False
) -> Path:
    """Return the path of a working cached ``llama-server``, building it if needed."""
    cache = _resolve(cache_dir)
    binary = cache / "bin" / BINARY_NAME
    vocab = cache / VOCAB_NAME
    if not force and binary_works(binary) and vocab.is_file():
        log(f"using cached {binary}")
        return binary
    with _cache_lock(cache):
        if not force and binary_works(binary) and vocab.is_file():
            log(f"using cached {binary} (built by another process)")
            return binary
        missing = [tool for tool in ("cmake", "c++") if shutil.which(tool) is None]
        if missing:
            raise RuntimeError(f"building llama-server needs {' and '.join(missing)} on PATH")
        t0 = time.monotonic()
        work = cache / "_build"  # kept across interrupted runs so cmake resumes incrementally
        work.mkdir(exist_ok=True)
        root = _fetch_sdist(work)
        src = root / "vendor" / "llama.cpp"
        build_log = cache / "build.log"
        build_log.write_text("")
        log(f"configuring llama.cpp (log: {build_log})")
        _run(["cmake", "-B", "build", *CMAKE_FLAGS], cwd=src, log_file=build_log)
        log(f"compiling {BINARY_NAME} with -j{jobs}; 4-10 min on 2 cores (log: {build_log})")
        _run(
            ["cmake", "--build", "build", "--target", BINARY_NAME, f"-j{jobs}"],
            cwd=src,
            log_file=build_log,
        )
        built = src / "build" / "bin" / BINARY_NAME
        if not binary_works(built):
            raise RuntimeError(f"{built} was built but does not run --version")
        binary.parent.mkdir(exist_ok=True)
        tmp = binary.with_suffix(".tmp")
        shutil.copy2(built, tmp)
        os.replace(tmp, binary)
        shutil.copy2(src / "models" / VOCAB_NAME, vocab)
        shutil.rmtree(work, ignore_errors=True)
        log(f"built {binary} in {time.monotonic() - t0:.0f}s: {binary_version(binary)}")
        return binary


# --------------------------------------------------------------------------------------------
# model


def _import_gguf() -> Any:
    try:
        import gguf
    except ImportError as exc:  # pragma: no cover - message only
        raise RuntimeError(
            "generating the test model needs the 'gguf' package (it brings numpy): "
            f"{sys.executable} -m pip install 'gguf>=0.19'  (or pip install -e '.[dev]')"
        ) from exc
    return gguf


def generate_model(vocab: Path, out: Path) -> None:
    """Write a tiny deterministic random-weight llama GGUF with the real SPM vocabulary."""
    gguf = _import_gguf()
    import numpy as np

    reader = gguf.GGUFReader(str(vocab))
    tmp = out.with_name(out.name + ".tmp")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    writer.add_name("llmclient tiny random llama")
    writer.add_context_length(N_CTX_TRAIN)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(RMS_EPS)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

    n_vocab = 0
    for name, field in reader.fields.items():
        if not name.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        value = field.contents()
        if name == "tokenizer.ggml.tokens":
            n_vocab = len(value)
        writer.add_key_value(name, value, vtype, sub_type=sub_type)
    if n_vocab == 0:
        raise RuntimeError(f"{vocab} has no tokenizer.ggml.tokens")
    writer.add_vocab_size(n_vocab)

    rng = np.random.default_rng(MODEL_SEED)

    def weight(*shape: int) -> Any:
        # numpy shape is the reverse of ggml's ne: (rows = out features, cols = in features)
        return (rng.standard_normal(shape, dtype=np.float32) * INIT_STD).astype(np.float16)

    def norm() -> Any:
        return np.ones(N_EMBD, dtype=np.float32)

    head_dim = N_EMBD // N_HEAD
    writer.add_tensor("token_embd.weight", weight(n_vocab, N_EMBD))
    for i in range(N_LAYER):
        p = f"blk.{i}."
        writer.add_tensor(p + "attn_norm.weight", norm())
        writer.add_tensor(p + "attn_q.weight", weight(N_HEAD * head_dim, N_EMBD))
        writer.add_tensor(p + "attn_k.weight", weight(N_HEAD_KV * head_dim, N_EMBD))
        writer.add_tensor(p + "attn_v.weight", weight(N_HEAD_KV * head_dim, N_EMBD))
        writer.add_tensor(p + "attn_output.weight", weight(N_EMBD, N_HEAD * head_dim))
        writer.add_tensor(p + "ffn_norm.weight", norm())
        writer.add_tensor(p + "ffn_gate.weight", weight(N_FF, N_EMBD))
        writer.add_tensor(p + "ffn_up.weight", weight(N_FF, N_EMBD))
        writer.add_tensor(p + "ffn_down.weight", weight(N_EMBD, N_FF))
    writer.add_tensor("output_norm.weight", norm())
    writer.add_tensor("output.weight", weight(n_vocab, N_EMBD))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, out)


def ensure_model(cache_dir: Path | str | None = None, *, force: bool = False) -> Path:
    """Return the path of the cached tiny model, generating it (and the build) if needed."""
    cache = _resolve(cache_dir)
    out = cache / MODEL_NAME
    if out.is_file() and not force:
        log(f"using cached {out}")
        return out
    vocab = cache / VOCAB_NAME
    if not vocab.is_file():
        ensure_binary(cache)  # the vocab file comes out of the same sdist
    with _cache_lock(cache):
        if out.is_file() and not force:
            return out
        t0 = time.monotonic()
        log(f"generating {out} (seed {MODEL_SEED})")
        generate_model(vocab, out)
        log(
            f"generated {out.name}: {out.stat().st_size / 1e6:.1f} MB "
            f"in {time.monotonic() - t0:.1f}s"
        )
    return out


def ensure_all(cache_dir: Path | str | None = None, *, jobs: int = 2) -> tuple[Path, Path]:
    """Build/generate whatever is missing; return ``(binary, model)``."""
    binary = ensure_binary(cache_dir, jobs=jobs)
    return binary, ensure_model(cache_dir)


# --------------------------------------------------------------------------------------------
# serve


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """Runs in the child between fork and exec (Linux only).

    The signal fires when the *thread* that forked exits, so it is only armed for servers
    started from the main thread.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: no orphaned servers if pytest dies
    except Exception:
        pass


_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


def _http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with _LOOPBACK.open(url, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class RunningServer:
    """A ``llama-server`` process on loopback; a context manager that stops it on exit."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        *,
        port: int,
        log_path: Path,
        parallel: int,
        ctx: int,
        embeddings: bool,
        cmd: list[str],
    ) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.url}/v1"
        self.log_path = log_path
        self.parallel = parallel
        self.ctx = ctx
        self.embeddings = embeddings
        self.cmd = cmd
        self.model = ""

    def __repr__(self) -> str:
        return f"RunningServer(url={self.url!r}, model={self.model!r}, parallel={self.parallel})"

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"llama-server exited with code {self.proc.returncode} during startup\n"
                    f"cmd: {' '.join(self.cmd)}\n--- log tail ---\n{self.log_tail()}"
                )
            try:
                status, body = _http_get(self.url + "/health", timeout=2)
                if status == 200:
                    break
                last = f"HTTP {status}: {body[:200]!r}"
            except OSError as exc:
                last = repr(exc)
            time.sleep(0.1)
        else:
            self.stop()
            raise TimeoutError(
                f"llama-server not healthy after {timeout:.0f}s ({last})\n"
                f"cmd: {' '.join(self.cmd)}\n--- log tail ---\n{self.log_tail()}"
            )
        status, body = _http_get(self.base_url + "/models")
        if status != 200:
            raise RuntimeError(f"GET /v1/models -> {status}: {body[:200]!r}")
        self.model = str(json.loads(body)["data"][0]["id"])

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _prune_logs(logs: Path, keep: int = 20) -> None:
    """Keep the newest ``keep`` server logs (one is written per server start)."""

    def mtime(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:  # removed meanwhile by a concurrent caller
            return 0.0

    for path in sorted(logs.glob("llama-server-*.log"), key=mtime)[:-keep]:
        path.unlink(missing_ok=True)


def start_server(
    *,
    parallel: int = 2,
    embeddings: bool = False,
    ctx: int = 1024,
    port: int | None = None,
    threads: int | None = 1,
    threads_http: int | None = None,
    cache_dir: Path | str | None = None,
    startup_timeout: float = 120.0,
    extra_args: list[str] | None = None,
) -> RunningServer:
    """Start ``llama-server`` on 127.0.0.1 and wait until ``/health`` answers 200.

    ``parallel`` slots of ``ctx`` tokens each (``-c`` is the total: ``ctx * parallel``).  With
    ``embeddings=True`` the server only serves ``/v1/embeddings`` (mean pooling).  Builds the
    binary and generates the model first if they are not cached.  Use as a context manager, or
    call :meth:`RunningServer.stop`.

    ``threads`` (compute threads) defaults to 1: on a shared 2-core machine ``-t 2`` is ~30%
    faster when idle, but its spinning threads stall for seconds whenever another process takes
    a core (measured: 4 concurrent requests 105 ms -> 3.1 s), while ``-t 1`` stays at ~170 ms
    and leaves a core for the test process.  ``None`` = the server default (all cores).

    ``threads_http`` defaults to the server's own ``max(parallel + 4, cores - 1)``.  Each
    keep-alive connection pins one of those threads until it closes or idles for 5 s, so a
    client holding more open connections than that sees requests stall for ~5 s before they
    even reach the queue (measured: 8 concurrent keep-alive requests, ``-np 2``, 2 cores).
    Pass a larger value to take the HTTP layer out of a measurement.
    """
    binary, model = ensure_all(cache_dir)
    logs = _resolve(cache_dir) / "logs"
    logs.mkdir(exist_ok=True)
    _prune_logs(logs)
    pdeathsig = (
        sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread()
    )
    attempts = 3 if port is None else 1
    for attempt in range(1, attempts + 1):
        chosen = port if port is not None else free_port()
        cmd = [
            str(binary),
            "-m",
            str(model),
            "--alias",
            MODEL_ALIAS,
            "--host",
            "127.0.0.1",
            "--port",
            str(chosen),
            "-np",
            str(parallel),
            "-c",
            str(ctx * parallel),
            "--metrics",
            "--slots",
            "--no-webui",
            "--offline",
        ]
        if threads is not None:
            cmd += ["-t", str(threads)]
        if threads_http is not None:
            cmd += ["--threads-http", str(threads_http)]
        if embeddings:
            # the whole input of a slot must fit in one physical batch to be pooled
            cmd += ["--embeddings", "--pooling", "mean", "-b", str(ctx), "-ub", str(ctx)]
        cmd += extra_args or []
        log_path = logs / f"llama-server-{chosen}.log"
        log_file = open(log_path, "wb")  # noqa: SIM115 - handed to the child, closed below
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if pdeathsig else None,
            )
        finally:
            log_file.close()
        server = RunningServer(
            proc,
            port=chosen,
            log_path=log_path,
            parallel=parallel,
            ctx=ctx,
            embeddings=embeddings,
            cmd=cmd,
        )
        try:
            server.wait_ready(startup_timeout)
        except RuntimeError:
            server.stop()
            bind_race = "bind" in server.log_tail().lower()
            if attempt < attempts and bind_race:
                log(f"port {chosen} was taken, retrying")
                continue
            raise
        except BaseException:
            server.stop()
            raise
        log(f"llama-server ready at {server.base_url} (model {server.model!r}, log {log_path})")
        return server
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "command",
        nargs="?",
        default="all",
        choices=["build", "model", "serve", "all"],
        help="build: compile llama-server; model: generate the tiny GGUF (builds first if the "
        "vocab is missing); all (default): both; serve: both, then run the server in the "
        "foreground until Ctrl-C",
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help=f"default: {default_cache_dir()}"
    )
    parser.add_argument("--jobs", "-j", type=int, default=2, help="parallel compile jobs")
    parser.add_argument("--force", action="store_true", help="rebuild / regenerate anyway")
    parser.add_argument("--parallel", "-np", type=int, default=2, help="serve: slots")
    parser.add_argument("--ctx", type=int, default=1024, help="serve: context per slot")
    parser.add_argument("--port", type=int, default=None, help="serve: port (default: free)")
    parser.add_argument("--embeddings", action="store_true", help="serve: embeddings only")
    parser.add_argument("--threads", "-t", type=int, default=1, help="serve: compute threads")
    args = parser.parse_args(argv)
    cache = _resolve(args.cache_dir)
    log(f"cache dir: {cache}")

    if args.command in ("build", "all"):
        ensure_binary(cache, jobs=args.jobs, force=args.force)
    if args.command in ("model", "all"):
        ensure_model(cache, force=args.force)
    if args.command == "serve":
        ensure_binary(cache, jobs=args.jobs)
        # `kill PID` and Ctrl-C both stop the server (the `with` below), also when this script
        # was started in the background where SIGINT is ignored
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with start_server(
            parallel=args.parallel,
            embeddings=args.embeddings,
            ctx=args.ctx,
            port=args.port,
            threads=args.threads,
            cache_dir=cache,
        ) as server:
            print(f"base_url={server.base_url}  model={server.model}  log={server.log_path}")
            print("Ctrl-C to stop", flush=True)
            try:
                while server.proc.poll() is None:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
            if server.proc.returncode not in (None, 0):
                print(server.log_tail(), file=sys.stderr)
                return 1
    else:
        print(f"binary={binary_path(cache)}")
        if model_path(cache).is_file():
            print(f"model={model_path(cache)}")
    return 0
