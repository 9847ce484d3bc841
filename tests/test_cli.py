"""The real ``uner`` / ``uner-export`` commands on the small fixtures, good input and bad."""

import json
import shutil
from pathlib import Path

import pytest

from uner.cli import main as uner
from uner.toolkit.cli import main as uner_export
from uner.toolkit.files import sha256_file


def run(main, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def assert_one_line_error(code, err, fragment):
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert fragment in lines[0]
    assert "Traceback" not in err


def test_export_writes_gguf_ladder_and_manifest(tiny_spm_hf, tmp_path, capsys):
    code, out, _ = run(
        uner_export, ["gguf", tiny_spm_hf, "--out", tmp_path, "--outtype", "f16", "--quant", "q8_0,q4_0", "-q"], capsys
    )
    assert code == 0
    names = ["tiny-spm-llama.F16.gguf", "tiny-spm-llama.Q8_0.gguf", "tiny-spm-llama.Q4_0.gguf"]
    assert [Path(line).name for line in out.split()] == [*names, "manifest.json"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    for name in names:
        entry = manifest["files"][name]
        assert entry == {"size": (tmp_path / name).stat().st_size, "sha256": sha256_file(tmp_path / name)}
    assert not list(tmp_path.glob("*.partial"))


def test_extract_prints_json_with_raw_answers(smollm2_ggufs, capsys):
    argv = [
        "extract",
        "-m",
        smollm2_ggufs["q4_k_m"],
        "-l",
        "person,location",
        "--json",
        "--raw",
        "--max-new-tokens",
        "48",
        "-t",
        "Barack Obama visited Paris.",
        "-t",
        "Angela Merkel lives in Berlin.",
    ]
    code, out, _ = run(uner, argv, capsys)
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in records] == ["Barack Obama visited Paris.", "Angela Merkel lives in Berlin."]
    for record in records:
        assert set(record) == {"text", "entities", "raw", "ungrounded"} and set(record["raw"]) == {"person", "location"}
        for entity in record["entities"]:
            assert record["text"][entity["start"] : entity["end"]] == entity["text"]


def test_extract_reads_texts_from_a_file(smollm2_ggufs, tmp_path, capsys):
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "Barack Obama visited Paris."}\n', encoding="utf-8")
    code, out, _ = run(
        uner, ["extract", "-m", smollm2_ggufs["q4_k_m"], "-l", "person", "-i", texts, "--max-new-tokens", "16"], capsys
    )
    assert code == 0 and out.startswith("Barack Obama visited Paris.\n")


def _copy_model(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def test_missing_source_folder_is_a_one_line_error(tmp_path, capsys):
    code, _, err = run(uner_export, ["gguf", tmp_path / "nope", "--out", tmp_path / "out"], capsys)
    assert_one_line_error(code, err, "does not exist")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("breakage", "fragment"),
    [
        ("no_config", "config.json"),
        ("not_llama", "LlamaForCausalLM, got MistralForCausalLM"),
        ("no_tokenizer", "tokenizer.model or tokenizer.json"),
        ("corrupt_safetensors", "truncated or corrupt"),
        ("garbage_safetensors", "safetensors header"),
        ("pickle_only", "--allow-pickle"),
    ],
)
def test_broken_checkpoints_fail_cleanly_and_write_nothing(tiny_spm_hf, tmp_path, capsys, breakage, fragment):
    model = _copy_model(tiny_spm_hf, tmp_path / "model")
    weights = model / "model.safetensors"
    if breakage == "no_config":
        (model / "config.json").unlink()
    elif breakage == "not_llama":
        config = json.loads((model / "config.json").read_text())
        (model / "config.json").write_text(json.dumps({**config, "architectures": ["MistralForCausalLM"]}))
    elif breakage == "no_tokenizer":
        (model / "tokenizer.model").unlink()
    elif breakage == "corrupt_safetensors":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif breakage == "garbage_safetensors":
        weights.write_bytes(b"\xff" * 64)
    elif breakage == "pickle_only":
        weights.rename(model / "pytorch_model.bin")
    code, _, err = run(uner_export, ["gguf", model, "--out", tmp_path / "out", "--quant", "q8_0"], capsys)
    assert_one_line_error(code, err, fragment)
    assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


def test_unknown_quant_type_fails_before_converting(tiny_spm_hf, tmp_path, capsys):
    code, _, err = run(uner_export, ["gguf", tiny_spm_hf, "--out", tmp_path, "--quant", "q8_0,q9_z"], capsys)
    assert_one_line_error(code, err, "q9_z")
    assert not list(tmp_path.glob("*.gguf"))


def test_existing_output_needs_force(tiny_spm_hf, tmp_path, capsys):
    existing = tmp_path / "tiny-spm-llama.F32.gguf"
    existing.write_bytes(b"keep me")
    code, _, err = run(uner_export, ["gguf", tiny_spm_hf, "--out", tmp_path, "--outtype", "f32"], capsys)
    assert_one_line_error(code, err, "--force")
    assert existing.read_bytes() == b"keep me"
    code, _, _ = run(uner_export, ["gguf", tiny_spm_hf, "--out", tmp_path, "--outtype", "f32", "--force", "-q"], capsys)
    assert code == 0 and existing.read_bytes()[:4] == b"GGUF"


def test_empty_label_list_is_an_error(smollm2_ggufs, capsys):
    code, _, err = run(uner, ["extract", "-m", smollm2_ggufs["q4_k_m"], "-l", " , ", "-t", "Paris"], capsys)
    assert_one_line_error(code, err, "at least one entity label")


def test_non_utf8_input_file_is_an_error(smollm2_ggufs, tmp_path, capsys):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("Café in Zürich".encode("latin-1"))
    code, _, err = run(uner, ["extract", "-m", smollm2_ggufs["q4_k_m"], "-l", "location", "-i", bad], capsys)
    assert_one_line_error(code, err, "UTF-8")


def test_missing_model_is_an_error(tmp_path, capsys):
    code, _, err = run(uner, ["extract", "-m", tmp_path / "missing.gguf", "-l", "person", "-t", "x"], capsys)
    assert_one_line_error(code, err, "does not exist")


def test_usage_error_exits_2(capsys):
    code, _, err = run(uner_export, ["gguf"], capsys)
    assert code == 2 and "Missing argument" in err


@pytest.mark.parametrize("main", [uner, uner_export])
def test_every_command_has_help(main, capsys):
    code, out, _ = run(main, ["--help"], capsys)
    assert code == 0
    # a command row starts right after the box edge; wrapped help text is indented
    commands = [line.split()[1] for line in out.splitlines() if line.startswith("│ ") and line[2].isalpha()]
    assert "version" in commands and ("extract" in commands or "gguf" in commands)
    for command in commands:
        code, sub_out, _ = run(main, [command, "--help"], capsys)
        assert code == 0 and "Usage" in sub_out


def test_a_corpus_is_streamed_to_json_lines_and_resumed_after_an_interruption(uniner_smol_ggufs, tmp_path, capsys):
    docs = tmp_path / "docs.jsonl"
    texts = {
        "a": "Barack Obama visited Paris.",
        "b": "Angela Merkel lives in Berlin.",
        "c": "Yoshua Bengio works in Montreal.",
        "d": "Marie Curie was born in Warsaw.",
    }
    docs.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in texts.items()), encoding="utf-8")
    labels = tmp_path / "labels.txt"
    labels.write_text("person\n# a comment\nlocation\n", encoding="utf-8")
    out = tmp_path / "out" / "entities.jsonl"
    argv = [
        "extract",
        "-m",
        uniner_smol_ggufs["q4_k_m"],
        "--labels-file",
        labels,
        "-i",
        docs,
        "-o",
        out,
        "--max-new-tokens",
        "24",
        "-q",
    ]
    code, _, err = run(uner, argv, capsys)
    assert code == 0, err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == ["a", "b", "c", "d"]
    for record in records:
        for entity in record["entities"]:
            assert texts[record["id"]][entity["start"] : entity["end"]] == entity["text"]
    assert any(e["label"] == "person" for r in records for e in r["entities"])
    # interrupted run: two lines done (one of them marked so a recompute would show), a third cut mid-write
    marked = dict(records[0], entities=[{"label": "marker", "text": "", "start": 0, "end": 0}])
    lines = [json.dumps(marked), json.dumps(records[1]), json.dumps(records[2])[:20]]
    out.write_text("\n".join(lines), encoding="utf-8")
    code, _, err = run(uner, argv, capsys)
    assert code == 0, err
    resumed = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in resumed] == ["a", "b", "c", "d"]
    assert resumed[0] == marked and resumed[2:] == records[2:]


def test_duplicate_document_ids_are_an_error_before_any_work(tmp_path, capsys):
    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"id": 1, "text": "a"}\n{"id": 1, "text": "b"}\n', encoding="utf-8")
    code, _, err = run(
        uner,
        ["extract", "-m", tmp_path / "missing.gguf", "-l", "person", "-i", docs, "-o", tmp_path / "o.jsonl"],
        capsys,
    )
    assert_one_line_error(code, err, "expected unique ids")
    assert not (tmp_path / "o.jsonl").exists()


def test_output_needs_an_input_file(smollm2_ggufs, tmp_path, capsys):
    code, _, err = run(
        uner, ["extract", "-m", smollm2_ggufs["q4_k_m"], "-l", "person", "-t", "x", "-o", tmp_path / "o.jsonl"], capsys
    )
    assert_one_line_error(code, err, "expected --output with an --input file")


@pytest.mark.parametrize(("embedding_type", "ggml_type"), [("f16", "F16"), ("iq4_nl", "IQ4_NL")])
def test_embedding_type_sets_the_embedding_and_output_tensors_of_quantized_files(
    tiny_spm_hf, tmp_path, capsys, embedding_type, ggml_type
):
    from gguf import GGMLQuantizationType, GGUFReader

    argv = [
        "gguf",
        tiny_spm_hf,
        "--out",
        tmp_path,
        "--outtype",
        "f32",
        "--quant",
        "q8_0",
        "--embedding-type",
        embedding_type,
        "-q",
    ]
    code, _, err = run(uner_export, argv, capsys)
    assert code == 0, err
    types = {t.name: t.tensor_type for t in GGUFReader(tmp_path / "tiny-spm-llama.Q8_0.gguf").tensors}
    assert types["token_embd.weight"] == types["output.weight"] == GGMLQuantizationType[ggml_type]
    assert types["blk.0.attn_q.weight"] == GGMLQuantizationType.Q8_0
    assert json.loads((tmp_path / "manifest.json").read_text())["embedding_type"] == embedding_type


def test_an_unknown_embedding_type_fails_before_converting(tiny_spm_hf, tmp_path, capsys):
    code, _, err = run(
        uner_export, ["gguf", tiny_spm_hf, "--out", tmp_path, "--quant", "q8_0", "--embedding-type", "q3"], capsys
    )
    assert_one_line_error(code, err, "expected an embedding type")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("flag", "expected"), [([], "f32"), (["--kv-cache", "f16"], "f16"), (["--kv-cache", "f32"], "f32")]
)
def test_extract_runs_f32_files_with_the_kv_cache_asked_for(tiny_spm_ggufs, capsys, monkeypatch, flag, expected):
    import uner.cli as cli

    seen = []
    real_load = cli.load
    monkeypatch.setattr(cli, "load", lambda *a, **k: seen.append(ner := real_load(*a, **k)) or ner)
    code, out, err = run(
        uner,
        ["extract", "-m", tiny_spm_ggufs["f32"], "-l", "person", "-t", "Paris", "--max-new-tokens", "4", "-q", *flag],
        capsys,
    )
    assert code == 0, err
    assert [ner.kv_cache_type for ner in seen] == [expected]


def test_recipe_help_lists_the_shipped_recipes(capsys):
    code, out, _ = run(uner_export, ["recipe", "--help"], capsys)
    assert code == 0
    for name in ("UniNER-7B-type", "UniNER-7B-definition", "UniNER-7B-type-sup", "UniNER-7B-all", "uniner-smol-135m"):
        assert name in out
