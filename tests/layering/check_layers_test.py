#!/usr/bin/env python3
"""The layering check, on the tree and on a fixture that breaks every rule.

Runs scripts/check_layers.py twice: on the repository, where it must pass,
and on tests/layering/fixture/, a small tree with one violation of each kind
(an upward include, a sideways one into a higher layer's kernel face, the
kernel face including the C++ face and Abseil, a handler using the C++ face
and another folder's private header, a missing header, a file no layer
claims), where it must fail and report exactly those.
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CHECK = os.path.join(ROOT, "scripts", "check_layers.py")
TABLE = os.path.join(ROOT, "cmake", "layers.json")

EXPECTED = [
    'include/khosim/linux/mm.h:2: the kernel face includes "khosim/mm/mm.h", which is not kernel '
    'face',
    'include/khosim/linux/slab.h:2: the kernel face includes "absl/strings/string_view.h"; it uses '
    'the C and C++ standard headers only',
    'lib/handlers/handler.cc:2: handlers code includes "khosim/kho/kho.h"; it may use the kernel '
    'face (khosim/linux/...) and its own headers only',
    'lib/handlers/handler.cc:4: private header "lib/luo/luo_internal.h" included from outside its '
    'folder',
    'lib/kho/sideways.cc:2: upward include: kho includes "khosim/linux/liveupdate.h" of layer luo',
    'lib/mm/missing.cc:2: "khosim/mm/nope.h" is no public header',
    'lib/mm/upward.cc:2: upward include: mm includes "khosim/luo/luo.h" of layer luo',
    "lib/unlisted/orphan.cc: belongs to no layer of the table",
]


def run(root):
    return subprocess.run([sys.executable, CHECK, "--root", root, "--table", TABLE],
                          capture_output=True, text=True, check=False)


def main():
    failures = []
    tree = run(ROOT)
    if tree.returncode != 0:
        failures.append("the tree breaks the layer table:\n" + tree.stdout)
    fixture = run(os.path.join(HERE, "fixture"))
    got = fixture.stdout.splitlines()
    if fixture.returncode != 1:
        failures.append(f"the fixture check exited {fixture.returncode}, expected 1")
    if got != EXPECTED:
        missing = [line for line in EXPECTED if line not in got]
        extra = [line for line in got if line not in EXPECTED]
        failures.append("the fixture check reported something else:\n  missing: "
                        + "\n           ".join(missing) + "\n  unexpected: "
                        + "\n              ".join(extra))
    for f in failures:
        print("FAIL:", f)
    if not failures:
        print("ok: the tree passes; the fixture's 8 violations are reported exactly")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
