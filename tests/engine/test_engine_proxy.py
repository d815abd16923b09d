"""Uploads through the environment's HTTP proxy (``http_proxy``/``no_proxy``), as behind a
company proxy: a host only the proxy can reach (``upload.invalid``) gets the file intact,
``no_proxy`` and loopback targets go direct."""

from __future__ import annotations

import httpx
import pytest

import nbupload
from nbupload.engine import TaskState
from nbupload.engine.transport import env_proxy
from tests.support.helpers import make_file, sha256_file
from tests.support.httpproxy import ForwardProxy


@pytest.fixture
def no_env_proxies(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


@pytest.mark.parametrize("protocol", ["uploader", "plain"])
def test_an_upload_goes_through_the_environments_proxy(
    server, make_engine, tmp_path, no_env_proxies, protocol
):
    proxy = ForwardProxy(("127.0.0.1", server.port))
    try:
        no_env_proxies.setenv("http_proxy", proxy.url)
        src = make_file(tmp_path / "via-proxy.bin", 3_000_000, seed=21)
        engine = make_engine(chunk_size=1 << 20, streams=2)
        # the client cannot resolve this host: only the proxy reaches the server
        url = f"http://upload.invalid:{server.port}/upload"
        task = nbupload.upload(str(src), url, protocol=protocol, engine=engine, wait=True)
        assert task.state is TaskState.DONE, task.error
        assert sha256_file(server.root / "via-proxy.bin") == sha256_file(src)
        assert proxy.requests and all(r.startswith(url) for r in proxy.requests)
        assert len(proxy.requests) == server.stats()["uploader"]["requests"]
    finally:
        proxy.close()


def test_which_hosts_go_through_the_proxy(no_env_proxies):
    no_env_proxies.setenv("HTTP_PROXY", "proxy.corp:3128")
    no_env_proxies.setenv("no_proxy", "internal.corp,.lab")
    assert env_proxy(httpx.URL("http://files.example/upload")) == "http://proxy.corp:3128"
    assert env_proxy(httpx.URL("https://files.example/upload")) is None  # no https_proxy set
    assert env_proxy(httpx.URL("http://internal.corp:8080/upload")) is None
    assert env_proxy(httpx.URL("http://a.lab/upload")) is None
    for loopback in ("http://127.0.0.1:8765/upload", "http://localhost/upload", "http://[::1]:1/u"):
        assert env_proxy(httpx.URL(loopback)) is None  # the proxy's loopback is not ours
    no_env_proxies.setenv("all_proxy", "http://all.corp:8080")
    assert env_proxy(httpx.URL("https://files.example/upload")) == "http://all.corp:8080"
