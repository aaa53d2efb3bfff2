"""Masking a survey's files on a Dask cluster: local processes or an existing scheduler.

:class:`DaskExecutor` plugs into :func:`mmx.serving.predict.predict_files` (its ``executor``): the
client expands inputs, checks output names and ``--skip-existing``, and writes the run
log; each *file* becomes one Dask task that runs :func:`mmx.serving.predict.run_one` on a worker,
which writes the mask with the same atomic writer as a local run, so the result is the
same file. Workers and the client must see the inputs and outputs at the same paths (a
shared file system, as on a cluster).

The model reaches the workers as data, not as a registry URI or a folder: the resolved
package (metadata and weights as numpy arrays, :func:`mmx.model.package.package_payload`)
is scattered once to every worker, which builds its :class:`~mmx.serving.inference.Predictor`
once and keeps it for every later file of the run (and of later runs with the same model
and options). Workers need mmx installed (the same version), nothing else: no registry,
no MLflow store.

Threads: a worker runs one file per Dask thread; torch's intra-op threads of a worker
process are the CPUs it may use divided by the Dask threads of all workers on its host
(``--threads`` overrides), so ``dask worker --nworkers 4 --nthreads 1`` on a 16-core node
gives each process 4 torch threads and never oversubscribes the node.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from mmx.errors import ConfigError
from mmx.io.fitsio import InputSpec
from mmx.parallel import available_cpus
from mmx.serving.predict import FileResult, MaskOptions, run_one

__all__ = ["PredictorSettings", "DaskExecutor", "local_cluster", "connect"]

log = logging.getLogger(__name__)

_CACHE: dict[tuple, object] = {}  # one Predictor per worker process, per model and options
_CACHE_LOCK = threading.Lock()


@dataclass(frozen=True)
class PredictorSettings:
    """What rebuilds a :class:`~mmx.serving.inference.Predictor` on a worker, besides the model."""

    classes: tuple[str, ...]
    priors: tuple[tuple[str, float], ...]
    apply_priors: bool
    batch_size: int
    tile: int
    margin: int
    precision: str  # resolved on the client: "float32", "bfloat16" or "int8", never "auto"
    runtime: str  # resolved on the client too: "torch" or "onnxruntime"
    channels_last: bool
    threads: int | None  # None: CPUs / Dask threads on the worker's host
    padding: str = "none"
    tta: str = "none"

    @classmethod
    def of(cls, predictor, *, threads: int | None = None) -> PredictorSettings:
        """The settings of an existing predictor."""
        s = predictor.settings
        return cls(tuple(c.abbr for c in predictor.classes),
                   tuple(sorted(predictor.priors.items())), bool(predictor.apply_priors),
                   int(s.batch_size), int(s.tile), int(s.margin), str(s.precision),
                   str(s.runtime), bool(s.channels_last), threads, str(s.padding),
                   str(s.tta))


def _worker_predictor(payload, settings: PredictorSettings, key: str, host_threads: dict):
    from distributed import get_worker

    from mmx.model.package import package_from_payload
    from mmx.serving.inference import Predictor

    with _CACHE_LOCK:
        cached = _CACHE.get((key, settings))
        if cached is not None:
            return cached
        threads = settings.threads
        if threads is None:
            host = get_worker().address.rsplit(":", 1)[0]
            threads = max(1, available_cpus() // max(1, host_threads.get(host, 1)))
        package = package_from_payload(payload)
        predictor = Predictor(package, classes=list(settings.classes),
                              priors=dict(settings.priors), apply_priors=settings.apply_priors,
                              batch_size=settings.batch_size, threads=threads,
                              tile=settings.tile, margin=settings.margin,
                              precision=settings.precision, runtime=settings.runtime,
                              channels_last=settings.channels_last,
                              padding=settings.padding, tta=settings.tta)
        _CACHE.clear()  # a new model or options: the old predictor is not needed any more
        _CACHE[(key, settings)] = predictor
        return predictor


def _mask_task(spec: InputSpec, payload, settings: PredictorSettings, options: MaskOptions,
               fingerprint: str, host_threads: dict) -> FileResult:
    """What one Dask task runs: mask one file on the worker (never raises for bad input)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    predictor = _worker_predictor(payload, settings, fingerprint, host_threads)
    return run_one(spec, predictor, options, fingerprint=fingerprint)


class DaskExecutor:
    """Runs :func:`mmx.serving.predict.run_one` for each file on a Dask ``distributed`` client.

    Parameters
    ----------
    client : distributed.Client
        Connected client; its workers must have mmx installed and see the files.
    threads : int, optional
        Torch threads per worker process (default: its CPUs over the Dask threads on its
        host).
    """

    def __init__(self, client, *, threads: int | None = None) -> None:
        self.client = client
        self.threads = threads

    def _host_threads(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for address, info in self.client.scheduler_info()["workers"].items():
            host = address.rsplit(":", 1)[0]
            counts[host] = counts.get(host, 0) + int(info.get("nthreads", 1))
        return counts

    def run(self, specs: Sequence[InputSpec], predictor, options: MaskOptions,
            fingerprint: str) -> Iterator[FileResult]:
        """Submit one task per file; yield results as they finish.

        A task that fails on the worker side (the worker died, mmx missing there) is a
        failed result naming the file; interrupting the iteration cancels what is left.
        """
        from distributed import as_completed

        from mmx.model.package import package_payload

        if not specs:
            return
        settings = PredictorSettings.of(predictor, threads=self.threads)
        [payload] = self.client.scatter([package_payload(predictor.package)], broadcast=True,
                                        hash=False)
        host_threads = self._host_threads()
        futures, owner = [], {}
        for i, spec in enumerate(specs):
            future = self.client.submit(_mask_task, spec, payload, settings, options,
                                        fingerprint, host_threads, pure=False,
                                        key=f"mmx-predict-{fingerprint}-{os.getpid()}-{i}")
            futures.append(future)
            owner[future.key] = spec
        finished: set = set()
        try:
            for future in as_completed(futures):
                finished.add(future.key)
                spec = owner[future.key]
                if future.status == "finished":
                    yield future.result()
                    continue
                try:
                    exc = future.exception()
                except Exception as err:  # cancelled or lost
                    exc = err
                yield FileResult(input=str(spec), status="failed", error=(
                    f"{spec}: the Dask worker failed ({type(exc).__name__}: "
                    f"{' '.join(str(exc).split())[:200]}); check that the workers run this "
                    "mmx version and see this file"))
        finally:
            rest = [f for f in futures if f.key not in finished]
            if rest:
                with contextlib.suppress(Exception):
                    self.client.cancel(rest)


@contextlib.contextmanager
def local_cluster(jobs: int, *, threads: int | None = None) -> Iterator[DaskExecutor]:
    """A :class:`DaskExecutor` on ``jobs`` local worker processes (one file at a time each).

    Raises
    ------
    ConfigError
        If ``jobs`` is below 1.
    """
    from distributed import Client, LocalCluster

    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    threads = threads or max(1, available_cpus() // jobs)
    with _quiet_dask():
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        try:
            with Client(cluster) as client:
                yield DaskExecutor(client, threads=threads)
        finally:
            cluster.close()


@contextlib.contextmanager
def connect(address: str, *, threads: int | None = None,
            timeout_s: float | None = None) -> Iterator[DaskExecutor]:
    """A :class:`DaskExecutor` on the existing Dask scheduler at ``address``.

    ``timeout_s`` defaults to Dask's ``distributed.comm.timeouts.connect`` (30 s; set
    ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT`` to change it).

    Raises
    ------
    ConfigError
        If the scheduler cannot be reached or no worker joins within ``timeout_s``.
    """
    import dask
    from dask.utils import parse_timedelta
    from distributed import Client

    if timeout_s is None:
        timeout_s = float(parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"),
                                          default="s"))
    with _quiet_dask():
        try:
            client = Client(address, timeout=timeout_s)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {address} ({exc}); "
                              "expected tcp://HOST:PORT of a running `dask scheduler`") from None
        try:
            try:
                client.wait_for_workers(1, timeout=timeout_s)
            except TimeoutError:
                raise ConfigError(f"the Dask scheduler at {address} has no worker after "
                                  f"{timeout_s:.0f} s; start one with `dask worker "
                                  f"{address}`") from None
            yield DaskExecutor(client, threads=threads)
        finally:
            client.close()


@contextlib.contextmanager
def _quiet_dask():
    """Dask's INFO logs (cluster start, worker joins) are not mmx's output."""
    loggers = [logging.getLogger(n) for n in ("distributed", "dask")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
