"""The one-line description of the machine every benchmark prints with its figures."""

import os
import platform

import psutil


def describe_machine() -> str:
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}")
