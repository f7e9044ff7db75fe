import os
import platform
import subprocess
import sys


def _keep(flag: str) -> list[str]:
    code = "from dcprivacy.cpu import keep_freed_memory as k; a = k(); print(a, k() == a)"
    env = {**os.environ, "DCPRIVACY_CPU_ALLOCATOR": flag}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60).stdout.split()


def test_allocator_setting_is_applied_once_and_can_be_turned_off():
    on = _keep("1")
    assert on[1] == "True"  # a second call answers like the first
    if platform.libc_ver()[0] == "glibc":
        assert on[0] == "True"
    assert _keep("0") == ["False", "True"]
