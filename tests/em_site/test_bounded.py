"""The bounded parsers on their own (the attacks over HTTP are in tests/security/test_parse_bounds.py)."""

import json
import time

import pytest

from em_site import bounded


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def test_json_at_the_depth_limit_loads_and_one_deeper_is_refused_with_its_line():
    assert bounded.load_json(nested(64)) == json.loads(nested(64))
    with pytest.raises(bounded.Refused, match=r"deeper than the limit of 64") as refused:
        bounded.load_json('{"a":\n' + nested(64) + "}")
    assert refused.value.line == 2


def test_brackets_inside_strings_are_text():
    text = json.dumps({"code": "[" * 500 + '\\"{' * 100, "list": [[["x"]]]})
    assert bounded.load_json(text)["list"] == [[["x"]]]


def test_a_string_that_never_ends_is_scanned_once():
    # Each escaped quote could start a string: tried from every one of them, the scan was quadratic.
    text = '["' + '\\"[]' * 50_000
    started = time.thread_time()  # CPU time of this thread: what a quadratic scan multiplies, not a busy machine
    with pytest.raises(json.JSONDecodeError):
        bounded.load_json(text, limit=len(text))
    assert time.thread_time() - started < 0.5


def test_yaml_keeps_safe_load_semantics_and_its_aliases():
    text = "a: &shared {x: [1, 2.5, off, null]}\nb: *shared\n"
    assert bounded.load_yaml(text) == {"a": {"x": [1, 2.5, False, None]}, "b": {"x": [1, 2.5, False, None]}}
    with pytest.raises(Exception, match="could not determine a constructor"):
        bounded.load_yaml("!!python/object/apply:os.system [echo]")


def test_a_yaml_alias_inside_its_own_anchor_is_refused():
    with pytest.raises(bounded.Refused, match="inside its own anchor"):
        bounded.load_yaml("a: &a [1, *a]")
