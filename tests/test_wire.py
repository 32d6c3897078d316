"""The wire format: values survive the trip, and what arrives malformed or oversized is refused, never unpickled."""

import io
import pickle

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from dlvc.course.sandboxed import wire


def round_trip(value):
    tensors = []
    data = wire.encode(value, tensors, handle=lambda obj: {"$handle": 1, "type": type(obj).__name__})
    header, received = wire.unpack_frame(wire.pack_frame({"value": data}, tensors))
    return wire.decode(header["value"], received, handle=lambda tag: ("remote", tag["type"]))


def test_plain_values_tensors_and_containers_survive_the_trip():
    value = {"a": [1, 2.5, None, True, "x"], "b": (torch.arange(6).reshape(2, 3), {"c": torch.tensor(1.5)}), 3: "int key"}
    received = round_trip(value)
    assert received["a"] == [1, 2.5, None, True, "x"] and received[3] == "int key"
    assert torch.equal(received["b"][0], torch.arange(6).reshape(2, 3)) and isinstance(received["b"], tuple)


def test_tv_tensors_keep_their_kind_and_numpy_values_arrive_as_numbers_and_tensors():
    received = round_trip([tv_tensors.Mask(torch.zeros(2, 2, dtype=torch.int64)), np.float32(0.25), np.arange(3)])
    assert isinstance(received[0], tv_tensors.Mask)
    assert received[1] == 0.25 and received[1].type_name == "numpy.float32"
    assert torch.equal(received[2], torch.arange(3))


def test_objects_that_are_not_data_become_handles_and_number_subclasses_become_numbers():
    class Sneaky(float):
        def __eq__(self, other):
            return True

    received = round_trip([object(), Sneaky(0.5)])
    assert received[0] == ("remote", "object")
    assert type(received[1]) is wire.Number and float(received[1]) == 0.5 and received[1] != 0.25


def test_a_body_that_is_a_pickle_of_an_object_is_refused():
    buffer = io.BytesIO()
    pickle.dump([torch.zeros(1), {"not": "a tensor"}], buffer, protocol=2)
    frame = wire.pack_raw({"ok": 1}, buffer.getvalue())
    with pytest.raises(wire.WireError, match="not a list of tensors"):
        wire.unpack_frame(frame)


def test_a_frame_larger_than_the_limit_is_refused_before_it_is_read():
    frame = wire.pack_frame({"ok": "x" * 1000})
    with pytest.raises(wire.WireError, match="more than the limit"):
        wire.read_frame_bytes(io.BytesIO(frame), limit=100)


@pytest.mark.parametrize("data", [b"\x00\x00\x00\x05{}", b"\x00\x00\x00\x02[]" + bytes(8), b"\x00\x00\x00\x01{" + bytes(8)])
def test_truncated_or_malformed_frames_are_refused(data):
    with pytest.raises(wire.WireError):
        wire.unpack_frame(data)


def test_an_unknown_tag_is_refused():
    with pytest.raises(wire.WireError, match="unexpected tag"):
        wire.decode({"$nope": 1}, [])
