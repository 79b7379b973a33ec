#!/usr/bin/env python3
"""Fails when the modules of a crate import each other in a circle.

Usage: [VERBOSE=1] modgraph.py SRC_DIR...  (e.g. core/src cli/src); VERBOSE prints the graph. A module is a top-level module of
the crate (`lib.rs` declares it); an edge A -> B is a `crate::B` path in A's code, with
`crate::Name` resolved through lib.rs re-exports. Comments and test modules
(`#[cfg(test)] mod`, to the end of the file) are skipped: tests may use the whole crate.
"""
import os
import re
import sys
from pathlib import Path


def code_of(path):
    """The file's code up to its test module, without comments."""
    text = path.read_text()
    test_module = re.search(r"#\[cfg\(test\)\]\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s", text)
    if test_module:
        text = text[: test_module.start()]
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(re.sub(r"//.*", "", line) for line in text.splitlines())


def use_paths(code):
    """Every `crate::a::b` path, with `use crate::{a, b::{c}}` groups expanded to heads."""
    heads = set(re.findall(r"\bcrate::([A-Za-z_][A-Za-z0-9_]*)", code))
    for group in re.findall(r"\bcrate::\{([^;]*)\}", code):
        depth, word = 0, ""
        for ch in group + ",":
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                head = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", word)
                if head:
                    heads.add(head.group(1))
                word = ""
                continue
            word += ch
    return heads


def graph(src):
    lib = (src / "lib.rs").read_text()
    modules = set(re.findall(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_0-9]+)\s*;", lib, re.M))
    # Names re-exported at the root resolve to the module they come from.
    owner = {}
    for module, names in re.findall(r"pub use (?:self::)?([a-z_0-9]+)::\{?([^;]*?)\}?;", lib):
        if module in modules:
            for name in re.findall(r"(?:\bas\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*(?:,|$)", names):
                owner[name] = module
    edges = {m: set() for m in modules}
    for module in modules:
        files = [src / f"{module}.rs", src / module / "mod.rs"]
        files += sorted((src / module).rglob("*.rs")) if (src / module).is_dir() else []
        for path in files:
            if path.exists():
                for head in use_paths(code_of(path)):
                    target = head if head in modules else owner.get(head)
                    if target and target != module:
                        edges[module].add(target)
    return edges


def cycle(edges):
    """One circle of the graph, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def main():
    failed = False
    for src in map(Path, sys.argv[1:]):
        edges = graph(src)
        if os.environ.get("VERBOSE"):
            for m in sorted(edges):
                print(f"{src}: {m} -> {', '.join(sorted(edges[m])) or '-'}")
        found = cycle(edges)
        if found:
            print(f"{src}: import circle: {' -> '.join(found)}", file=sys.stderr)
            failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
