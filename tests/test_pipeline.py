"""`corpusmap run CONFIG.toml`: the plan, running the stages, skipping finished ones, and config errors."""
from __future__ import annotations

import gzip
import json

import pytest
from click.testing import CliRunner

from corpusmap.cli import main


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def config(shared_data, tmp_path):
    lines = gzip.open(shared_data / "acl_2016_2019.jsonl.gz", "rt").read().splitlines()[:600]
    (tmp_path / "acl600.jsonl").write_text("\n".join(lines) + "\n")
    path = tmp_path / "pipeline.toml"
    path.write_text("""
run = "out"
[embed]
inputs = ["acl600.jsonl"]
model = "tfidf"
dim = 24
min-chars = 100
[neighbors]
k = 12
""")
    return path


def test_dry_run_prints_the_commands(config, tmp_path):
    result = invoke("run", config, "--dry-run")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == (f"run: corpusmap embed {tmp_path / 'acl600.jsonl'} -o {tmp_path / 'out'} --model tfidf "
                        "--dim 24 --min-chars 100")
    assert lines[1] == f"run: corpusmap neighbors {tmp_path / 'out'} -k 12"
    assert not (tmp_path / "out").exists()


def test_run_executes_stages_and_skips_finished_ones(config, tmp_path):
    result = invoke("run", config)
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    manifest = json.loads((out / "embeddings" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["dim"] == 24
    assert json.loads((out / "knn" / "manifest.json").read_text())["k"] == 12
    again = invoke("run", config, "--dry-run")
    assert f"skip (done): corpusmap neighbors {out} -k 12" in again.output
    assert again.output.startswith("run: corpusmap embed")  # embedding resumes by itself: always asked


@pytest.mark.parametrize("text, message", [
    ('run = "x"\n[embed]\ninputs = ["a.jsonl"]\nbatchsize = 3\n', "[embed] has no option 'batchsize'"),
    ('run = "x"\n[mapz]\n', "unknown section(s) mapz"),
    ('[embed]\ninputs = ["a.jsonl"]\n', "needs the run directory"),
    ('run = "x"\n[embed\n', "not valid TOML"),
])
def test_config_errors(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = invoke("run", path, "--dry-run")
    assert result.exit_code in (1, 2) and message in result.output, result.output
