"""Lines of code of the classes and functions of a Python file, docstrings, comments and blank
lines not counted (issue 26's targets: each method class at most 250, no function over 100).

Usage: ``python tools/code_size.py FILE [FILE ...]`` prints ``path:line kind name: lines`` for every
class, and for every function over 60 lines.
"""

import ast
import io
import sys
import tokenize
from pathlib import Path

SKIPPED_TOKENS = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENDMARKER,
}


def code_sizes(path: Path) -> list[tuple[int, str, str, int]]:
    """``(line, "class" | "function", name, lines of code)`` for every class and function."""
    source = path.read_text()
    tree = ast.parse(source)
    docstring_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                docstring_lines.update(range(first.lineno, (first.end_lineno or 0) + 1))
    code_lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in SKIPPED_TOKENS:
            code_lines.update(range(token.start[0], token.end[0] + 1))
    code_lines -= docstring_lines
    sizes = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            end = node.end_lineno or node.lineno
            lines = sum(1 for line in code_lines if node.lineno <= line <= end)
            sizes.append((node.lineno, kind, node.name, lines))
    return sizes


def main() -> None:
    for name in sys.argv[1:]:
        for line, kind, node_name, lines in code_sizes(Path(name)):
            if kind == "class" or lines > 60:
                print(f"{name}:{line} {kind} {node_name}: {lines}")


if __name__ == "__main__":
    main()
