"""Push (up to the Hub's boundary) and pull (from the Hub cache).

The Hub cannot be reached from these machines: push is tested against a recording stand-in
for ``HfApi`` (the commit's operations are the real ``CommitOperationAdd`` objects), and pull
against a Hugging Face cache laid out as huggingface_hub writes it, with ``HF_HUB_OFFLINE=1``.
The live round trip runs only with a token, a repo to write and network.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.test_cli import assert_one_line_error, run
from uner.manifest import sha256_file
from uner.toolkit.cli import main as uner_export
from uner.toolkit.errors import PublishError
from uner.toolkit.publish import plan_push, push

pytestmark = pytest.mark.usefixtures("own_uner_cache")


class RecordingHub:
    """Stands in for ``huggingface_hub.HfApi`` at the network boundary."""

    def __init__(self, existing: list[str] = (), published: dict | None = None, folder: Path | None = None) -> None:
        self.existing = list(existing)
        self.published, self.folder = published, folder  # the repo's manifest.json, where to "download" it
        self.repos, self.commits = [], []

    def hf_hub_download(self, repo_id, filename):
        path = self.folder / filename
        path.write_text(json.dumps(self.published))
        return str(path)

    def create_repo(self, repo_id, private=None, exist_ok=False):
        self.repos.append((repo_id, private))

    def list_repo_files(self, repo_id):
        return list(self.existing)

    def create_commit(self, repo_id, operations, commit_message):
        self.commits.append((repo_id, list(operations), commit_message))
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/0123"})()


# -- push --------------------------------------------------------------------------------------


def test_dry_run_prints_the_commit_and_card_without_network(tiny_export, capsys, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", lambda *a, **k: pytest.fail("network used in a dry run"))
    code, out, _ = run(uner_export, ["push", tiny_export, "--repo-id", "me/tiny-uner", "--dry-run", "-q"], capsys)
    assert code == 0
    assert "repo: me/tiny-uner (public), one commit, " in out
    size = (tiny_export / "gguf" / "tiny.Q8_0.gguf").stat().st_size
    assert f"{size:>14,d}  gguf/tiny.Q8_0.gguf" in out
    assert "README.md" in out and "--- README.md ---" in out and "license: cc-by-nc-4.0" in out


def test_the_model_card_follows_hub_conventions(tiny_export):
    from huggingface_hub import ModelCard

    plan = plan_push(tiny_export, "me/tiny-uner")
    front = yaml.safe_load(plan.card.split("---\n")[1])
    assert front["license"] == "cc-by-nc-4.0" and front["base_model"] == "me/tiny-base"
    assert front["pipeline_tag"] == "token-classification"
    assert {"gguf", "onnx", "ner", "token-classification"} <= set(front["tags"])
    assert ModelCard(plan.card).data.license == "cc-by-nc-4.0"  # huggingface_hub reads it back
    index = json.loads((tiny_export / "manifest.json").read_text())
    for name, entry in index["variants"].items():
        row = next(line for line in plan.card.splitlines() if line.startswith(f"| `{name}`"))
        main = entry["path"] if entry["path"] in index["files"] else "onnx-fp32/model.onnx.data"
        assert index["files"][main]["sha256"][:16] in row and "| 0.00 [0.0, 0.0] | +0.00 [+0.00, +0.00] | 13 |" in row
        assert f"| {entry['bench']['bits_per_weight']:.2f} |" in row
    assert "inconclusive" in plan.card and "95 % interval" in plan.card  # the gate's rule is stated
    assert "What describes {label} in the text? ASSISTANT:" in plan.card
    assert "uner pull me/tiny-uner --variant q8_0" in plan.card  # the smallest variant
    assert "llama-cli -m tiny.Q8_0.gguf" in plan.card


def test_push_uploads_every_file_in_one_commit_and_never_shows_the_token(tiny_export, capsys, monkeypatch, caplog):
    monkeypatch.setenv("HF_TOKEN", "hf_secretsecretsecret")
    hub = RecordingHub()
    monkeypatch.setattr("huggingface_hub.HfApi", lambda *a, **k: hub)
    code, out, err = run(uner_export, ["push", tiny_export, "--repo-id", "me/tiny-uner", "--private"], capsys)
    assert code == 0 and out.strip() == "https://huggingface.co/me/tiny-uner/commit/0123"
    assert hub.repos == [("me/tiny-uner", True)] and len(hub.commits) == 1
    operations = {op.path_in_repo: op for op in hub.commits[0][1]}
    index = json.loads((tiny_export / "manifest.json").read_text())
    assert set(operations) == set(index["files"]) | {"README.md", "manifest.json"}
    assert operations["gguf/tiny.Q8_0.gguf"].path_or_fileobj == str(tiny_export / "gguf" / "tiny.Q8_0.gguf")
    pushed_index = json.loads(operations["manifest.json"].path_or_fileobj)
    assert pushed_index["files"] == index["files"]
    assert "hf_secret" not in out + err + caplog.text


def test_push_refuses_to_overwrite_repo_files_unless_forced(tiny_export, capsys, monkeypatch):
    hub = RecordingHub(existing=[".gitattributes", "README.md", "gguf/tiny.Q8_0.gguf"])
    monkeypatch.setattr("huggingface_hub.HfApi", lambda *a, **k: hub)
    code, _, err = run(uner_export, ["push", tiny_export, "--repo-id", "me/tiny-uner", "-q"], capsys)
    assert_one_line_error(code, err, "existing README.md, gguf/tiny.Q8_0.gguf: pass --force")
    assert hub.commits == []
    code, _, _ = run(uner_export, ["push", tiny_export, "--repo-id", "me/tiny-uner", "--force", "-q"], capsys)
    assert code == 0 and len(hub.commits) == 1


def test_push_of_chosen_variants_uploads_only_theirs(tiny_export):
    hub = RecordingHub()
    push(plan_push(tiny_export, "me/tiny-uner", only=["q8_0"]), api=hub)
    paths = {op.path_in_repo for op in hub.commits[0][1]}
    assert paths == {"gguf/tiny.Q8_0.gguf", "manifest.json", "README.md"}
    pushed = json.loads(next(op for op in hub.commits[0][1] if op.path_in_repo == "manifest.json").path_or_fileobj)
    assert list(pushed["variants"]) == ["q8_0"] and list(pushed["files"]) == ["gguf/tiny.Q8_0.gguf"]
    with pytest.raises(PublishError, match="got q9"):
        plan_push(tiny_export, "me/tiny-uner", only=["q9"])


def test_pushing_one_variant_keeps_the_others_in_the_repo_index_and_card(tiny_export, tmp_path):
    first = RecordingHub()
    push(plan_push(tiny_export, "me/tiny-uner"), api=first)
    operations = first.commits[0][1]
    published = json.loads(next(op for op in operations if op.path_in_repo == "manifest.json").path_or_fileobj)
    hub = RecordingHub(existing=[op.path_in_repo for op in operations], published=published, folder=tmp_path)
    push(plan_push(tiny_export, "me/tiny-uner", only=["q8_0"]), force=True, api=hub)
    pushed = {op.path_in_repo: op for op in hub.commits[0][1]}
    assert set(pushed) == {"gguf/tiny.Q8_0.gguf", "manifest.json", "README.md"}
    index = json.loads(pushed["manifest.json"].path_or_fileobj)
    assert list(index["variants"]) == ["f16", "onnx-fp32", "q8_0"] and index["files"] == published["files"]
    card = pushed["README.md"].path_or_fileobj.decode()
    assert all(f"| `{name}` |" in card for name in ("f16", "q8_0", "onnx-fp32"))


def test_a_malformed_repo_id_is_refused_before_any_work(tiny_export, capsys):
    code, _, err = run(uner_export, ["push", tiny_export, "--repo-id", "not a repo", "--dry-run"], capsys)
    assert_one_line_error(code, err, "expected a Hub repo id like")


def test_a_corrupted_export_is_never_pushed(export_copy):
    (export_copy / "onnx-fp32" / "config.json").write_text("{}")
    with pytest.raises(PublishError, match="onnx-fp32/config.json: size"):
        push(plan_push(export_copy, "me/tiny-uner"), api=RecordingHub())


# -- pull --------------------------------------------------------------------------------------

COMMIT = "c0ffee" + "0" * 34


def hub_cache(export: Path, cache: Path, repo_id: str, variants: list[str]) -> Path:
    """What ``uner pull`` of ``variants`` leaves in a Hugging Face cache: the pushed manifest
    and those variants' files in ``snapshots/<commit>/``, ``refs/main`` naming the commit."""
    plan = plan_push(export, repo_id)
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    index = json.loads(next(f for f in plan.files if f.path_in_repo == "manifest.json").content)
    for name in ["manifest.json"] + [f for v in variants for f in index["variants"][v]["files"]]:
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name == "manifest.json":
            target.write_text(json.dumps(index))
        else:
            shutil.copy(export / name, target)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


def run_offline(args: list[str], cache: Path, uner_cache: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(cache),
        "UNER_CACHE": str(uner_cache),
        "PYTHONPATH": str(ROOT),
    }
    code = "import sys; from uner.cli import main; main(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300)


def test_a_pulled_variant_works_offline_and_alone(tiny_export, tmp_path):
    snapshot = hub_cache(tiny_export, tmp_path / "hub", "me/tiny-uner", ["q8_0"])
    done = run_offline(["pull", "me/tiny-uner", "--variant", "q8_0", "-q"], tmp_path / "hub", tmp_path / "uner")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(snapshot / "gguf" / "tiny.Q8_0.gguf")
    done = run_offline(
        [
            "extract",
            "--model",
            "me/tiny-uner:q8_0",
            "-l",
            "person",
            "-t",
            "Obama met Merkel.",
            "--json",
            "-q",
            "--max-new-tokens",
            "4",
        ],
        tmp_path / "hub",
        tmp_path / "uner",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["text"] == "Obama met Merkel."
    done = run_offline(["pull", "me/tiny-uner", "--variant", "onnx-fp32", "-q"], tmp_path / "hub", tmp_path / "uner")
    assert done.returncode == 1 and "in the local Hub cache" in done.stderr  # never fetched: not there


def test_a_tampered_download_is_a_clear_error(tiny_export, tmp_path):
    snapshot = hub_cache(tiny_export, tmp_path / "hub", "me/tiny-uner", ["onnx-fp32"])
    assert run_offline(["pull", "me/tiny-uner:onnx-fp32", "-q"], tmp_path / "hub", tmp_path / "uner").returncode == 0
    config = snapshot / "onnx-fp32" / "config.json"
    config.write_text(config.read_text().replace("2048", "4096"))  # same size, other bytes
    done = run_offline(["pull", "me/tiny-uner", "--variant", "onnx-fp32", "-q"], tmp_path / "hub", tmp_path / "uner")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "Error: expected onnx-fp32/config.json to match the repo's manifest, got sha256" in done.stderr
    assert "uner pull --force" in done.stderr


def test_an_unknown_variant_lists_the_published_ones(tiny_export, tmp_path):
    hub_cache(tiny_export, tmp_path / "hub", "me/tiny-uner", [])
    done = run_offline(["pull", "me/tiny-uner", "--variant", "q2_k", "-q"], tmp_path / "hub", tmp_path / "uner")
    assert done.returncode == 1 and "among f16, q8_0, onnx-fp32, got 'q2_k'" in done.stderr


def test_a_repo_of_variants_without_a_variant_names_them(tiny_export, tmp_path):
    hub_cache(tiny_export, tmp_path / "hub", "me/tiny-uner", [])
    done = run_offline(
        ["extract", "--model", "me/tiny-uner", "-l", "person", "-t", "Obama.", "-q"],
        tmp_path / "hub",
        tmp_path / "uner",
    )
    assert done.returncode == 1 and "e.g. me/tiny-uner:f16 (published: f16, q8_0, onnx-fp32)" in done.stderr


def test_verification_is_remembered_until_the_file_changes(tiny_export, tmp_path, monkeypatch):
    import uner.manifest
    from uner.cache import CheckedFiles

    snapshot = hub_cache(tiny_export, tmp_path / "hub", "me/tiny-uner", ["f16"])
    monkeypatch.setenv("UNER_CACHE", str(tmp_path / "uner"))
    hashed = []
    real_hash = uner.manifest.sha256_file
    monkeypatch.setattr(uner.manifest, "sha256_file", lambda path: hashed.append(path) or real_hash(path))
    index = json.loads((snapshot / "manifest.json").read_text())
    name = "gguf/tiny.F16.gguf"
    checked = CheckedFiles()
    assert checked.check(snapshot / name, index["files"][name], name) is None and len(hashed) == 1
    checked.save()
    assert CheckedFiles().check(snapshot / name, index["files"][name], name) is None and len(hashed) == 1  # remembered
    with (snapshot / name).open("r+b") as handle:
        handle.seek(-1, 2)
        handle.write(b"\x7f")
    os.utime(snapshot / name, ns=(1, 1))
    assert "sha256" in CheckedFiles().check(snapshot / name, index["files"][name], name).reason and len(hashed) == 2


# -- the live round trip ---------------------------------------------------------------------


def _live_reason() -> str | None:
    if not (os.environ.get("HF_TOKEN") and os.environ.get("UNER_HUB_TEST_REPO")):
        return "needs HF_TOKEN and UNER_HUB_TEST_REPO (a repo id the token may write)"
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=5).close()
    except OSError:
        return "huggingface.co is unreachable from this machine"
    return None


def test_live_push_then_pull_round_trip(tiny_export, tmp_path):
    if reason := _live_reason():
        print(f"live Hub round trip skipped: {reason}")
        pytest.skip(reason)
    repo_id = os.environ["UNER_HUB_TEST_REPO"]
    push(plan_push(tiny_export, repo_id), private=True, force=True)
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "UNER_CACHE": str(tmp_path / "uner"),
        "PYTHONPATH": str(ROOT),
    }
    code = "import sys; from uner.cli import main; main(sys.argv[1:])"
    done = subprocess.run(
        [sys.executable, "-c", code, "pull", repo_id, "--variant", "q8_0", "-q"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert sha256_file(Path(done.stdout.strip())) == sha256_file(tiny_export / "gguf" / "tiny.Q8_0.gguf")
