#!/usr/bin/env python3
"""Checks that includes run one way between flowmatch's layers.

Layers, lowest first (docs/architecture.md):

    base -> messages -> core    -> actors -> system
                     -> storage ->
                     -> streams ->

A file may include its own layer and the layers below it, never one above.
libpq's header is included only in storage (the libpq wall), hiredis's
only in streams (the hiredis wall). Run by the
build before anything compiles (CMake target flowmatch_layers): a violation
fails the build with file, line and rule.

    check_layers.py ROOT          check the tree at ROOT
    check_layers.py --self-test   prove the check fails on a planted error
"""

import pathlib
import re
import sys
import tempfile

ALLOWED = {
    "base": {"base"},
    "messages": {"base", "messages"},
    "core": {"base", "messages", "core"},
    "storage": {"base", "messages", "storage"},
    "streams": {"base", "messages", "streams"},
    "actors": {"base", "messages", "core", "storage", "streams", "actors"},
    "system": {"base", "messages", "core", "storage", "streams", "actors",
               "system"},
}
# Third-party headers that belong to one layer only.
WALLS = {
    "libpq-fe.h": "storage",
    "hiredis/hiredis.h": "streams",
}
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def violations(root):
    root = pathlib.Path(root)
    found = []
    for layer, allowed in ALLOWED.items():
        for path in sorted((root / layer).glob("*.[ch]pp")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                target = m.group(2)
                where = f"{path.relative_to(root)}:{number}"
                head = target.split("/", 1)[0]
                if m.group(1) == '"' and "/" in target and head in ALLOWED:
                    if head not in allowed:
                        found.append(f"{where}: {layer} must not include "
                                     f"{target} ({head} is above {layer})")
                wall = WALLS.get(target)
                if wall and wall != layer:
                    found.append(f"{where}: only {wall} may include "
                                 f"<{target}>")
    return found


def self_test():
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        for layer in ALLOWED:
            (root / layer).mkdir()
        (root / "core" / "ok.hpp").write_text('#include "messages/x.hpp"\n')
        assert violations(root) == [], "a downward include was refused"
        (root / "messages" / "bad.cpp").write_text(
            '#include "messages/x.hpp"\n#include "actors/actors.hpp"\n')
        (root / "actors" / "bad.cpp").write_text("#include <libpq-fe.h>\n")
        found = violations(root)
        assert any("messages/bad.cpp:2" in v for v in found), found
        assert any("actors/bad.cpp:1" in v for v in found), found
        assert len(found) == 2, found
    print("check_layers self-test: ok")


def main():
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        return 0
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    found = violations(sys.argv[1])
    for v in found:
        print(f"layer violation: {v}", file=sys.stderr)
    if found:
        print("see docs/architecture.md for the layers", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
