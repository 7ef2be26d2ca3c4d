"""TensorBoard event files written without TensorFlow read back as the same scalars."""

import struct

import pytest

from bdjax import tensorboard
from bdjax.metrics_log import MetricsLog, read_metrics


def test_crc32c_matches_the_published_check_values():
  assert tensorboard.crc32c(b"123456789") == 0xE3069283  # the CRC catalogue's check value
  assert tensorboard.crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4: 32 bytes of zeros
  assert tensorboard.crc32c(b"\xff" * 32) == 0x62A8AB43  # RFC 3720 B.4: 32 bytes of ones
  assert tensorboard.crc32c(b"") == 0


def test_a_record_is_length_crc_data_crc():
  data = b"some event bytes"
  record = tensorboard.frame(data)
  assert struct.unpack("<Q", record[:8])[0] == len(data)
  assert struct.unpack("<I", record[8:12])[0] == tensorboard.masked_crc32c(record[:8])
  assert record[12:-4] == data
  crc = tensorboard.crc32c(data)
  masked = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
  assert struct.unpack("<I", record[-4:])[0] == masked


def test_metrics_log_writes_the_same_records_as_tensorboard_scalars(tmp_path):
  log = MetricsLog(str(tmp_path))
  log.write("train", 50, {"loss": 2.5, "pairs_per_s": 240.0}, echo=False)
  log.write("cleanclip/eval", 1800, {"ca_top1": 0.976, "asr_top1": 0.0474}, echo=False)
  (path,) = tmp_path.glob("events.out.tfevents.*")
  events = tensorboard.read_events(str(path))
  assert events[0]["file_version"] == "brain.Event:2"
  assert [e["step"] for e in events[1:]] == [m["step"] for m in read_metrics(str(tmp_path))]
  assert events[1]["scalars"] == pytest.approx({"train/loss": 2.5, "train/pairs_per_s": 240.0})
  assert events[2]["scalars"] == pytest.approx(
    {"cleanclip/eval/ca_top1": 0.976, "cleanclip/eval/asr_top1": 0.0474}, rel=1e-6
  )
  assert all(e["wall_time"] > 1.6e9 for e in events)


def test_a_corrupted_event_file_is_refused(tmp_path):
  writer = tensorboard.EventWriter(str(tmp_path))
  writer.scalars(1, {"loss": 1.0})
  data = bytearray(writer.path.read_bytes())
  data[-6] ^= 0xFF  # a byte of the last event's data
  writer.path.write_bytes(bytes(data))
  with pytest.raises(ValueError, match="bad data CRC"):
    tensorboard.read_events(str(writer.path))
  writer.path.write_bytes(bytes(data[:-3]))
  with pytest.raises(ValueError, match="truncated"):
    tensorboard.read_events(str(writer.path))


def test_events_parse_with_protobuf_as_tensorflow_event_messages():
  """An independent decoder: the Event/Summary schema built with protobuf's own runtime."""
  pytest.importorskip("google.protobuf")
  from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

  f = descriptor_pb2.FieldDescriptorProto
  file = descriptor_pb2.FileDescriptorProto(name="bdjax_event_test.proto", package="t")

  def message(name, *fields):
    m = file.message_type.add(name=name)
    for number, field_name, kind, label, type_name in fields:
      field = m.field.add(name=field_name, number=number, type=kind, label=label)
      if type_name:
        field.type_name = type_name

  opt, rep = f.LABEL_OPTIONAL, f.LABEL_REPEATED
  message("Value", (1, "tag", f.TYPE_STRING, opt, ""), (2, "simple_value", f.TYPE_FLOAT, opt, ""))
  message("Summary", (1, "value", f.TYPE_MESSAGE, rep, ".t.Value"))
  message(
    "Event",
    (1, "wall_time", f.TYPE_DOUBLE, opt, ""),
    (2, "step", f.TYPE_INT64, opt, ""),
    (3, "file_version", f.TYPE_STRING, opt, ""),
    (5, "summary", f.TYPE_MESSAGE, opt, ".t.Summary"),
  )
  pool = descriptor_pool.DescriptorPool()
  pool.Add(file)
  event_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("t.Event"))
  event = event_class.FromString(
    tensorboard.encode_event(1.7e9 + 0.25, 123456789012, {"a/loss": 0.5, "b": -3.0})
  )
  assert event.wall_time == 1.7e9 + 0.25 and event.step == 123456789012
  assert [(v.tag, v.simple_value) for v in event.summary.value] == [("a/loss", 0.5), ("b", -3.0)]
  header = event_class.FromString(tensorboard.encode_event(1.0, file_version="brain.Event:2"))
  assert header.file_version == "brain.Event:2"


def test_tensorboard_itself_reads_the_file(tmp_path):
  loader = pytest.importorskip("tensorboard.backend.event_processing.event_file_loader")
  log = MetricsLog(str(tmp_path))
  log.write("train", 7, {"loss": 1.25}, echo=False)
  (path,) = tmp_path.glob("events.out.tfevents.*")
  events = list(loader.LegacyEventFileLoader(str(path)).Load())
  assert events[0].file_version == "brain.Event:2"
  assert events[1].step == 7
  assert events[1].summary.value[0].tag == "train/loss"
  assert events[1].summary.value[0].simple_value == 1.25
