"""Open Inference Protocol tensors: decode request inputs, encode a prediction as an output.

Plain data, no HTTP. A tensor is a name, a datatype, a shape and its elements flat in
row-major order. Elements come as JSON (`data`, flat or nested) or, with the binary tensor data
extension, as little-endian bytes after the JSON header (`parameters.binary_data_size`); BYTES
elements are then each a 4-byte little-endian length and the bytes (read here as UTF-8 text,
which is what a JSON client would have sent).
"""

from __future__ import annotations

import math
import struct
from typing import Any, NamedTuple

from ._errors import BadRequest

# datatype -> struct code of one little-endian element; BYTES is length-prefixed instead.
_PACKED = {
    "BOOL": "?", "UINT8": "B", "UINT16": "H", "UINT32": "I", "UINT64": "Q",
    "INT8": "b", "INT16": "h", "INT32": "i", "INT64": "q",
    "FP16": "e", "FP32": "f", "FP64": "d",
}  # fmt: skip
_INTEGERS = frozenset({int})
_NUMBERS = frozenset({int, float})
# What JSON `data` may hold for each datatype (bool is not an int here: type(), not isinstance).
_JSON_KINDS: dict[str, frozenset[type]] = {
    "BOOL": frozenset({bool}),
    **dict.fromkeys(("UINT8", "UINT16", "UINT32", "UINT64"), _INTEGERS),
    **dict.fromkeys(("INT8", "INT16", "INT32", "INT64"), _INTEGERS),
    **dict.fromkeys(("FP16", "FP32", "FP64"), _NUMBERS),
    "BYTES": frozenset({str}),
}
DATATYPES = tuple(_JSON_KINDS)
_INPUT_FIELDS = frozenset({"name", "shape", "datatype", "parameters", "data"})


class Tensor(NamedTuple):  # a NamedTuple: built on every request, three times faster
    """A tensor with its elements flat, row-major."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    flat: list[Any]

    def nested(self) -> Any:
        """The elements as nested lists of the tensor's shape (the element itself for [])."""
        if not self.shape:
            return self.flat[0]
        rows: list[Any] = self.flat
        for size in reversed(self.shape[1:]):
            rows = [rows[i : i + size] for i in range(0, len(rows), size)]
        return rows

    def packed(self) -> bytes:
        """The elements as the binary tensor data extension sends them."""
        if self.datatype == "BYTES":
            chunks: list[bytes] = []
            for text in self.flat:
                data = text.encode()
                chunks += (struct.pack("<I", len(data)), data)
            return b"".join(chunks)
        return struct.pack(f"<{len(self.flat)}{_PACKED[self.datatype]}", *self.flat)


def decode_inputs(inputs: Any, binary: memoryview) -> list[Tensor]:
    """The request's input tensors, their binary data taken from `binary` in order."""
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("'inputs' must be a non-empty list of tensors")
    tensors, offset, names = [], 0, set()
    for i, spec in enumerate(inputs):
        tensor, offset = _decode_input(i, spec, binary, offset)
        if tensor.name in names:
            raise BadRequest(f"input {tensor.name!r} is given twice")
        names.add(tensor.name)
        tensors.append(tensor)
    if offset != len(binary):
        raise BadRequest(
            f"the body has {len(binary)} bytes of binary data but the inputs' "
            f"binary_data_size add up to {offset}"
        )
    return tensors


def _decode_input(i: int, spec: Any, binary: memoryview, offset: int) -> tuple[Tensor, int]:
    # On the request path: messages are built only when something is wrong.
    if type(spec) is not dict:
        raise BadRequest(f"inputs[{i}] must be an object")
    if not spec.keys() <= _INPUT_FIELDS:
        unknown = ", ".join(sorted(spec.keys() - _INPUT_FIELDS))
        raise BadRequest(f"inputs[{i}] has unknown field(s): {unknown}")
    name, datatype, shape = spec.get("name"), spec.get("datatype"), spec.get("shape")
    if type(name) is not str or not name:
        raise BadRequest(f"inputs[{i}].name is required and must be a string")
    if datatype not in _JSON_KINDS:
        raise BadRequest(
            f"input {name!r}: datatype {datatype!r} is not one of {', '.join(DATATYPES)}"
        )
    if type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape):
        raise BadRequest(f"input {name!r}: shape must be a list of non-negative integers")
    count = math.prod(shape)
    if count == 0:
        raise BadRequest(f"input {name!r} has no elements (shape {shape})")
    parameters = spec.get("parameters")
    size = None
    if parameters:
        if type(parameters) is not dict:
            raise BadRequest(f"input {name!r}: parameters must be an object")
        if "shared_memory_region" in parameters:
            raise BadRequest(f"input {name!r}: the shared memory extension is not supported")
        size = parameters.get("binary_data_size")
    if size is None:
        if "data" not in spec:
            raise BadRequest(f"input {name!r} has neither data nor parameters.binary_data_size")
        flat = _from_json(name, datatype, spec["data"])
    else:
        if type(size) is not int or size < 0 or offset + size > len(binary):
            raise BadRequest(
                f"input {name!r}: binary_data_size {size!r} does not fit the "
                f"{len(binary) - offset} bytes of binary data left in the body"
            )
        flat = _from_binary(name, datatype, count, binary[offset : offset + size])
        offset += size
    if len(flat) != count:
        raise BadRequest(
            f"input {name!r} has {len(flat)} elements; its shape {shape} needs {count}"
        )
    return Tensor(name, datatype, tuple(shape), flat), offset


def _from_json(name: str, datatype: str, data: Any) -> list[Any]:
    if not isinstance(data, list):
        data = [data]
    elif data and isinstance(data[0], list):  # nested rows: row-major, as if flat
        data = _flatten(data)
    kinds = set(map(type, data))
    if not kinds <= _JSON_KINDS[datatype]:
        wrong = sorted(k.__name__ for k in kinds - _JSON_KINDS[datatype])
        raise BadRequest(f"input {name!r}: {datatype} data holds {', '.join(wrong)} values")
    flat: list[Any] = data
    return flat


def _flatten(data: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for item in data:
        if isinstance(item, list):
            flat.extend(_flatten(item))
        else:
            flat.append(item)
    return flat


def _from_binary(name: str, datatype: str, count: int, raw: memoryview) -> list[Any]:
    where = f"input {name!r}"
    if datatype == "BYTES":
        return _bytes_elements(where, count, raw)
    code = _PACKED[datatype]
    expected = count * struct.calcsize(code)
    if len(raw) != expected:
        raise BadRequest(
            f"{where}: {len(raw)} bytes of binary data; {count} {datatype} elements take {expected}"
        )
    return list(struct.unpack(f"<{count}{code}", raw))


def _bytes_elements(where: str, count: int, raw: memoryview) -> list[Any]:
    elements: list[str] = []
    at = 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise BadRequest(f"{where}: BYTES element {len(elements)} is cut short")
        (size,) = struct.unpack_from("<I", raw, at)
        start, at = at + 4, at + 4 + size
        if at > len(raw):
            raise BadRequest(f"{where}: BYTES element {len(elements)} is cut short")
        try:
            elements.append(str(raw[start:at], "utf-8"))
        except UnicodeDecodeError:
            raise BadRequest(f"{where}: BYTES element {len(elements)} is not UTF-8") from None
    if len(elements) != count:
        raise BadRequest(f"{where} has {len(elements)} BYTES elements; its shape needs {count}")
    return elements


def output_tensor(name: str, value: Any) -> Tensor:
    """`value` (nested lists of one kind, or a numpy array) as a tensor; ValueError if not one.

    The datatype follows the values: BOOL, INT64, FP64 (numbers mixed with integers) or BYTES.
    """
    if hasattr(value, "tolist"):  # numpy arrays and scalars, without importing numpy
        value = value.tolist()
    shape, flat = _shape_and_flat(value)
    kinds = set(map(type, flat))
    if not kinds or (kinds <= _NUMBERS and float in kinds):
        datatype = "FP64"
    elif kinds == {int}:
        datatype = "INT64"
        if any(not -(2**63) <= v < 2**63 for v in flat):
            raise ValueError("an integer does not fit INT64")
    elif kinds == {bool}:
        datatype = "BOOL"
    elif kinds == {str}:
        datatype = "BYTES"
    else:
        names = ", ".join(sorted(k.__name__ for k in kinds))
        raise ValueError(f"its values are not of one tensor datatype ({names})")
    return Tensor(name, datatype, shape, flat)


def _shape_and_flat(value: Any) -> tuple[tuple[int, ...], list[Any]]:
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list):
        return (), [value]
    shape = []
    probe: Any = value
    while isinstance(probe, (list, tuple)):
        shape.append(len(probe))
        if not probe:
            break
        probe = probe[0]
    flat: list[Any] = value
    for size in shape[1:]:
        level: list[Any] = []
        for item in flat:
            if not isinstance(item, (list, tuple)) or len(item) != size:
                raise ValueError(f"it is not rectangular (shape {shape} expected)")
            level.extend(item)
        flat = level
    return tuple(shape), flat
