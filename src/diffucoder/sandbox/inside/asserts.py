"""Rewrite the tests' ``assert`` statements so the trusted side sees what was compared.

    code = TestCode()                         # compiled tests, cached by source text
    for statement in code.statements(source): exec(statement, scope)
    exec(code.snippet("check(add)", first_line=40), scope)

``assert a == b, m`` becomes ``__sbx_eq__(line, a, b, lambda: m)`` and any other
``assert t, m`` becomes ``__sbx_true__(line, t, lambda: m)`` (``m`` is evaluated only on
failure, as Python does). Line numbers are kept, so messages point at the test source.
"""
import ast
from collections import OrderedDict

EQ, TRUE = "__sbx_eq__", "__sbx_true__"
# Compiled tests kept per runner: an evaluation cycles through every problem of a benchmark
# (164 for HumanEval, two entries each), so the cache must hold a whole benchmark's tests or
# it misses on every job; the source-size budget bounds its memory whatever the tests are.
CACHE_ENTRIES = 4096
CACHE_CHARS = 4 << 20
# clauses whose ``body`` holds statements (``match`` exists from Python 3.10)
_CLAUSES = tuple(c for c in (ast.excepthandler, getattr(ast, "match_case", None)) if c is not None)


def _located(node: ast.AST, where: ast.AST) -> ast.AST:
    return ast.copy_location(node, where)


def rewrite_assert(node: ast.Assert) -> ast.Expr:
    """The call that replaces ``node``; every new node takes the assert's location."""
    if node.msg is None:
        note = _located(ast.Constant(None), node)
    else:
        note = _located(ast.Lambda(args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[],
                                                      kw_defaults=[], defaults=[]),
                                   body=node.msg), node)
    line = _located(ast.Constant(node.lineno), node)
    test = node.test
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
        name, args = EQ, [line, test.left, test.comparators[0], note]
    else:
        name, args = TRUE, [line, test, note]
    call = _located(ast.Call(_located(ast.Name(name, ast.Load()), node), args, []), node)
    return _located(ast.Expr(call), node)


def rewrite_statements(body: list) -> None:
    """Rewrite every assert in a list of statements, in place. Only statements can hold an
    assert (expressions cannot), so only statement lists are walked, not every expression
    node: a test module is mostly expressions (data tables, calls)."""
    for index, node in enumerate(body):
        if isinstance(node, ast.Assert):
            body[index] = rewrite_assert(node)
            continue
        for _field, value in ast.iter_fields(node):
            if type(value) is not list or not value:
                continue
            if isinstance(value[0], ast.stmt):    # body, orelse, finalbody
                rewrite_statements(value)
            elif isinstance(value[0], _CLAUSES):
                for clause in value:
                    rewrite_statements(clause.body)


def parse_tests(source: str, first_line: int = 1) -> ast.Module:
    tree = ast.parse(source, "<tests>")
    rewrite_statements(tree.body)
    if first_line != 1:
        ast.increment_lineno(tree, first_line - 1)
    return tree


class TestCode:
    """Compiled, rewritten tests, kept across jobs (RL and evaluations repeat tests); the least
    recently used go first once ``entries`` or ``chars`` of source are held."""

    def __init__(self, entries: int = CACHE_ENTRIES, chars: int = CACHE_CHARS):
        self.entries, self.chars = entries, chars
        self._cache: OrderedDict = OrderedDict()
        self._held = 0

    def _get(self, key, size: int, build):
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key][0]
        value = build()
        self._cache[key] = (value, size)
        self._held += size
        while len(self._cache) > 1 and (len(self._cache) > self.entries or self._held > self.chars):
            _key, (_value, dropped) = self._cache.popitem(last=False)
            self._held -= dropped
        return value

    def statements(self, source: str) -> list:
        """One code object per top-level statement of ``source``."""
        def build():
            tree = parse_tests(source)
            return [compile(ast.Module(body=[node], type_ignores=[]), "<tests>", "exec")
                    for node in tree.body]
        return self._get(("module", source), len(source), build)

    def snippet(self, text: str, first_line: int):
        return self._get(("snippet", text, first_line), len(text),
                         lambda: compile(parse_tests(text, first_line), "<tests>", "exec"))
