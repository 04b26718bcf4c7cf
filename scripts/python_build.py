"""Says whether the interpreter running it is an optimised CPython build.

Run by scripts/setup with each candidate interpreter (it must work on any
Python 3, hence no dependencies). Prints one line, `<version> <verdict>
<why>`, verdict `optimised` or `plain`. The worker's per-event CPU cost
depends on the build several-fold less than on the code, but a build
without profile-guided optimisation (PGO) and link-time optimisation (LTO)
measured ~1.5x slower on an asyncio-heavy micro-benchmark, so setup
prefers an optimised one when the machine has it.

Signals: upstream builds with PGO say `--enable-optimizations` in their
configure arguments; Debian and Ubuntu build their system Python with PGO
and LTO but strip those flags from sysconfig, so a distribution build
(prefix /usr, a Debian README beside its docs) counts as optimised.
"""

import os
import sys
import sysconfig


def verdict() -> tuple[str, str]:
    args = sysconfig.get_config_var("CONFIG_ARGS") or ""
    if "--enable-optimizations" in args:
        lto = "--with-lto" in args
        return "optimised", "PGO" + (" + LTO" if lto else "") + " (configure arguments)"
    readme = f"/usr/share/doc/python{sys.version_info[0]}.{sys.version_info[1]}/README.Debian"
    if sys.base_prefix == "/usr" and os.path.exists(readme):
        return "optimised", "Debian/Ubuntu system build (PGO + LTO)"
    return "plain", "no PGO in its configure arguments"


if __name__ == "__main__":
    name, why = verdict()
    print(f"{sys.version.split()[0]} {name} {why}")
