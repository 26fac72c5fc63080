"""The machine a measurement ran on, written once for the benchmarks and the experiment reports:
the CPU model, the cores this process may use, the JAX backend and library versions.

    machine_info()     # {'cpu', 'cores', 'platform', 'python', 'jax', ...}: the benchmark JSON
    machine_summary()  # '1 x cpu (Intel Xeon ...), 2 CPU cores, jax 0.10.2': a report line
"""

from __future__ import annotations

import os
import platform

import jax


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity mask; all cores where unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (1.0 = one core busy), rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def machine_info() -> dict:
    """Hardware, software versions and the settings that change speed (XLA flags, glibc
    tunables), as recorded with every benchmark."""
    return {
        "cpu": cpu_model(),
        "cores": cpu_cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "load_at_start": load_average(),
    }


def machine_summary() -> str:
    """One line for a report: devices (the CPU model on CPU), cores, jax version."""
    dev = jax.devices()[0]
    kind = dev.device_kind if dev.platform != "cpu" else cpu_model()
    return (
        f"{jax.device_count()} x {dev.platform} ({kind}), {cpu_cores()} CPU cores, "
        f"jax {jax.__version__}"
    )
