"""``uner serve`` in real processes on a free port of 127.0.0.1, over real HTTP (httpx).

The embedded model as F32 GGUF: llama.cpp's F32 rows do not depend on what else is in the batch,
so a text's answers are the same whichever other clients' texts decode beside it.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import uvicorn

from tests.conftest import crossner_texts
from uner.bench.server_process import ServerProcess
from uner.cli import main as uner
from uner.server import ModelHost, bind, create_app
from uner.service import Limits

LABELS = ["person", "organisation", "location", "country"]
LIMITS = ["--max-texts", "16", "--max-labels", "4", "--max-chars", "6000", "--queue-size", "20"]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """16 CrossNER passages (short ones: the F32 model decodes slowly)."""
    passages = sorted((text for text, _ in crossner_texts(12)), key=len)[:16]
    assert len(passages) == 16
    return passages


@pytest.fixture(scope="module")
def cli_results(uniner_smol_ggufs, texts, tmp_path_factory) -> list[dict]:
    """What ``uner extract --json --raw`` prints for the texts, one object per text."""
    source = tmp_path_factory.mktemp("serve") / "texts.jsonl"
    source.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts), encoding="utf-8")
    argv = ["extract", "-m", uniner_smol_ggufs["f32"], "-l", ",".join(LABELS), "-i", source, "--json", "--raw"]
    with pytest.raises(SystemExit) as exit_info, _stdout_lines() as lines:
        uner([str(a) for a in argv])
    assert exit_info.value.code == 0
    return [json.loads(line) for line in lines]


class _stdout_lines:
    """Captures what ``print``/``typer.echo`` write, without pytest's capsys (module fixtures)."""

    def __enter__(self) -> list[str]:
        import contextlib
        import io

        self._buffer = io.StringIO()
        self._redirect = contextlib.redirect_stdout(self._buffer)
        self._redirect.__enter__()
        self.lines: list[str] = []
        return self.lines

    def __exit__(self, *exc: object) -> None:
        self._redirect.__exit__(*exc)
        self.lines += [line for line in self._buffer.getvalue().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def server(uniner_smol_ggufs):
    with ServerProcess(uniner_smol_ggufs["f32"], "--threads", "2", "--parallel-texts", "4", *LIMITS) as process:
        process.wait_ready()
        yield process


def _expected(result: dict) -> dict:
    out = {"entities": result["entities"]}
    if result.get("ungrounded"):
        out["ungrounded"] = result["ungrounded"]
    return out


def _post(url: str, body: object, **kwargs) -> httpx.Response:
    return httpx.post(f"{url}/v1/extract", json=body, timeout=kwargs.pop("timeout", 300), **kwargs)


def test_results_equal_uner_extract_json_on_the_same_texts(server, texts, cli_results):
    response = _post(server.url, {"texts": texts[:6], "labels": LABELS})
    assert response.status_code == 200, response.text
    assert response.json()["results"] == [_expected(r) for r in cli_results[:6]]
    one = _post(server.url, {"text": texts[6], "labels": LABELS}).json()
    assert one["results"] == [_expected(cli_results[6])]
    assert any(r["entities"] for r in response.json()["results"])  # the model does find entities


def test_sixteen_concurrent_clients_each_get_their_own_answers(server, texts, cli_results):
    def ask(index: int) -> tuple[int, dict]:
        return index, _post(server.url, {"text": texts[index], "labels": LABELS}).json()

    with ThreadPoolExecutor(16) as pool:
        answers = dict(pool.map(ask, range(16)))
    for index in range(16):
        assert answers[index]["results"] == [_expected(cli_results[index])], f"client {index}"
    metrics = httpx.get(f"{server.url}/metrics").text
    assert _metric(metrics, 'uner_http_requests_total{path="/v1/extract",status="200"}') >= 16


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"texts": ["a"] * 17, "labels": ["person"]}, 413, "texts"),
        ({"text": "a", "labels": ["l1", "l2", "l3", "l4", "l5"]}, 413, "labels"),
        ({"text": "a" * 6001, "labels": ["person"]}, 413, "texts"),
        ({"text": "a", "labels": ["x" * 201]}, 413, "labels"),
        ({"text": 5, "labels": ["person"]}, 422, "text"),
        ({"texts": "a text", "labels": ["person"]}, 422, "texts"),
        ({"text": "a", "labels": "person"}, 422, "labels"),
        ({"text": "a"}, 422, "labels"),
        ({"text": "a", "texts": ["b"], "labels": ["person"]}, 422, "body"),
        ({"text": "a", "labels": ["person"], "lables": ["x"]}, 422, "lables"),
        ({"text": "a", "labels": [" "]}, 422, "labels"),
        ({"text": "a", "labels": ["person"], "constrain": "xml"}, 422, "constrain"),
        ({"text": "a", "labels": ["person"], "max_new_tokens": 0}, 422, "max_new_tokens"),
        ({"text": "a", "labels": ["person"], "max_new_tokens": 257}, 422, "max_new_tokens"),
        ([1, 2], 422, "body"),
    ],
)
def test_each_bad_request_gets_its_status_and_names_the_field(server, body, status, field):
    response = _post(server.url, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["status"] == status and error["field"] == field and error["message"]
    assert "Traceback" not in response.text


def test_malformed_json_and_oversized_bodies_are_clean_errors(server):
    broken = httpx.post(f"{server.url}/v1/extract", content=b'{"text": "a", "labels": [', timeout=30)
    assert broken.status_code == 422 and "invalid JSON" in broken.json()["error"]["message"]
    # the form-urlencoded Content-Type of `curl -d` is read as JSON all the same
    curl_like = httpx.post(
        f"{server.url}/v1/extract",
        content=json.dumps({"text": "Paris.", "labels": ["location"]}).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=60,
    )
    assert curl_like.status_code == 200, curl_like.text
    huge = httpx.post(f"{server.url}/v1/extract", content=b" " * (6000 * 4 + 64 * 1024 + 1), timeout=30)
    assert huge.status_code == 413


def test_a_full_queue_answers_503_with_retry_after(server, texts):
    first = threading.Thread(target=_post, args=(server.url, {"texts": texts, "labels": LABELS}))
    first.start()
    try:
        deadline = time.monotonic() + 60
        while _metric(httpx.get(f"{server.url}/metrics").text, "uner_queue_depth") < 5:
            assert time.monotonic() < deadline, "the first request never queued"
            time.sleep(0.02)
        busy = _post(server.url, {"texts": texts, "labels": LABELS})  # 16 more than the 20 places left
        assert busy.status_code == 503 and busy.headers["Retry-After"].isdigit()
        assert "queue" in busy.json()["error"]["message"]
    finally:
        first.join()


def test_model_and_metrics_endpoints_describe_the_served_model(server, uniner_smol_ggufs):
    info = httpx.get(f"{server.url}/v1/model").json()
    manifest = json.loads(uniner_smol_ggufs["manifest"].read_text())
    name = uniner_smol_ggufs["f32"].name
    assert info["backend"] == "llamacpp" and info["variant"] == "f32"
    assert info["sha256"] == {name: manifest["files"][name]["sha256"]}
    assert "{text}" in info["prompt_template"] and "{label}" in info["prompt_template"]
    _post(server.url, {"text": "Paris.", "labels": ["location"]})
    metrics = httpx.get(f"{server.url}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in ("uner_queries_total", "uner_generated_tokens_total", "uner_request_duration_seconds_count"):
        assert _metric(metrics.text, name) > 0
    assert _metric(metrics.text, "uner_queue_depth") >= 0
    assert httpx.get(f"{server.url}/docs").status_code == 200
    assert "/v1/extract" in httpx.get(f"{server.url}/openapi.json").json()["paths"]


def test_a_request_past_its_timeout_gets_504_and_the_server_goes_on(uniner_smol_ggufs, texts):
    with ServerProcess(uniner_smol_ggufs["f32"], "--threads", "2", "--timeout", "0.3") as process:
        url = process.wait_ready()
        late = _post(url, {"texts": texts[:8], "labels": LABELS})
        assert late.status_code == 504 and "0.3 s" in late.json()["error"]["message"]
        assert httpx.get(f"{url}/health").status_code == 200
        assert 'status="504"' in httpx.get(f"{url}/metrics").text
    assert not [line for line in process.log if "Traceback" in line]


def test_sigterm_finishes_the_requests_in_flight_then_exits(uniner_smol_ggufs, texts, cli_results):
    process = ServerProcess(uniner_smol_ggufs["f32"], "--threads", "2")
    url = process.wait_ready()
    answers: list[httpx.Response] = []
    client = threading.Thread(target=lambda: answers.append(_post(url, {"texts": texts[:4], "labels": LABELS})))
    client.start()
    time.sleep(0.5)  # the request is being decoded
    process.terminate()
    client.join(120)
    # uvicorn re-raises the signal once it has shut down, so the exit status says SIGTERM
    assert process.process.wait(120) == -signal.SIGTERM
    assert answers and answers[0].status_code == 200
    assert answers[0].json()["results"] == [_expected(r) for r in cli_results[:4]]
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health", timeout=5)
    assert "stopped" in process.log  # the engine drained, then the model was freed
    assert not [line for line in process.log if "Traceback" in line] and process.stdout == ""


def test_health_is_503_while_the_model_loads_then_200(uniner_smol_ggufs):
    from uner.loading import load

    gate = threading.Event()

    def slow_load():
        assert gate.wait(60)
        return load(uniner_smol_ggufs["f32"], n_threads=2, max_new_tokens=8)

    host = ModelHost(slow_load, lambda extractor: {"name": "smol", "backend": extractor.name}, Limits())
    sock = bind("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(create_app(host), log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        health = httpx.get(f"{url}/health")
        assert health.status_code == 503 and health.json() == {"status": "loading"}
        assert health.headers["Retry-After"].isdigit()
        early = _post(url, {"text": "Paris.", "labels": ["location"]})
        assert early.status_code == 503 and "loading" in early.json()["error"]["message"]
        assert httpx.get(f"{url}/v1/model").status_code == 503
        assert _metric(httpx.get(f"{url}/metrics").text, "uner_model_ready") == 0
        gate.set()
        while httpx.get(f"{url}/health").status_code != 200:
            assert time.monotonic() < deadline, "the model never became ready"
            time.sleep(0.05)
        assert _post(url, {"text": "Paris.", "labels": ["location"]}).status_code == 200
        assert httpx.get(f"{url}/v1/model").json()["backend"] == "llamacpp"
    finally:
        gate.set()
        server.should_exit = True
        thread.join(60)


def test_a_model_that_fails_to_load_stops_the_server_with_one_error_line(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    process = ServerProcess(broken)
    assert process.process.wait(120) == 1
    errors = [line for line in process.log if line.startswith("Error: ")]
    assert len(errors) == 1 and not [line for line in process.log if "Traceback" in line]


def test_a_missing_model_or_a_busy_port_is_an_error_before_serving(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        uner(["serve", "--model", str(tmp_path / "nope.gguf")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.startswith("Error: ") and "Traceback" not in err
    looks_like_a_model = tmp_path / "m.gguf"
    looks_like_a_model.write_bytes(b"GGUF" + b"\0" * 64)  # the port is taken before the model would load
    taken = bind("127.0.0.1", 0)
    try:
        with pytest.raises(SystemExit) as exit_info:
            uner(["serve", "--model", str(looks_like_a_model), "--port", str(taken.getsockname()[1])])
        err = capsys.readouterr().err
        assert exit_info.value.code == 1 and err.startswith("Error: ")
    finally:
        taken.close()
