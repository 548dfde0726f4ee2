#!/usr/bin/env python3
"""Checks every #include under lib/, sim/ and include/ against the layer table.

The table (cmake/layers.json) says which layer each file belongs to and which
layers each may include; the build gives each layer's target only the include
directories of the layers below it, so an upward include of a public header
already fails to compile. This check covers what the compiler cannot see:

  - every file belongs to exactly one layer;
  - an include of a public header ("khosim/...") names an existing header of
    the same layer or of a layer below;
  - a private header (one outside include/) is included only from its own
    folder;
  - the kernel face (include/khosim/linux/, include/khosim/uapi/) includes
    only the kernel face, and nothing of Abseil or Boost;
  - the wire formats (include/khosim/abi/) include only wire formats and the
    kernel face;
  - sources of a kernel_face_only layer (the handlers) include only the
    kernel face, their own layer's public headers and their own private
    headers.

Usage: check_layers.py [--root DIR] [--table FILE]
Prints one line per violation ("file:line: ...") and exits 1 if there is any.
"""

import argparse
import json
import os
import re
import sys

INCLUDE_RE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')
SOURCE_SUFFIXES = (".h", ".cc", ".cpp")
SCANNED_ROOTS = ("lib/", "sim/", "include/")
KERNEL_FACE = ("include/khosim/linux/", "include/khosim/uapi/")
WIRE_FORMATS = "include/khosim/abi/"
THIRD_PARTY_IN_FACE = ("absl/", "boost/", "gtest/", "gmock/", "benchmark/")


class Table:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        self.layers = {}
        self.order = []
        self.paths = []  # (path, layer), longest first
        for layer in data["layers"]:
            name = layer["name"]
            self.order.append(name)
            self.layers[name] = layer
            for p in layer["paths"]:
                self.paths.append((p, name))
        self.paths.sort(key=lambda entry: len(entry[0]), reverse=True)
        self.allowed = {}
        for name in self.order:
            allowed = {name}
            for dep in self.layers[name]["deps"]:
                if dep not in self.allowed:
                    raise SystemExit(f"{path}: layer {name} depends on {dep}, which is not below it")
                allowed |= self.allowed[dep]
            self.allowed[name] = allowed

    def layer_of(self, rel):
        for p, name in self.paths:
            if rel == p or (p.endswith("/") and rel.startswith(p)):
                return name
        return None

    def kernel_face_only(self, layer):
        return bool(self.layers[layer].get("kernel_face_only", False))


def is_kernel_face(rel):
    return rel.startswith(KERNEL_FACE)


def scan(root, table):
    problems = []
    files = []
    for top in SCANNED_ROOTS:
        base = os.path.join(root, top)
        if not os.path.isdir(base):
            continue
        for dirpath, _, names in os.walk(base):
            for n in sorted(names):
                if n.endswith(SOURCE_SUFFIXES):
                    full = os.path.join(dirpath, n)
                    files.append(os.path.relpath(full, root).replace(os.sep, "/"))
    files.sort()

    for rel in files:
        layer = table.layer_of(rel)
        if layer is None:
            problems.append(f"{rel}: belongs to no layer of the table")
            continue
        face = is_kernel_face(rel)
        wire = rel.startswith(WIRE_FORMATS)
        public = rel.startswith("include/")
        face_only_source = table.kernel_face_only(layer) and not public
        folder = os.path.dirname(rel)
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
        for lineno, line in enumerate(lines, 1):
            m = INCLUDE_RE.match(line)
            if not m:
                continue
            quote, target = m.group(1), m.group(2)
            where = f"{rel}:{lineno}"
            if target.startswith("khosim/"):
                header = "include/" + target
                if not os.path.isfile(os.path.join(root, header)):
                    problems.append(f"{where}: \"{target}\" is no public header")
                    continue
                target_layer = table.layer_of(header)
                if target_layer is None:
                    problems.append(f"{where}: \"{target}\" belongs to no layer of the table")
                    continue
                if target_layer not in table.allowed[layer]:
                    problems.append(
                        f"{where}: upward include: {layer} includes \"{target}\" of layer "
                        f"{target_layer}")
                    continue
                if face and not is_kernel_face(header):
                    problems.append(
                        f"{where}: the kernel face includes \"{target}\", which is not kernel face")
                elif wire and not (header.startswith(WIRE_FORMATS) or is_kernel_face(header)):
                    problems.append(
                        f"{where}: a wire format includes \"{target}\", which is neither a wire "
                        "format nor kernel face")
                elif face_only_source and not (is_kernel_face(header)
                                               or header.startswith(f"include/khosim/{layer}/")):
                    problems.append(
                        f"{where}: {layer} code includes \"{target}\"; it may use the kernel face "
                        "(khosim/linux/...) and its own headers only")
                continue
            if quote == '"' and os.path.isfile(os.path.join(root, folder, target)):
                if "/" in target or target.startswith("."):
                    problems.append(
                        f"{where}: \"{target}\" reaches outside this folder; private headers "
                        "stay next to their .cc")
                continue
            if quote == '"':
                # A quoted path that is a private header elsewhere in the tree.
                for top in ("lib/", "sim/"):
                    if os.path.isfile(os.path.join(root, top, target)):
                        owner = os.path.dirname(top + target)
                        if owner == folder:
                            problems.append(
                                f"{where}: include this folder's private header by its name, "
                                f"\"{os.path.basename(target)}\"")
                        else:
                            problems.append(
                                f"{where}: private header \"{top}{target}\" included from outside "
                                "its folder")
                        break
                else:
                    if (face or face_only_source) and target.startswith(THIRD_PARTY_IN_FACE):
                        problems.append(
                            f"{where}: the kernel face includes \"{target}\"; it uses the C and "
                            "C++ standard headers only")
                continue
            if (face or face_only_source) and target.startswith(THIRD_PARTY_IN_FACE):
                problems.append(
                    f"{where}: the kernel face includes <{target}>; it uses the C and C++ "
                    "standard headers only")
    return files, problems


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.path.dirname(here))
    parser.add_argument("--table", default=None)
    args = parser.parse_args()
    table_path = args.table or os.path.join(args.root, "cmake", "layers.json")
    table = Table(table_path)
    files, problems = scan(args.root, table)
    for p in problems:
        print(p)
    if problems:
        print(f"check_layers: {len(problems)} violation(s) in {len(files)} files", file=sys.stderr)
        return 1
    print(f"check_layers: {len(files)} files, every include points down the layer table")
    return 0


if __name__ == "__main__":
    sys.exit(main())
