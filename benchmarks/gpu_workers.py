"""GPU-pinned Spark workers on a machine with NVIDIA GPUs (seed §6.4, Listing 6.11, Listing C.5, §8.2.3).

Run: `.venv/bin/python benchmarks/gpu_workers.py` on a host with at least two NVIDIA GPUs, the driver and
nvidia-smi (about 2 minutes). On a host without them it says why and exits 2: nothing here can be shown on a
stand-in, the point is the real driver's view.

What it does, in a fresh temporary home with ports shifted by 28000: a Spark master with no worker; the
auto-scaler's Execute phase (:func:`spark_scaler.controller.execute`, ``opsflow.gpu: true``, the real nvidia-ml-py
inventory) scales 0 → 2, which starts each worker pinned to its own free GPU (its discovery script,
``CUDA_VISIBLE_DEVICES``, Listing 6.11's ``spark.worker.resource.gpu.*`` options); then a PySpark job with Listing
C.5's ``spark.executor.resource.gpu.amount=1`` / ``spark.task.resource.gpu.amount=1`` runs one task per worker.
Each task opens a CUDA context through the driver API (``libcuda``: ``cuInit``, ``cuCtxCreate``), reports the GPU
addresses Spark handed it, its ``CUDA_VISIBLE_DEVICES`` and the UUID of the device it opened, and holds the context
while ``nvidia-smi --query-compute-apps`` is read here.

Printed, and checked (exit 1 when one fails): two workers on two distinct GPUs; every task on the GPU of its
worker; nvidia-smi's process list naming each task's process on that same GPU and on no other. The figure, as
a ratio to a baseline of the same run: the seconds to start a GPU-pinned worker against a plain CPU worker.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from opsflow.adapters.spark import JOB_JVM_FLAGS, SparkMaster
from opsflow.gpu import list_gpus, no_gpu_reason
from opsflow.stack.config import StackConfig
from opsflow.stack.env import child_env
from opsflow.stack.spark import SparkComponent, local_worker_backend
from spark_scaler.backends.base import GPU_APP_CONF, GPU_ENV_VAR
from spark_scaler.config import EXAMPLE_THESIS_YAML, load_config_text
from spark_scaler.controller import execute
from spark_scaler.gpus import GpuInventory
from spark_scaler.models import Action, Decision, Observation

PORT_OFFSET = 28000
HOLD_S = 20
RESULT_MARKER = "GPU_RESULT "

JOB_SCRIPT = f"""\
import ctypes, json, os, sys, time
from pyspark import TaskContext
from pyspark.sql import SparkSession

hold_s = float(sys.argv[1])


def on_gpu(_):
    cuda = ctypes.CDLL("libcuda.so.1")
    dev, ctx = ctypes.c_int(), ctypes.c_void_p()
    assert cuda.cuInit(0) == 0
    assert cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
    uuid = (ctypes.c_ubyte * 16)()
    assert cuda.cuDeviceGetUuid(uuid, dev) == 0
    hexed = bytes(uuid).hex()
    opened = "GPU-" + "-".join([hexed[:8], hexed[8:12], hexed[12:16], hexed[16:20], hexed[20:]])
    assert cuda.cuCtxCreate_v2(ctypes.byref(ctx), 0, dev) == 0
    time.sleep(hold_s)  # nvidia-smi lists this process on its GPU meanwhile
    cuda.cuCtxDestroy_v2(ctx)
    ctx_ = TaskContext.get()
    return {{"addresses": ctx_.resources()["gpu"].addresses, "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "opened": opened, "pid": os.getpid()}}


spark = SparkSession.builder.appName("opsflow-gpu-workers").getOrCreate()
try:
    out = spark.sparkContext.parallelize(range(2), 2).map(on_gpu).collect()
    print({RESULT_MARKER!r} + json.dumps(out), flush=True)
finally:
    spark.stop()
"""


def compute_apps() -> dict[int, str]:
    """pid → GPU UUID of every process nvidia-smi lists with a CUDA context."""
    out = subprocess.run(
        ["nvidia-smi", "--query-compute-apps=pid,gpu_uuid", "--format=csv,noheader"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    apps = {}
    for line in out.splitlines():
        pid, _, uuid = line.partition(",")
        if pid.strip().isdigit():
            apps[int(pid)] = uuid.strip()
    return apps


def worker_gpu_of(pid: int) -> str | None:
    """The GPU our backend pinned the worker above process ``pid`` to (its environment's record), or None."""
    with_parents = [psutil.Process(pid), *psutil.Process(pid).parents()]
    for proc in with_parents:
        try:
            gpu = proc.environ().get(GPU_ENV_VAR)
        except psutil.Error:
            continue
        if gpu:
            return gpu
    return None


def main() -> int:
    why = no_gpu_reason()
    gpus = list_gpus() if why is None else []
    if why is not None or len(gpus) < 2:
        print(f"not verified: this host has {len(gpus)} NVIDIA GPU(s) ({why or 'two are needed'})")
        return 2
    home = Path(tempfile.mkdtemp(prefix="opsflow-gpu-workers-"))
    stack = StackConfig(home=home, spark_workers=0, spark_worker_cores=1).shifted(PORT_OFFSET)
    stack.save()
    env = child_env(stack)
    spark = SparkComponent(stack, env)
    problems: list[str] = []
    try:
        spark.start()
        backend = local_worker_backend(stack, env)
        master = SparkMaster(stack.spark_master_ui_url, timeout_s=3.0)
        t = time.monotonic()
        cpu_ref = backend.start_worker()
        cpu_start_s = time.monotonic() - t
        backend.stop_worker(cpu_ref, graceful=False)
        cfg = load_config_text(EXAMPLE_THESIS_YAML + "opsflow:\n  gpu: true\n", "gpu_workers.py")
        decision = Decision(at=0, action=Action.SCALE_OUT, current=0, target=2, reason="benchmark: two GPU workers")
        t = time.monotonic()
        result = execute(decision, Observation(at=0, active_workers=0), backend, cfg, gpus=GpuInventory())
        gpu_start_s = (time.monotonic() - t) / max(1, len(result.started))
        pinned = {ref.id: ref.gpu for ref in result.started}
        print(f"workers started by the controller: {pinned} (error: {result.error})")
        if result.error or len(set(pinned.values())) != 2:
            problems.append(f"expected two workers on two distinct GPUs, got {pinned} ({result.error})")
        print(f"master lists: {[(w.host, w.state) for w in master.state().alive_workers]}")

        script = home / "gpu_job.py"
        script.write_text(JOB_SCRIPT)
        conf = {
            **GPU_APP_CONF,
            "spark.ui.enabled": "false",
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.driver.extraJavaOptions": JOB_JVM_FLAGS,
            "spark.pyspark.driver.python": sys.executable,
            # both executors registered before the first task: one task per worker, not two on the first
            "spark.scheduler.minRegisteredResourcesRatio": "1.0",
            "spark.scheduler.maxRegisteredResourcesWaitingTime": "120s",
        }
        argv = [f"{spark.spark_home}/bin/spark-submit", "--master", stack.spark_master_url]
        for key, value in conf.items():
            argv += ["--conf", f"{key}={value}"]
        job = subprocess.Popen(
            [*argv, str(script), str(HOLD_S)], env={**env, "SPARK_CONF_DIR": str(spark.conf_dir)}, cwd=home,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(HOLD_S / 2 + 10)
        apps = compute_apps()
        owners = {pid: worker_gpu_of(pid) for pid in apps if psutil.pid_exists(pid)}  # read while they hold
        out, err = job.communicate(timeout=300)
        lines = [x for x in out.splitlines() if x.startswith(RESULT_MARKER)]
        if job.returncode != 0 or not lines:
            problems.append(f"the GPU job failed ({job.returncode}): {err[-2000:]}")
            tasks = []
        else:
            tasks = json.loads(lines[-1][len(RESULT_MARKER) :])
        print(f"nvidia-smi compute apps (pid → GPU) while the tasks held their contexts: {apps}")
        for task in tasks:
            worker_gpu = owners.get(task["pid"])
            listed = apps.get(task["pid"])
            print(f"task pid {task['pid']}: Spark gave {task['addresses']}, CUDA_VISIBLE_DEVICES "
                  f"{task['visible']}, opened {task['opened']}, nvidia-smi lists it on {listed}, its worker is "
                  f"pinned to {worker_gpu}")  # fmt: skip
            if task["opened"] != task["visible"] or listed != task["visible"] or worker_gpu != task["visible"]:
                problems.append(f"task {task['pid']} is not on its worker's GPU: {task}, nvidia-smi {listed}")
        if len({t["visible"] for t in tasks}) != 2:
            problems.append(f"the two tasks did not run on two distinct GPUs: {tasks}")
        print(f"start of a GPU-pinned worker {gpu_start_s:.1f} s vs a CPU worker {cpu_start_s:.1f} s: "
              f"{gpu_start_s / cpu_start_s:.2f}x")  # fmt: skip
        for ref in result.started:
            backend.stop_worker(ref, graceful=True)
    finally:
        spark.stop()
    for problem in problems:
        print(f"FAILED: {problem}")
    print("verified on real GPUs" if not problems else "NOT verified")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
