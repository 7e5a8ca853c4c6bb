"""How schema version 2 stores attributes: a query-friendly ``map<string, string>`` for every
attribute a text value can carry exactly, and a sparse side list for the rest, together
lossless (docs/SCHEMA.md, "Attributes").

This module is the reference of that form: ``otlpd.schema`` builds rows in the v1 form and
converts them with :func:`to_lean` (and back with :func:`from_lean` in ``to_request``); the
Cython decoder (``ext/decoder/common.pxi``, ``app_attr``) follows the same rules and the tests
hold it to them:

``attributes: map<string, string>``
    One entry per KeyValue, in their order, whose value is a string, a bool (``true`` /
    ``false``), an int (decimal) or a double that is not NaN (:func:`double_text`), whose
    ``key_strindex`` is 0, whose key did not occur earlier in the same list, and that is among
    the list's first ``MAP_LIMIT`` (128) KeyValues. So a map
    never holds a key twice (DuckDB refuses the whole query over a map that does), and
    ``attributes['http.route']`` is the attribute, ``attributes['http.response.status_code']
    ::BIGINT`` an int one.
``attributes_types: binary``
    One byte per map entry: the AnyValue type of its value (1 string, 2 bool, 3 int,
    4 double), so ``"200"`` and ``200`` stay apart.
``attributes_other: list<struct<index, key, value: ANYVALUE, key_strindex>>``
    Every other KeyValue, with ``index`` its position in the original list: a duplicate key
    (the first occurrence is in the map), an absent value, an empty AnyValue, bytes, arrays,
    kvlists, ``string_value_strindex``, a NaN (its payload would not survive text), or a
    ``key_strindex``. Empty for nearly every row.

:func:`split` goes from the reference's attribute dicts (``schema._attrs``) to the three
values, :func:`join` back; ``join(*split(a)) == a`` for every attribute list.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import pyarrow as pa

# `type` is the AnyValue oneof field number (0 = none set); only the matching member is set.
ANYVALUE = pa.struct(
    [
        ("type", pa.uint8()),
        ("str", pa.string()),
        ("bool", pa.bool_()),
        ("int", pa.int64()),
        ("double", pa.float64()),
        ("bytes", pa.binary()),
    ]
)

MAP = pa.map_(pa.string(), pa.string())
TYPES = pa.binary()
OTHER = pa.list_(pa.struct([
    ("index", pa.int32()),
    ("key", pa.string()),
    ("value", ANYVALUE),
    ("key_strindex", pa.int32()),
]))

STRING, BOOL, INT, DOUBLE = 1, 2, 3, 4
# AnyValue type -> the ANYVALUE member holding it (type 0, none set, has none)
_MEMBER = {STRING: "str", BOOL: "bool", INT: "int", DOUBLE: "double", 5: "bytes", 6: "bytes", 7: "bytes", 8: "int"}
# Only the first MAP_LIMIT KeyValues of a list may go to the map: finding an earlier equal key
# costs up to MAP_LIMIT comparisons a KeyValue, so a hostile list of a million keys stays
# linear. OpenTelemetry SDKs keep at most 128 attributes by default.
MAP_LIMIT = 128
_EXACT = 2 ** 53  # doubles below this in magnitude hold every integer exactly
_POW10 = [10.0 ** k for k in range(16)]  # exact in binary64 up to 10**22


def double_text(value: float) -> str | None:
    """The text of a double that parses back to the same bits, or None (NaN).

    Short and exact, and cheap to compute natively: the fewest decimals k <= 15 for which
    ``value * 10**k`` is an integer m below 2**53 with ``m / 10**k == value`` (both
    operations correctly rounded in IEEE arithmetic, in C as in Python, so a reader's
    correctly rounded parse of the digits gives ``value`` back); otherwise the shortest of
    ``%.15g``, ``%.16g``, ``%.17g`` that parses back. ``0.25`` is ``"0.25"``, ``1.0`` is
    ``"1"``, ``-0.0`` is ``"-0"``, ``1e300`` is ``"1e+300"``; infinities are ``"inf"`` and
    ``"-inf"`` (both DuckDB's and Polars' casts read them).
    """
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0.0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    for k, scale in enumerate(_POW10):
        scaled = value * scale
        if abs(scaled) >= _EXACT:
            break
        if scaled == math.floor(scaled) and scaled / scale == value:
            return _decimal(int(scaled), k)
    for precision in (15, 16, 17):
        text = "%.*g" % (precision, value)
        if float(text) == value:
            return text
    raise AssertionError("%.17g always round-trips a double")  # pragma: no cover


def _decimal(mantissa: int, decimals: int) -> str:
    """``mantissa / 10**decimals`` written out: (25, 2) -> "0.25", (-15, 1) -> "-1.5"."""
    sign = "-" if mantissa < 0 else ""
    digits = str(abs(mantissa))
    if decimals == 0:
        return sign + digits
    digits = digits.rjust(decimals + 1, "0")
    return f"{sign}{digits[:-decimals]}.{digits[-decimals:]}"


def value_text(value: dict | None) -> tuple[int, str] | None:
    """(type, text) of an AnyValue dict the map can carry exactly; None when it cannot."""
    if value is None:
        return None
    kind = value.get("type")
    member = _MEMBER.get(kind) if kind in (STRING, BOOL, INT, DOUBLE) else None
    if member is None or value.get(member) is None:
        return None  # not a kind text can carry (or a member missing: keep it as it is)
    if kind == STRING:
        return STRING, value["str"]
    if kind == BOOL:
        return BOOL, "true" if value["bool"] else "false"
    if kind == INT:
        return INT, str(value["int"])
    text = double_text(value["double"])
    return None if text is None else (DOUBLE, text)


def text_value(kind: int, text: str) -> dict:
    """The AnyValue dict of a map entry (the inverse of :func:`value_text`)."""
    if kind == STRING:
        return {"type": STRING, "str": text}
    if kind == BOOL:
        return {"type": BOOL, "bool": text == "true"}
    if kind == INT:
        return {"type": INT, "int": int(text)}
    if kind == DOUBLE:
        return {"type": DOUBLE, "double": float(text)}
    raise ValueError(f"attribute type {kind} has no text form")


def split(attrs: list[dict]) -> tuple[list[tuple[str, str]], bytes, list[dict]]:
    """The reference's attribute dicts as (map entries, types, side entries)."""
    entries: list[tuple[str, str]] = []
    types = bytearray()
    other: list[dict] = []
    seen: set[str] = set()
    for index, attr in enumerate(attrs):
        key = attr["key"]
        carried = value_text(attr.get("value")) if index < MAP_LIMIT and not attr.get("key_strindex") else None
        if carried is not None and key not in seen:
            entries.append((key, carried[1]))
            types.append(carried[0])
        else:
            other.append({"index": index, "key": key, "value": attr.get("value"),
                          "key_strindex": attr.get("key_strindex") or 0})
        seen.add(key)
    return entries, bytes(types), other


def join(entries: list[tuple[str, str]] | None, types: bytes | None, other: list[dict] | None) -> list[dict]:
    """Back to the reference's attribute dicts, in their original order."""
    entries, types, other = entries or [], types or b"", other or []
    if len(entries) != len(types):
        raise ValueError(f"{len(entries)} map entries but {len(types)} attribute types")
    total = len(entries) + len(other)
    result: list[Any] = [None] * total
    for side in other:
        index = side["index"]
        if not 0 <= index < total or result[index] is not None:
            raise ValueError(f"attribute index {index} out of place")
        result[index] = {"key": side["key"], "value": _value_dict(side["value"]),
                         "key_strindex": side["key_strindex"]}
    slots = iter(i for i, slot in enumerate(result) if slot is None)
    for (key, text), kind in zip(entries, types):
        result[next(slots)] = {"key": key, "value": text_value(kind, text), "key_strindex": 0}
    return result


def _value_dict(value: dict | None) -> dict | None:
    """An ANYVALUE struct as read back from Arrow (every member present) in the reference's
    form (only the member its type selects)."""
    if value is None:
        return None
    kind = value["type"]
    member = _MEMBER.get(kind)
    return {"type": kind} if member is None else {"type": kind, member: value.get(member)}


def split_column(column: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """A today's-layout attribute column (``schema.ATTRS``) as the three lean columns."""
    maps, types, others = [], [], []
    for attrs in column.to_pylist():
        if attrs is None:
            maps.append(None)
            types.append(None)
            others.append(None)
            continue
        entries, kinds, other = split([{**attr, "value": _value_dict(attr["value"])} for attr in attrs])
        maps.append(entries)
        types.append(kinds)
        others.append(other)
    return pa.array(maps, MAP), pa.array(types, TYPES), pa.array(others, OTHER)


# --------------------------------------------------------------------------- whole rows

def lean_fields(fields, v1_attrs: pa.DataType, anyvalue: pa.DataType) -> list[pa.Field]:
    """The lean layout's fields for today's ``fields``: each attribute list becomes
    ``<name>`` (map), ``<name>_types`` and ``<name>_other`` side by side, at every depth; a
    log's ``body`` becomes a string column and ``body_other`` (any other AnyValue)."""
    out = []
    for field in fields:
        if field.type == v1_attrs:
            out += [pa.field(field.name, MAP), pa.field(field.name + "_types", TYPES),
                    pa.field(field.name + "_other", OTHER)]
        elif field.name == "body" and field.type == anyvalue:
            out += [pa.field("body", pa.string()), pa.field("body_other", anyvalue)]
        else:
            out.append(pa.field(field.name, _lean_type(field.type, v1_attrs, anyvalue)))
    return out


def _lean_type(t: pa.DataType, v1_attrs, anyvalue) -> pa.DataType:
    if pa.types.is_struct(t) and t != anyvalue:
        return pa.struct(lean_fields([t.field(i) for i in range(t.num_fields)], v1_attrs, anyvalue))
    if pa.types.is_list(t):
        return pa.list_(_lean_type(t.value_type, v1_attrs, anyvalue))
    return t


@functools.lru_cache(maxsize=None)
def _lean_names(t: pa.DataType, v1_attrs, anyvalue) -> tuple[str, ...]:
    """The field names of struct type ``t`` in the lean layout (a few struct types in all)."""
    return tuple(f.name for f in lean_fields([t.field(i) for i in range(t.num_fields)], v1_attrs, anyvalue))


def to_lean(fields, values, v1_attrs: pa.DataType, anyvalue: pa.DataType) -> list:
    """One row (or struct) of today's ``fields`` as the values of :func:`lean_fields`, in order.

    Attribute lists are the reference's dicts (only the selected AnyValue member set)."""
    out: list = []
    for field, value in zip(fields, values):
        if field.type == v1_attrs:
            out.extend((None, None, None) if value is None else split(value))
        elif field.name == "body" and field.type == anyvalue:
            string = value is not None and value.get("type") == STRING
            out += [value["str"] if string else None, None if string else value]
        else:
            out.append(_lean_value(field.type, value, v1_attrs, anyvalue))
    return out


def _lean_value(t: pa.DataType, value, v1_attrs, anyvalue):
    if value is None or t == anyvalue:
        return value
    if pa.types.is_struct(t):
        fields = [t.field(i) for i in range(t.num_fields)]
        values = to_lean(fields, [value.get(f.name) for f in fields], v1_attrs, anyvalue)
        return dict(zip(_lean_names(t, v1_attrs, anyvalue), values))
    if pa.types.is_list(t):
        return [_lean_value(t.value_type, item, v1_attrs, anyvalue) for item in value]
    return value


def from_lean(fields, row: dict, v1_attrs: pa.DataType, anyvalue: pa.DataType) -> list:
    """Today's values of ``fields`` from a lean row (or struct) read back as a dict."""
    out: list = []
    for field in fields:
        if field.type == v1_attrs:
            entries = row.get(field.name)
            out.append(None if entries is None and row.get(field.name + "_other") is None
                       else join(entries, row.get(field.name + "_types"), row.get(field.name + "_other")))
        elif field.name == "body" and field.type == anyvalue:
            string, other = row.get("body"), row.get("body_other")
            out.append({"type": STRING, "str": string} if string is not None else _value_dict(other))
        else:
            out.append(_v1_value(field.type, row.get(field.name), v1_attrs, anyvalue))
    return out


def _v1_value(t: pa.DataType, value, v1_attrs, anyvalue):
    if value is None:
        return None
    if t == anyvalue:
        return _value_dict(value)
    if pa.types.is_struct(t):
        fields = [t.field(i) for i in range(t.num_fields)]
        return dict(zip((f.name for f in fields), from_lean(fields, value, v1_attrs, anyvalue)))
    if pa.types.is_list(t):
        return [_v1_value(t.value_type, item, v1_attrs, anyvalue) for item in value]
    return value
