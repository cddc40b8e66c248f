"""The demo app starts offline, says plainly when no trained model exists, and serves edits."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

gradio = pytest.importorskip("gradio", reason="the app extra is not installed")
from conftest import TINY  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402

import app  # noqa: E402
from wemgan import WEMGAN  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_untrained_or_missing_models_are_never_shown(tmp_path):
    model, status = app.load_model(str(tmp_path))
    assert model is None and "No trained model" in status
    model, status = app.load_model(str(tmp_path / "not-there"))  # hub/default before shipping
    assert model is None and "No trained model" in status
    WEMGAN(**TINY).save_pretrained(tmp_path)
    model, status = app.load_model(str(tmp_path))
    assert model is None and "never trained" in status


def test_trained_model_edits_through_the_api(tmp_path, face_crop):
    WEMGAN(**TINY, provenance={"data": "unit-test weights"}).save_pretrained(tmp_path)
    model, status = app.load_model(str(tmp_path))
    assert model is not None and "unit-test weights" in status
    demo = app.build_demo(model, status)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        path = tmp_path / "face.png"
        face_crop.resize((160, 200)).save(path)
        result = client.predict(handle_file(str(path)), "Surprise", 1.0, api_name="/edit_aus")
        assert Image.open(result).size == (160, 200)
    finally:
        demo.close()


@pytest.mark.slow
def test_python_app_py_starts_offline(tmp_path):
    port = free_port()
    env = {**os.environ, "WEMGAN_MODEL": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2) as response:
                    config = response.read().decode()
                break
            except OSError:
                assert process.poll() is None, process.stdout.read()
                time.sleep(0.5)
        else:
            pytest.fail("app.py did not answer within 60 s")
        assert "No trained model" in config
    finally:
        process.terminate()
        process.wait(timeout=10)
