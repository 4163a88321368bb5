"""Bounded parsing: every JSON or YAML document from outside is measured before it is built.

A parser spends time and memory in proportion to what it is given, and Python's own recursion limit is
the only depth limit `json` has (past it: RecursionError, a 500). So each document is checked first by
its size, then by its nesting (and, for YAML, its node count) on a cheap pass that builds nothing; only
then is it parsed. The limits, per kind of input (docs/security.md, "Parsing within bounds"):

- DOCUMENT_MAX_BYTES: one document read whole: an experiment definition (YAML file, the form's confirm
  step, the API), a question or endpoint YAML file, an API request body, an auditor's highlights.
- LINE_MAX_BYTES: one line of a streamed import (datasets and transcripts as JSON Lines, CSV); the file
  as a whole is held to settings.IMPORT_MAX_BYTES.
- MAX_DEPTH: lists and mappings inside one another, in JSON and YAML alike.
- YAML_MAX_NODES, YAML_MAX_EXPANDED: what one YAML document may hold, before and after its aliases.

Every refusal is a `Refused` (a ValueError, like the parsers' own errors) whose message names the limit;
callers add the file name.
"""

from __future__ import annotations

import io
import json
import re

import yaml
from rest_framework import serializers
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding

# The largest real ones are ~20 KB (the EM paper's question files); a definition is a few hundred lines.
DOCUMENT_MAX_BYTES = 256 * 1024
# A line carries one record: a chat example or a transcript with its reasoning (the EM data: 1.4 KB at most).
LINE_MAX_BYTES = 1024 * 1024
# Real documents nest 3 deep (a list of questions, each a mapping, holding a list of paraphrases).
MAX_DEPTH = 64
# Scalars, aliases and collections; the largest EM question file has 677.
YAML_MAX_NODES = 20_000
# Characters of text (and one per node) a YAML document may stand for once its aliases are expanded.
YAML_MAX_EXPANDED = 10_000_000

# libyaml builds nodes in C, ~10x faster and smaller than the pure-Python loader; PyYAML's wheels ship it.
# Without it the limits above still hold, only more slowly.
LOADER = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader

# A JSON string (skipped whole: brackets inside it are text) or one bracket. The closing quote is optional so
# that an unterminated string is one match to the end, not a failed try from each later quote (quadratic).
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]')


class Refused(ValueError):
    """A document refused by one of the limits: `message` says which, `line` (1-based) is where the limit was
    crossed, if known; str() gives both."""

    def __init__(self, message: str, *, line: int | None = None):
        self.message = message
        self.line = line
        super().__init__(message)

    def __str__(self) -> str:
        return self.message if self.line is None else f"{self.message} (line {self.line})"


def in_bytes(limit: int) -> str:
    """A limit as messages state it: "262,144 bytes (256 KiB)"."""
    return f"{limit:,} bytes ({limit // 1024:,} KiB)"


def check_size(size: int, limit: int = DOCUMENT_MAX_BYTES) -> None:
    """Refuse a document of `size` bytes (or characters) over `limit`, before reading or parsing it."""
    if size > limit:
        raise Refused(f"the document is {size:,} bytes; the limit is {in_bytes(limit)}")


def _too_deep(line: int) -> Refused:
    return Refused(f"the document nests lists and mappings deeper than the limit of {MAX_DEPTH}", line=line)


def check_json_depth(text: str) -> None:
    """Refuse JSON nested more than MAX_DEPTH deep, without parsing it. One regular-expression pass that
    skips strings; a document with fewer opening brackets than the limit is not even scanned."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    depth = 0
    for token in _JSON_TOKEN.finditer(text):
        bracket = token.group()
        if bracket in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                raise _too_deep(text.count("\n", 0, token.start()) + 1)
        elif bracket in ("]", "}"):
            depth -= 1


def load_json(text: str, *, limit: int = DOCUMENT_MAX_BYTES) -> object:
    """`json.loads` of at most `limit` characters nested at most MAX_DEPTH deep. Raises ValueError: Refused
    for a limit, json.JSONDecodeError for malformed JSON."""
    check_size(len(text), limit)
    check_json_depth(text)
    return json.loads(text)


def _check_yaml_events(text: str) -> None:
    """Depth and node count on the event stream: it builds nothing, so a refused document costs one pass up
    to the point where it crossed a limit."""
    depth = nodes = 0
    for event in yaml.parse(text, Loader=LOADER):
        if isinstance(event, yaml.NodeEvent):
            nodes += 1
            if nodes > YAML_MAX_NODES:
                raise Refused(f"the document has more values than the limit of {YAML_MAX_NODES:,}",
                              line=event.start_mark.line + 1)
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _too_deep(event.start_mark.line + 1)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return node.value if isinstance(node, yaml.SequenceNode) else []


def _check_expanded(root: yaml.Node) -> None:
    """Refuse a composed YAML document that stands for more than YAML_MAX_EXPANDED characters (one per
    node and item, plus the text of each scalar). An alias repeats its anchor's node wherever it is used, so
    a 50 kB file of nested aliases ("billion laughs") stands for gigabytes once built or stored as JSON.
    Aliases themselves stay allowed (the EM question files share their judge prompts that way). Each distinct
    node is sized once, children first, so the check costs the nodes in the file, not what they stand for;
    an alias inside its own anchor would stand for an endless document."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # the node being sized and its ancestors
    stack = [(root, False)]
    while stack:
        node, children_sized = stack.pop()
        if children_sized:
            open_nodes.discard(id(node))
            size = sizes[id(node)] = 1 + len(node.value) + sum(sizes[id(child)] for child in _children(node))
            if size > YAML_MAX_EXPANDED:
                # No line: the aliases that multiply it are all over the document.
                raise Refused(f"the document stands for more than {YAML_MAX_EXPANDED:,} characters once its "
                              "aliases are expanded (the limit)")
        elif id(node) not in sizes:
            if id(node) in open_nodes:
                raise Refused("an alias is used inside its own anchor: the document would never end",
                              line=node.start_mark.line + 1)
            open_nodes.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))


def load_yaml_nodes(text: str) -> tuple[yaml.Node | None, object]:
    """The one YAML document in `text` as nodes (each keeps its line, for error messages) and as data, with
    `yaml.safe_load` semantics, built only within the limits above. Raises Refused or yaml.YAMLError."""
    check_size(len(text))
    _check_yaml_events(text)
    loader = LOADER(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        _check_expanded(root)
        return root, loader.construct_document(root)
    finally:
        loader.dispose()


def load_yaml(text: str) -> object:
    """The one YAML document in `text` as data (see load_yaml_nodes)."""
    return load_yaml_nodes(text)[1]


class BoundedJSONParser(JSONParser):
    """REST_FRAMEWORK's JSON parser: DRF's own, once the body is checked by size (DOCUMENT_MAX_BYTES; DRF
    hands it the body Django read, held to DATA_UPLOAD_MAX_MEMORY_SIZE) and nesting, so an oversized or deeply
    nested body is a 400 that says which limit, never a 500. Applies to every API view, /api/token/ included."""

    def parse(self, stream, media_type=None, parser_context=None) -> object:
        raw = stream.read()
        try:
            check_size(len(raw))
            check_json_depth(raw.decode(get_encoding(parser_context or {}), errors="replace"))
        except Refused as exc:
            raise ParseError(f"JSON body refused: {exc}.") from None
        return super().parse(io.BytesIO(raw), media_type, parser_context)


class BoundedJSONField(serializers.JSONField):
    """A serializer JSONField whose JSON text (a form-encoded or multipart post sends the value as a string,
    which DRF parses with plain json.loads) is checked like any other document first."""

    def to_internal_value(self, data) -> object:
        if getattr(data, "is_json_string", False):
            try:
                check_size(len(data))
                check_json_depth(data)
            except Refused as exc:
                raise serializers.ValidationError(str(exc)) from None
        return super().to_internal_value(data)
