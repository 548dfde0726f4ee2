#!/usr/bin/env python3
"""Runs a khosim command and checks what it did.

  cli_check.py [--exit N] [--stdout RE]... [--stderr RE]... [--schema FILE]
               [--expect-from FILE] -- COMMAND...

--exit        the exact exit status (default 0)
--stdout/err  regular expressions that must match somewhere in the stream
--schema      stdout is a JSON document valid against this JSON schema
--json-file   after the run, FILE holds a JSON array (e.g. --trace output)
--expect-from a scenario file whose first line is "# expect: <text>": the
              text must appear in stderr (a bad file's exact message)
"""
import argparse
import json
import re
import subprocess
import sys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--exit", type=int, default=0)
    parser.add_argument("--stdout", action="append", default=[])
    parser.add_argument("--stderr", action="append", default=[])
    parser.add_argument("--schema")
    parser.add_argument("--expect-from")
    parser.add_argument("--json-file")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    failures = []
    if run.returncode != args.exit:
        failures.append(f"exit status {run.returncode}, expected {args.exit}")
    for pattern in args.stdout:
        if not re.search(pattern, run.stdout, re.MULTILINE):
            failures.append(f"stdout does not match {pattern!r}")
    for pattern in args.stderr:
        if not re.search(pattern, run.stderr, re.MULTILINE):
            failures.append(f"stderr does not match {pattern!r}")
    if args.expect_from:
        with open(args.expect_from, encoding="utf-8") as f:
            first = f.readline()
        if not first.startswith("# expect: "):
            failures.append(f"{args.expect_from}: first line is not '# expect: ...'")
        else:
            expected = first[len("# expect: "):].rstrip("\n")
            if expected not in run.stderr:
                failures.append(f"stderr does not contain {expected!r}")
        if run.stdout:
            failures.append("a bad scenario must print nothing on stdout (nothing half-run)")
    if args.schema:
        import jsonschema  # python3-jsonschema
        with open(args.schema, encoding="utf-8") as f:
            schema = json.load(f)
        try:
            jsonschema.validate(json.loads(run.stdout), schema)
        except (ValueError, jsonschema.ValidationError) as e:
            failures.append(f"stdout is not a valid report: {e}")
    if args.json_file:
        try:
            with open(args.json_file, encoding="utf-8") as f:
                if not isinstance(json.load(f), list):
                    failures.append(f"{args.json_file} is not a JSON array")
        except (OSError, ValueError) as e:
            failures.append(f"{args.json_file}: {e}")
    if failures:
        print("command:", " ".join(command))
        print("--- stdout\n" + run.stdout[-4000:])
        print("--- stderr\n" + run.stderr[-4000:])
        for failure in failures:
            print("FAILED:", failure)
        return 1
    print("ok:", " ".join(command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
