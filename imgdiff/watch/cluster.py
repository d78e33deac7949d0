"""Running the scene tasks on dask: a local cluster (or a given scheduler) and its workers.

``_run_tasks`` submits :func:`~imgdiff.watch.process.process_scene` for each scene as its
cache key comes in and hands back each result as it finishes; local workers are
single-threaded processes, one per usable core, with settings that keep them off each
other's cores and their heap warm between scenes.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ..io.layout import one_line
from .cache import WatchParams
from .manifest import SceneEntry
from .process import process_scene


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the system reports it)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _one_thread_per_worker() -> None:
    """Run in each worker process of a local cluster: one core each.

    OpenCV and the BLAS thread pools would otherwise start one thread per core in every
    worker (2 workers x 2 threads on 2 cores). The environment variables only reach
    libraries loaded later; threadpoolctl changes the pools already loaded (numpy's BLAS).
    """
    import os

    import cv2
    from threadpoolctl import threadpool_limits

    cv2.setNumThreads(1)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    threadpool_limits(1)  # applies now and stays (not used as a context manager)


#: dask settings for the local cluster: no statistical profiler sampling the task thread (it takes
#: the GIL every 10 ms; with one core per worker, that time is taken from the task), and fewer
#: housekeeping wake-ups (event-loop tick every 20 ms, system monitor every 0.5 s, memory monitor
#: every 0.1 s by default, in every worker, nanny and the scheduler): each wake-up preempts a task
#: when the workers fill the cores (``watch`` benchmark, 2 workers on 2 cores: ~2,500 involuntary
#: context switches per worker and run, 1,700 with these settings, run 6.8 -> 6.6 s). The memory
#: monitor still checks each worker's memory every second.
_LOCAL_CLUSTER_CONFIG: dict[str, Any] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
}


#: glibc allocator settings of local workers (see :func:`_worker_environ`): temporaries up to
#: 32 MiB (the largest mmap threshold glibc accepts) come from the heap, and up to 128 MiB of
#: freed heap is kept for the next scene instead of being handed back to the system.
WORKER_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(128 * 2**20)}


def _worker_environ() -> dict[str, Any]:
    """Environment of local worker processes: dask's defaults, with glibc's heap kept warm.

    A worker runs one short scene after another, each allocating and freeing the same
    numpy temporaries. dask sets ``MALLOC_TRIM_THRESHOLD_=65536`` in its workers to hand freed
    memory back to the system; that also turns off glibc's adaptive mmap threshold, so every
    temporary above 128 KiB is mapped afresh and page-faulted in (one 384 px scene of the
    ``watch`` benchmark: 0.48 s instead of 0.36 s). Even glibc's defaults fault the tasks'
    temporaries in again and again (tasks run in a worker thread, whose arena is trimmed
    eagerly): about 20,000 page faults per 384 px scene. :data:`WORKER_MALLOC_ENV` keeps those
    temporaries in the heap: one worker runs the 50-scene benchmark's tasks 9-11 % faster
    (384 px chips: 11.9 -> 10.5 s; 768 px: 41.8 -> 37.5 s). A worker holds at most 128 MiB of
    freed memory beyond its peak. The single-thread settings (``OMP_NUM_THREADS`` ...) stay.
    """
    import dask
    import distributed  # noqa: F401  (registers distributed's configuration defaults)

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    env.update(WORKER_MALLOC_ENV)
    return env


def _run_tasks(todo: Iterable[tuple[SceneEntry, str]], params: WatchParams,
               done: Callable[[tuple[SceneEntry, str], dict], None], *, scheduler: str | None, workers: int,
               processes: bool, closing: list[threading.Thread] | None = None) -> dict[str, Any]:
    """Run :func:`process_scene` over ``todo`` on dask; call ``done`` in this thread as each finishes.

    ``todo`` may be a lazy iterator: the engine starts with its first item and each further
    item is submitted as it comes. With ``closing`` (a list), a run that finished shuts its
    client and local cluster down in a thread appended to it (the caller joins it once its
    own work is done); an interrupted run shuts them down before returning.
    """
    items = iter(todo)
    if scheduler == "synchronous":
        for item in items:
            done(item, process_scene(item[0], params))
        return {"scheduler": "synchronous", "workers": 1}
    first = next(items, None)
    if first is None:
        return {"scheduler": scheduler or "none (all cached)", "workers": 0}
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    finished_all = False
    futures: dict[Any, tuple[SceneEntry, str]] = {}
    if scheduler:
        client = Client(scheduler)
    else:
        import dask

        with dask.config.set(_LOCAL_CLUSTER_CONFIG | {"distributed.nanny.pre-spawn-environ": _worker_environ()}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes,
                                   dashboard_address=None)
        client = Client(cluster)
    try:
        if cluster is not None and processes:
            # one core per worker, however many: dask already starts its workers with
            # OMP_NUM_THREADS=1; OpenCV's own thread pool ignores that and is capped here.
            client.run(_one_thread_per_worker)
        n_workers = len(client.scheduler_info().get("workers", {}))
        finished = as_completed()
        for entry, key in itertools.chain([first], items):
            f = client.submit(process_scene, entry, params, key=f"imgdiff-watch-{key}", pure=True)
            futures[f] = (entry, key)
            finished.add(f)
        for f in finished:
            entry, key = futures[f]
            try:
                res = f.result()
            except Exception as e:  # a worker died or the task could not run
                res = {"id": entry.id, "date": entry.date.isoformat(), "path": entry.path, "status": "error",
                       "error": f"task failed: {type(e).__name__}: {one_line(e)}"}
            done((entry, key), res)
        finished_all = True
        if scheduler:
            return {"scheduler": scheduler, "workers": n_workers}
        return {"scheduler": "LocalCluster", "workers": n_workers, "processes": processes}
    finally:
        # results are all in hand (or no longer wanted): release them before the workers go, so
        # that closing a local cluster does not first move the results between the closing
        # workers (dask/distributed#9300: a worker then outlives the nanny's timeout, and a
        # TimeoutError is logged at exit)
        for f in futures:
            f.release()
        futures.clear()
        if finished_all and closing is not None:
            closing.append(threading.Thread(target=_shut_down, args=(client, cluster), name="imgdiff-dask-close"))
            closing[-1].start()
        else:
            _shut_down(client, cluster)


def _shut_down(client: Any, cluster: Any) -> None:
    client.close()
    if cluster is not None:
        cluster.close()
