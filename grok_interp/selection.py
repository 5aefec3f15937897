"""A small, safe selection language over configurations (the studies' ``--only``).

An expression picks the configurations (dicts) whose keys satisfy it::

    split == 'strip' and t >= 60
    not (frac < 0.5 or seed in [1, 2])
    50 <= t < 60

The grammar is all there is; nothing in it reaches Python (no ``eval``, no
``DataFrame.query``, no ``@name``, attribute access, indexing or calls):

* names: a configuration's keys (letters, digits, ``_``; not starting with a digit);
* literals: numbers (``3``, ``-0.5``, ``1e-3``), strings in single or double quotes
  (``\\'`` and ``\\\\`` escape), ``True``, ``False``, ``None``, and lists of literals
  after ``in`` / ``not in``;
* comparisons ``== != < <= > >=`` (chained: ``a < b <= c``), ``in``, ``not in``;
* ``and``, ``or``, ``not`` (also ``&``, ``|``, ``~``) and parentheses.

A key a configuration lacks is missing: no comparison on it matches (``!=`` included),
so ``t >= 60`` leaves out the configurations without ``t``. A name no configuration has
is an error, as is comparing the order of a string and a number.

Every error is a :class:`~grok_interp.errors.GrokInterpError` naming the parameter
(``only`` by default) and the place in the expression.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from ._validate import bad_value, did_you_mean

__all__ = ["Selection", "parse_selection", "select"]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<num>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,|&&?|\|\|?|~|!)
    )""",
    re.VERBOSE,
)
_WORDS = {"and": "and", "or": "or", "not": "not", "in": "in", "&": "and", "&&": "and", "|": "or", "||": "or",
          "~": "not", "!": "not"}
_LITERALS = {"True": True, "False": False, "None": None, "true": True, "false": False}
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}
_MISSING = object()
_MAX_LENGTH = 2000
_MAX_DEPTH = 50


@dataclass(frozen=True)
class _Tok:
    kind: str  # num, str, name, op, end
    value: Any
    pos: int


def _tokens(text: str, param: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise bad_value(param, text, f"unexpected {text[pos]!r} at character {pos + 1}; an expression holds "
                            "only key names, numbers, quoted strings, comparisons, and/or/not and parentheses")
        kind = m.lastgroup or ""  # every alternative of _TOKEN is a named group
        raw = m.group(kind)
        start = m.start(kind)
        if kind == "num":
            prev = out[-1] if out else None
            # "t-1" is t minus 1 in Python; here a sign belongs to a number only where a value may start
            if raw[0] in "+-" and prev is not None and (prev.kind in ("num", "str", "name", "lit")
                                                        or (prev.kind == "op" and prev.value in (")", "]"))):
                raise bad_value(param, text, f"unexpected {raw[0]!r} at character {start + 1}: no arithmetic")
            value: Any = float(raw) if any(c in raw for c in ".eE") else int(raw)
        elif kind == "str":
            value = re.sub(r"\\(.)", r"\1", raw[1:-1])
        elif kind == "op":
            value = _WORDS.get(raw, raw)
            kind = "word" if raw in _WORDS else "op"
        else:
            value = raw
            if raw in _WORDS:
                kind = "word"
            elif raw in _LITERALS:
                kind, value = "lit", _LITERALS[raw]
        out.append(_Tok(kind, value, start))
        pos = m.end()
    out.append(_Tok("end", None, len(text)))
    return out


class _Parser:
    """Recursive descent over the tokens; builds a tree of tuples (nothing evaluated)."""

    def __init__(self, text: str, param: str) -> None:
        self.text, self.param = text, param
        self.toks = _tokens(text, param)
        self.i = 0
        self.depth = 0
        self.names: set[str] = set()

    def error(self, what: str) -> Exception:
        tok = self.toks[self.i]
        where = "at the end" if tok.kind == "end" else f"at character {tok.pos + 1}"
        return bad_value(self.param, self.text, f"{what} {where}")

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def is_word(self, word: str, ahead: int = 0) -> bool:
        tok = self.toks[min(self.i + ahead, len(self.toks) - 1)]
        return tok.kind == "word" and tok.value == word

    def parse(self) -> tuple:
        tree = self.or_()
        if self.peek().kind != "end":
            raise self.error("expected and/or or the end")
        return tree

    def or_(self) -> tuple:
        parts = [self.and_()]
        while self.is_word("or"):
            self.take()
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else ("or", parts)

    def and_(self) -> tuple:
        parts = [self.not_()]
        while self.is_word("and"):
            self.take()
            parts.append(self.not_())
        return parts[0] if len(parts) == 1 else ("and", parts)

    def not_(self) -> tuple:
        if self.is_word("not"):
            self.take()
            self.depth += 1
            if self.depth > _MAX_DEPTH:
                raise self.error("nested too deep")
            inner = self.not_()
            self.depth -= 1
            return ("not", inner)
        return self.comparison()

    def comparison(self) -> tuple:
        tok = self.peek()
        if tok.kind == "op" and tok.value == "(":
            group = self.group()
            if not (self.peek().kind == "op" and self.peek().value in _COMPARE) and not self.is_word("in") \
                    and not (self.is_word("not") and self.is_word("in", 1)):
                return group
            raise self.error("a comparison needs a key or a literal on each side, not a parenthesised condition")
        left = self.operand()
        chain = []
        while True:
            tok = self.peek()
            if tok.kind == "op" and tok.value in _COMPARE:
                self.take()
                chain.append((tok.value, self.operand()))
            elif self.is_word("in") or (self.is_word("not") and self.is_word("in", 1)):
                negate = self.take().value == "not"
                if negate:
                    self.take()
                chain.append(("not in" if negate else "in", self.literal_list()))
                break
            else:
                break
        if not chain:
            if left[0] == "lit" and isinstance(left[1], bool):
                return left  # True / False on their own
            raise self.error(f"expected a comparison after {self.describe(left)}")
        return ("cmp", left, chain)

    def group(self) -> tuple:
        self.take()  # (
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise self.error("nested too deep")
        inner = self.or_()
        self.depth -= 1
        tok = self.take()
        if not (tok.kind == "op" and tok.value == ")"):
            self.i -= 1
            raise self.error("expected ')'")
        return inner

    def operand(self) -> tuple:
        tok = self.peek()
        if tok.kind == "name":
            self.take()
            nxt = self.peek()
            if nxt.kind == "op" and nxt.value in ("(", "["):
                raise self.error(f"{tok.value!r} is a key, not a function or a list: no calls or indexing")
            self.names.add(tok.value)
            return ("key", tok.value)
        if tok.kind in ("num", "str", "lit"):
            self.take()
            return ("lit", tok.value)
        raise self.error("expected a key name, a number or a quoted string")

    def literal_list(self) -> tuple:
        tok = self.take()
        if not (tok.kind == "op" and tok.value in ("[", "(")):
            self.i -= 1
            raise self.error("expected a list of literals, e.g. [1, 2] or ['a', 'b'],")
        close = "]" if tok.value == "[" else ")"
        values = []
        while not (self.peek().kind == "op" and self.peek().value == close):
            item = self.peek()
            if item.kind not in ("num", "str", "lit"):
                raise self.error("a list holds only numbers, quoted strings, True, False and None;")
            values.append(self.take().value)
            if self.peek().kind == "op" and self.peek().value == ",":
                self.take()
            elif not (self.peek().kind == "op" and self.peek().value == close):
                raise self.error(f"expected ',' or {close!r}")
        self.take()
        return ("list", tuple(values))

    @staticmethod
    def describe(node: tuple) -> str:
        return f"key {node[1]!r}" if node[0] == "key" else repr(node[1])


def _same_kind(a: Any, b: Any) -> bool:
    num = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, (bool, *num)) and isinstance(b, (bool, *num))
    return (isinstance(a, num) and isinstance(b, num)) or type(a) is type(b)


class Selection:
    """A parsed selection expression: call it on a configuration (a dict) for True/False."""

    def __init__(self, text: str, param: str = "only") -> None:
        if not isinstance(text, str) or not text.strip():
            raise bad_value(param, text, "must be a non-empty expression, e.g. \"split == 'strip' and t >= 60\"")
        if len(text) > _MAX_LENGTH:
            raise bad_value(param, text[:40] + "...", f"is longer than {_MAX_LENGTH} characters")
        self.text, self.param = text, param
        parser = _Parser(text, param)
        self._tree = parser.parse()
        self.names = frozenset(parser.names)

    def __repr__(self) -> str:
        return f"Selection({self.text!r})"

    def check_keys(self, keys: Iterable[str]) -> None:
        """Refuse a name that is none of ``keys`` (a typo would otherwise match nothing)."""
        keys = list(dict.fromkeys(keys))  # in the order given
        unknown = sorted(self.names - set(keys))
        if unknown:
            raise bad_value(self.param, self.text, f"{unknown[0]!r} is not a key of any configuration "
                            f"(keys: {', '.join(keys)}){did_you_mean(unknown[0], keys)}")

    def __call__(self, config: dict[str, Any]) -> bool:
        return bool(self._eval(self._tree, config))

    def _value(self, node: tuple, config: dict[str, Any]) -> Any:
        if node[0] == "key":
            return config.get(node[1], _MISSING)
        return node[1]

    def _eval(self, node: tuple, config: dict[str, Any]) -> bool:
        kind = node[0]
        if kind == "or":
            return any(self._eval(n, config) for n in node[1])
        if kind == "and":
            return all(self._eval(n, config) for n in node[1])
        if kind == "not":
            return not self._eval(node[1], config)
        if kind == "lit":
            return bool(node[1])
        left = self._value(node[1], config)
        for op, right_node in node[2]:
            if op in ("in", "not in"):
                if left is _MISSING:
                    return False
                found = any(_same_kind(left, v) and left == v for v in right_node[1])
                if found != (op == "in"):
                    return False
                continue
            right = self._value(right_node, config)
            if left is _MISSING or right is _MISSING:
                return False
            if not _same_kind(left, right):
                if op == "==":
                    return False
                if op == "!=":
                    left = right
                    continue
                raise bad_value(self.param, self.text, f"cannot order {left!r} and {right!r} ({op}): "
                                "compare numbers with numbers and strings with strings")
            try:
                ok = _COMPARE[op](left, right)
            except TypeError:
                raise bad_value(self.param, self.text, f"cannot compare {left!r} {op} {right!r}") from None
            if not ok:
                return False
            left = right
        return True


def parse_selection(text: str, param: str = "only") -> Selection:
    """Parse ``text`` (see the module's grammar) into a :class:`Selection`."""
    return Selection(text, param)


def select(configs: Sequence[dict[str, Any]], text: str | None, param: str = "only") -> list[dict[str, Any]]:
    """The configurations matching ``text`` (all of them when ``text`` is None or empty).

    Raises:
        GrokInterpError: a bad expression, or a name that is no configuration's key.
    """
    configs = list(configs)
    if text is None or (isinstance(text, str) and not text.strip()):
        return configs
    sel = Selection(text, param)
    if not configs:
        return configs
    sel.check_keys(k for c in configs for k in c)
    return [c for c in configs if sel(c)]
