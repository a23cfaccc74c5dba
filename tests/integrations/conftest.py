"""A real Label Studio server for the integration tests: installed from PyPI into a virtual
environment of its own (it pins its own Django stack), started on a free local port with a
temporary data folder (its SQLite database), and stopped at the end of the session."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from _app_support import free_port

LABEL_STUDIO_VERSION = "1.23.2"
EMAIL, PASSWORD = "annotator@example.com", "a-long-test-password-1"


def _label_studio_venv() -> Path:
    """A virtual environment with label-studio, made once per version (kept between runs)."""
    root = Path(os.environ.get("UPOCR_LABEL_STUDIO_VENV",
                               Path.home() / ".cache" / "upocr" / f"label-studio-{LABEL_STUDIO_VERSION}"))
    binary = root / "bin" / "label-studio"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True)
        subprocess.run([str(root / "bin" / "python"), "-m", "pip", "install", "--quiet",
                        f"label-studio=={LABEL_STUDIO_VERSION}"], check=True, timeout=900)
    return root


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    """``{"url", "token", "session", "document_root", "email", "password"}`` of a fresh Label Studio server: ``token``
    is a personal access token for the SDK, ``session`` a logged-in ``requests`` session, and
    files under ``document_root`` are served as local files."""
    venv = _label_studio_venv()
    data = tmp_path_factory.mktemp("label-studio-data")
    document_root = tmp_path_factory.mktemp("label-studio-files")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, LABEL_STUDIO_USERNAME=EMAIL, LABEL_STUDIO_PASSWORD=PASSWORD,
               LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
               LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(document_root), LABEL_STUDIO_BASE_DATA_DIR=str(data),
               LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true", SENTRY_DSN="", FRONTEND_SENTRY_DSN="",
               ML_BLOCK_LOCAL_IP="false", SSRF_PROTECTION_ENABLED="false")  # the ML backend of the tests is on 127.0.0.1
    log = open(data / "server.log", "wb")
    server = subprocess.Popen([str(venv / "bin" / "label-studio"), "start", "--no-browser", "--port", str(port),
                               "--data-dir", str(data)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, (data / "server.log").read_text(errors="replace")[-3000:]
            try:
                if requests.get(url + "/health", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "Label Studio did not start in 5 minutes"
            time.sleep(1)
        session = requests.Session()
        session.get(url + "/user/login/", timeout=30)
        login = session.post(url + "/user/login/", data={"email": EMAIL, "password": PASSWORD,
                                                         "csrfmiddlewaretoken": session.cookies.get("csrftoken")},
                             headers={"Referer": url + "/user/login/"}, allow_redirects=False, timeout=30)
        assert login.status_code == 302, login.text[:500]
        token = session.post(url + "/api/token/", headers={"X-CSRFToken": session.cookies.get("csrftoken"),
                                                           "Referer": url}, timeout=30)
        assert token.status_code == 201, token.text[:500]
        yield {"url": url, "token": token.json()["token"], "session": session, "document_root": document_root,
               "data": data, "email": EMAIL, "password": PASSWORD}
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
