"""TensorBoard event files without TensorFlow: scalars written and read in the tfevents format.

An event file is a sequence of TFRecords, each holding one serialised `tensorflow.Event`:

    record = uint64 length | uint32 masked_crc(length) | data[length] | uint32 masked_crc(data)
    masked_crc(b) = ((c >> 15) | (c << 17)) + 0xA282EAD8  (mod 2^32),  c = CRC32C(b)

all little-endian. The first event of a file carries `file_version = "brain.Event:2"`; each
later one `wall_time` (seconds since the epoch), `step` and a `Summary` of `simple_value`s:

    Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
    Summary { repeated Value value = 1; }
    Value   { string tag = 1; float simple_value = 2; }

The protobuf wire format is hand-encoded: a field is `varint(number << 3 | wire_type)` then its
payload: varint (type 0), 8 bytes (1, double), length-prefixed bytes (2: strings, messages) or
4 bytes (5, float). Only what scalars need is implemented; a reader of other files skips the
fields it does not know. TensorBoard reads every file named `*tfevents*` in a run directory.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import time
from collections.abc import Iterator

import numpy as np
from etils import epath

FILE_VERSION = "brain.Event:2"
_MASK_DELTA = 0xA282EAD8
_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected


def _crc_table() -> tuple[int, ...]:
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ (_POLY if crc & 1 else 0)
    table.append(crc)
  return tuple(table)


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
  """CRC-32C of `data` (table-driven, one byte at a time): `crc32c(b"123456789") == 0xE3069283`."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  """TFRecord's masked CRC: the CRC rotated right by 15 bits plus 0xA282EAD8, mod 2^32."""
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
  """`data` as one TFRecord: length, its masked CRC, the data, the data's masked CRC."""
  length = struct.pack("<Q", len(data))
  return (
    length
    + struct.pack("<I", masked_crc32c(length))
    + data
    + struct.pack("<I", masked_crc32c(data))
  )


def _varint(value: int) -> bytes:
  value &= (1 << 64) - 1  # negative int64s are ten bytes, two's complement
  out = bytearray()
  while value > 0x7F:
    out.append((value & 0x7F) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
  if wire_type == 2:
    payload = _varint(len(payload)) + payload
  return _varint(number << 3 | wire_type) + payload


def encode_event(
  wall_time: float, step: int = 0, scalars: dict[str, float] | None = None, file_version: str = ""
) -> bytes:
  """A serialised `Event` with `wall_time`, `step` and either `file_version` or a `Summary` of
  one `simple_value` (float32) per tag of `scalars`."""
  out = _field(1, 1, struct.pack("<d", wall_time))
  if step:
    out += _field(2, 0, _varint(step))
  if file_version:
    out += _field(3, 2, file_version.encode())
  if scalars:
    values = b"".join(
      _field(1, 2, _field(1, 2, tag.encode()) + _field(2, 5, np.float32(v).tobytes()))
      for tag, v in scalars.items()
    )
    out += _field(5, 2, values)
  return out


_FILE_NUMBERS = itertools.count(1)  # two writers of one process in one second differ by it


def event_file_name(now: float | None = None) -> str:
  """`events.out.tfevents.TIME.HOST.PID.N`: unique per writer, as TensorFlow names them."""
  stamp = int(time.time() if now is None else now)
  return f"events.out.tfevents.{stamp}.{socket.gethostname()}.{os.getpid()}.{next(_FILE_NUMBERS)}"


class EventWriter:
  """Appends scalar events to a new event file in `logdir`, created on the first write (so a
  run that logs nothing leaves no file); every write is flushed to disk."""

  def __init__(self, logdir: str):
    self.logdir = epath.Path(logdir)
    self.path: epath.Path | None = None

  def scalars(self, step: int, values: dict[str, float], wall_time: float | None = None) -> None:
    """Writes one event at `step` with a `simple_value` per tag of `values`."""
    now = time.time() if wall_time is None else wall_time
    records = b""
    if self.path is None:
      self.logdir.mkdir(parents=True, exist_ok=True)
      self.path = self.logdir / event_file_name(now)
      records = frame(encode_event(now, file_version=FILE_VERSION))
    records += frame(encode_event(now, step, values))
    with self.path.open("ab") as f:
      f.write(records)


# ------------------------------------------------------------------------------ reading back


def records(path: str) -> Iterator[bytes]:
  """The data of each TFRecord of `path`; raises ValueError on a bad CRC or a cut record."""
  data = epath.Path(path).read_bytes()
  pos = 0
  while pos < len(data):
    if pos + 12 > len(data):
      raise ValueError(f"{path}: truncated record header at byte {pos}.")
    header = data[pos : pos + 8]
    (length,) = struct.unpack("<Q", header)
    (crc,) = struct.unpack("<I", data[pos + 8 : pos + 12])
    if crc != masked_crc32c(header):
      raise ValueError(f"{path}: bad length CRC at byte {pos}.")
    body = data[pos + 12 : pos + 12 + length]
    if len(body) < length or pos + 16 + length > len(data):
      raise ValueError(f"{path}: truncated record at byte {pos}.")
    (crc,) = struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])
    if crc != masked_crc32c(body):
      raise ValueError(f"{path}: bad data CRC at byte {pos}.")
    yield body
    pos += 16 + length


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
  value, shift = 0, 0
  while True:
    byte = data[pos]
    value |= (byte & 0x7F) << shift
    pos, shift = pos + 1, shift + 7
    if not byte & 0x80:
      return value, pos


def _fields(data: bytes) -> Iterator[tuple[int, int, object]]:
  """(number, wire type, value) of each field of a message: ints for types 0, bytes otherwise."""
  pos = 0
  while pos < len(data):
    key, pos = _read_varint(data, pos)
    number, wire_type = key >> 3, key & 7
    if wire_type == 0:
      value, pos = _read_varint(data, pos)
    elif wire_type == 1:
      value, pos = data[pos : pos + 8], pos + 8
    elif wire_type == 2:
      length, pos = _read_varint(data, pos)
      value, pos = data[pos : pos + length], pos + length
    elif wire_type == 5:
      value, pos = data[pos : pos + 4], pos + 4
    else:
      raise ValueError(f"unsupported protobuf wire type {wire_type}")
    yield number, wire_type, value


def decode_event(data: bytes) -> dict:
  """`{"wall_time", "step", "file_version", "scalars": {tag: value}}` of a serialised Event."""
  event = {"wall_time": 0.0, "step": 0, "file_version": "", "scalars": {}}
  for number, _, value in _fields(data):
    if number == 1:
      event["wall_time"] = struct.unpack("<d", value)[0]
    elif number == 2:
      event["step"] = value - (1 << 64) if value >= 1 << 63 else value
    elif number == 3:
      event["file_version"] = value.decode()
    elif number == 5:
      event["scalars"].update(_summary_values(value))
  return event


def _summary_values(data: bytes) -> dict[str, float]:
  values = {}
  for number, _, value in _fields(data):
    if number != 1:
      continue
    fields = {n: v for n, _, v in _fields(value)}
    if 2 in fields:
      values[fields[1].decode()] = struct.unpack("<f", fields[2])[0]
  return values


def read_events(path: str) -> list[dict]:
  """Every event of the event file `path`, in order (see `decode_event`)."""
  return [decode_event(r) for r in records(path)]
