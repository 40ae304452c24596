"""Shared fixtures: a small generated event-video dataset, made once per test session, and a
guard that fails any test reaching the network from this process."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from marc.data.synthetic import GeneratorConfig, generate_dataset


@pytest.fixture(scope="session")
def tiny_dataset_config() -> GeneratorConfig:
    """Generator options of the small dataset the tests share."""
    return GeneratorConfig(num_videos=10, seed=3)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, tiny_dataset_config):
    """Root folder of a generated dataset of 10 videos (train 7, val 1, test 2)."""
    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, tiny_dataset_config)
    return root


@pytest.fixture(scope="session")
def short_clips_dataset(tmp_path_factory):
    """Root of a generated dataset of 4 videos of 16 frames at 56 px (fast VLM tests)."""
    root = tmp_path_factory.mktemp("short_clips")
    generate_dataset(root, GeneratorConfig(num_videos=4, num_frames=16, frame_size=56))
    return root


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory):
    """A random-init tiny VideoVLM saved with save_pretrained (a stand-in teacher/student)."""
    from marc.models.vlm import VideoVLM

    path = tmp_path_factory.mktemp("tiny_vlm") / "model"
    VideoVLM.tiny(seed=0).save_pretrained(path)
    return path


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and a shared CPU punishes them."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class NetworkAccessError(RuntimeError):
    """A test of this process tried to reach a host other than this machine."""


def _is_local(host) -> bool:
    if host in (None, "", "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name other than localhost: a DNS look-up on the network


@pytest.fixture(autouse=True, scope="session")
def network_attempts():
    """Every non-loopback connection or name look-up raises NetworkAccessError and is recorded
    here: nothing in marc may download at run time unless asked to (docs/RELIABILITY.md).
    Child processes (the DDP and command-line tests) are not covered."""
    attempts: list[str] = []
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(self, address, *args, **kwargs):
        host = address[0] if isinstance(address, tuple) else None
        if self.family != socket.AF_UNIX and not _is_local(host):
            attempts.append(f"connect {address}")
            raise NetworkAccessError(f"a test tried to connect to {address}")
        return connect(self, address, *args, **kwargs)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if not _is_local(host.decode() if isinstance(host, bytes) else host):
            attempts.append(f"getaddrinfo {host}")
            raise NetworkAccessError(f"a test tried to look up {host}")
        return getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", guarded_connect)
        patch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
        yield attempts
