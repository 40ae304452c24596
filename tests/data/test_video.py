import numpy as np
import pytest
import torch

from marc.data.synthetic import write_mp4
from marc.data.video import (
    VideoDecodeError,
    decode_video,
    read_video,
    resize_frames,
    round_to_multiple,
    sample_indices,
)


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "ramp.mp4"
    frames = np.zeros((24, 56, 84, 3), dtype=np.uint8)
    for t in range(24):
        frames[t, :, :, 0] = t * 10  # red channel ramps with time
    write_mp4(path, frames, fps=8)
    return path


def test_reads_every_frame_as_uint8_tchw(video_file):
    video = read_video(video_file)
    assert video.dtype == torch.uint8 and video.shape == (24, 3, 56, 84)
    red = video[:, 0].float().mean(dim=(1, 2))
    assert torch.all(red[1:] > red[:-1])  # the time ramp survives decoding, in order


def test_fps_and_frame_cap_sample_uniformly(video_file):
    _, indices = decode_video(video_file, fps=4)
    assert len(indices) == 12 and indices[0] == 0 and indices[-1] == 23
    video, indices = decode_video(video_file, max_frames=5)
    assert video.shape[0] == 5 and list(indices) == [0, 6, 12, 17, 23]
    assert len(sample_indices(10, 8.0, 16.0, None)) == 10  # never upsamples


def test_resize_rounds_to_multiples_of_28(video_file):
    assert read_video(video_file, size=112).shape[-2:] == (112, 168)
    assert read_video(video_file, size=(60, 60)).shape[-2:] == (56, 56)
    assert round_to_multiple(10) == 28
    frames = torch.full((2, 3, 50, 50), 200, dtype=torch.uint8)
    assert torch.all(resize_frames(frames, None) == 200)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        read_video(tmp_path / "nope.mp4")


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "empty"), (b"this is not a video" * 50, "not a readable media container")],
    ids=["empty", "not-a-container"],
)
def test_unreadable_files_raise_decode_error(tmp_path, content, reason):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoDecodeError, match=reason) as info:
        read_video(path)
    assert str(path) in str(info.value)


def test_truncated_file_raises_decode_error(tmp_path, video_file):
    data = video_file.read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodeError, match="cut.mp4"):
        read_video(path)


def test_file_without_video_stream_raises(tmp_path):
    import av

    path = tmp_path / "audio.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(VideoDecodeError, match="no video stream"):
        read_video(path)
