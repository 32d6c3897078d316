"""The wire format between the grader and its sandboxed workers: plain data, never pickles of objects.

Every message is one frame: a JSON header and a body of tensors::

    4 bytes  header length (big-endian)    header: UTF-8 JSON
    8 bytes  body length (big-endian)      body: torch.save of a list of tensors, or empty

Values travel as JSON with a few tagged forms: ``{"$tensor": i}`` is the i-th
tensor of the body (plain CPU tensors; ``"kind"`` remembers an ``Image`` or
``Mask`` of torchvision's ``tv_tensors``), ``{"$tuple": [...]}``, ``{"$dict":
[[key, value], ...]}``, ``{"$number": x, "type": ...}`` for numpy scalars,
``{"$handle": id, "type": ...}`` for an object that stays in the worker, and
``{"$scratch": name}`` for a path in the worker's scratch folder. The body is read
with ``torch.load(weights_only=True)``, which rebuilds tensors and nothing else.

This file runs on both sides: imported as ``dlvc.course.sandboxed.wire`` by the grader, and
as the top-level module ``wire`` inside the sandbox, where ``dlvc`` is the
student's package. So it imports the standard library and torch only.
"""

import collections
import io
import json
import struct

import torch

HEADER_LIMIT = 16 * 2**20
"""Largest JSON header accepted, in bytes."""

SCALAR_TYPES = (type(None), bool, int, float, str)
TV_TENSOR_KINDS = ("Image", "Mask")


class WireError(ValueError):
    """A frame or value that does not follow the format (or is too large)."""


def write_frame(stream, header: dict, tensors: list[torch.Tensor] = ()) -> int:
    """Write one frame to a binary stream and flush it; returns its size in bytes."""
    data = pack_frame(header, tensors)
    stream.write(data)
    stream.flush()
    return len(data)


def pack_frame(header: dict, tensors: list[torch.Tensor] = ()) -> bytes:
    """One frame as bytes."""
    body = b""
    if tensors:
        buffer = io.BytesIO()
        torch.save(list(tensors), buffer)
        body = buffer.getvalue()
    return pack_raw(header, body)


def pack_raw(header: dict, body: bytes) -> bytes:
    """One frame whose body is given as bytes (the server wraps a worker's frame in one, unread)."""
    head = json.dumps(header).encode()
    return struct.pack(">I", len(head)) + head + struct.pack(">Q", len(body)) + body


def read_frame_bytes(stream, limit: int) -> bytes | None:
    """The raw bytes of the next frame (prefixes included), or None at a clean end of stream.

    Raises WireError when the frame would exceed ``limit`` bytes or the stream ends inside it.
    """
    head_size = _read_exactly(stream, 4, allow_eof=True)
    if head_size is None:
        return None
    (head_length,) = struct.unpack(">I", head_size)
    if head_length > min(limit, HEADER_LIMIT):
        raise WireError(f"a message header of {head_length} bytes, more than the limit of {min(limit, HEADER_LIMIT)}")
    head = _read_exactly(stream, head_length)
    body_size = _read_exactly(stream, 8)
    (body_length,) = struct.unpack(">Q", body_size)
    if 12 + head_length + body_length > limit:
        raise WireError(f"a message of {12 + head_length + body_length} bytes, more than the limit of {limit}")
    body = _read_exactly(stream, body_length)
    return head_size + head + body_size + body


def split_frame(data: bytes) -> tuple[dict, bytes]:
    """The header and the raw body of a frame's bytes; WireError for anything malformed."""
    try:
        (head_length,) = struct.unpack(">I", data[:4])
        head = data[4 : 4 + head_length]
        (body_length,) = struct.unpack(">Q", data[4 + head_length : 12 + head_length])
        body = data[12 + head_length :]
        if len(head) != head_length or len(body) != body_length:
            raise WireError("a truncated message")
        header = json.loads(head.decode())
    except (struct.error, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise WireError(f"a malformed message ({type(error).__name__})") from None
    if not isinstance(header, dict):
        raise WireError(f"a message header that is a {type(header).__name__}, not an object")
    return header, body


def unpack_frame(data: bytes) -> tuple[dict, list[torch.Tensor]]:
    """The header and the tensors of a frame's bytes; WireError for anything malformed."""
    header, body = split_frame(data)
    tensors = []
    if body:
        try:
            tensors = torch.load(io.BytesIO(body), weights_only=True)
        except Exception as error:  # noqa: BLE001 - any failure to read the body is a malformed message
            raise WireError(f"a message body that is not a list of tensors ({type(error).__name__})") from None
        if not isinstance(tensors, list) or not all(type(tensor) is torch.Tensor for tensor in tensors):
            raise WireError("a message body that is not a list of tensors")
    return header, tensors


def read_frame(stream, limit: int) -> tuple[dict, list[torch.Tensor]] | None:
    """Read and unpack the next frame, or None at a clean end of stream."""
    data = read_frame_bytes(stream, limit)
    return None if data is None else unpack_frame(data)


def _read_exactly(stream, count: int, allow_eof: bool = False) -> bytes | None:
    chunks, remaining = [], count
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            if allow_eof and remaining == count:
                return None
            raise WireError("the stream ended inside a message")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def encode(value, tensors: list[torch.Tensor], handle=None):
    """``value`` as JSON-able data, appending its tensors to ``tensors``.

    ``handle(obj) -> dict`` is called for an object that is not plain data (the
    worker keeps it and sends a ``$handle``); without it such an object is a WireError.
    """
    if isinstance(value, SCALAR_TYPES) and type(value) in SCALAR_TYPES:
        return value
    if isinstance(value, torch.Tensor):
        kind = type(value).__name__ if type(value).__name__ in TV_TENSOR_KINDS else "Tensor"
        tensors.append(value.detach().as_subclass(torch.Tensor).cpu().contiguous().clone())
        return {"$tensor": len(tensors) - 1, "kind": kind}
    numpy_value = _numpy_value(value, tensors)
    if numpy_value is not None:
        return numpy_value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # A subclass of int or float: send the number it converts to, never the object.
        return {"$number": (int if isinstance(value, int) else float)(value), "type": _type_name(value)}
    if type(value) in (list, tuple):
        items = [encode(item, tensors, handle) for item in value]
        return items if type(value) is list else {"$tuple": items}
    if type(value) in (dict, collections.OrderedDict):
        return {"$dict": [[encode(key, tensors, handle), encode(item, tensors, handle)] for key, item in value.items()]}
    if handle is None:
        raise WireError(f"cannot send a {_type_name(value)} as data")
    return handle(value)


def _type_name(value) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"


def _numpy_value(value, tensors):
    """A numpy scalar or array as tagged data, or None for anything else (numpy need not be installed)."""
    module = type(value).__module__
    if not module.startswith("numpy"):
        return None
    import numpy as np

    if isinstance(value, np.generic) and isinstance(value, (np.number, np.bool_)):
        return {"$number": value.item(), "type": f"numpy.{type(value).__name__}"}
    if isinstance(value, np.ndarray) and value.dtype != object:
        tensors.append(torch.from_numpy(np.ascontiguousarray(value)).clone())
        return {"$tensor": len(tensors) - 1, "kind": "numpy.ndarray"}
    return None


def decode(data, tensors: list[torch.Tensor], handle=None, scratch=None):
    """The value that :func:`encode` wrote.

    ``handle(data) -> object`` resolves ``$handle`` tags, ``scratch(name) -> str``
    resolves ``$scratch`` tags; without them those tags are a WireError.
    """
    if isinstance(data, SCALAR_TYPES):
        return data
    if isinstance(data, list):
        return [decode(item, tensors, handle, scratch) for item in data]
    if not isinstance(data, dict) or len(data) == 0:
        raise WireError(f"unexpected data {type(data).__name__}")
    if "$tensor" in data:
        index = data["$tensor"]
        if not isinstance(index, int) or not 0 <= index < len(tensors):
            raise WireError(f"a reference to tensor {index!r} of {len(tensors)}")
        return _as_kind(tensors[index], data.get("kind"))
    if "$tuple" in data:
        return tuple(decode(item, tensors, handle, scratch) for item in _list(data["$tuple"]))
    if "$dict" in data:
        pairs = [_list(pair) for pair in _list(data["$dict"])]
        if not all(len(pair) == 2 for pair in pairs):
            raise WireError("a dict entry that is not a [key, value] pair")
        decoded = [(decode(key, tensors, handle, scratch), decode(item, tensors, handle, scratch)) for key, item in pairs]
        try:
            return dict(decoded)
        except TypeError:
            raise WireError("a dict key that cannot be a key") from None
    if "$number" in data:
        number = data["$number"]
        if not isinstance(number, (bool, int, float)):
            raise WireError(f"a number tag holding {type(number).__name__}")
        return Number(number, str(data.get("type", "number")))
    if "$handle" in data and handle is not None:
        return handle(data)
    if "$scratch" in data and scratch is not None:
        return scratch(str(data["$scratch"]))
    raise WireError(f"unexpected tag {sorted(data)[0]!r}")


def _list(data) -> list:
    if not isinstance(data, list):
        raise WireError(f"expected a list, got {type(data).__name__}")
    return data


def _as_kind(tensor: torch.Tensor, kind) -> torch.Tensor:
    if kind in TV_TENSOR_KINDS:
        from torchvision import tv_tensors

        return getattr(tv_tensors, kind)(tensor)
    return tensor


class Number(float):
    """A number that arrived as a numpy scalar; ``type_name`` says which (``numpy.float32``)."""

    def __new__(cls, value, type_name: str):
        number = super().__new__(cls, value)
        number.type_name = type_name
        return number
