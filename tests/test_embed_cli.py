"""`corpusmap embed` / `merge` end to end: vectors on disk, resume after kill -9, refusal to mix parameters,
and one clear line with the right exit code for every bad input."""
from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import corpusmap
from conftest import EXAMPLE_CORPUS, cli, read_jsonl
from corpusmap.cli import main


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    """The first 240 eLife abstracts of the example corpus as a plain JSONL file."""
    lines = gzip.open(EXAMPLE_CORPUS, "rt").read().splitlines()[:240]
    path = tmp_path_factory.mktemp("corpus") / "elife240.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


FAST = ["--max-length", "64", "--batch-size", "8", "--shard-rows", "24"]


def embed_command(corpus, run, quiet=True):
    return [sys.executable, "-m", "corpusmap", *(["-q"] if quiet else []), "embed", str(corpus), "-o", str(run),
            *FAST]


def shard_bytes(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run / "embeddings").glob("shard-*.npy"))}


def test_embed_writes_vectors_equal_to_the_encoder_and_load_run_reads_them(small_corpus, tmp_path):
    from corpusmap.encoders import TransformerEncoder

    run = tmp_path / "run"
    result = cli("embed", small_corpus, "-o", run, *FAST)
    assert result.exit_code == 0, result.output
    manifest = json.loads((run / "embeddings" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["n"] == 240 and manifest["dim"] == 384
    assert manifest["n_shards"] == 10 and len(manifest["shards"]) == 10
    assert manifest["model"] == "all-MiniLM-L6-v2" and manifest["max_length"] == 64
    assert manifest["truncated"] > 0 and "torch" in manifest["stage"]["versions"]
    loaded = corpusmap.load_run(run)
    vectors = loaded.vectors
    assert vectors.shape == (240, 384)
    assert isinstance(vectors.shard_array(vectors.shards[0]), np.memmap)
    texts = loaded.read_corpus(["text"]).column("text").to_pylist()
    with pytest.raises(corpusmap.errors.CorpusmapError, match="has no column 'nosuch'; columns: id, text"):
        loaded.read_corpus(["id", "nosuch"])  # (pyarrow alone returns the id column without a word)
    direct = TransformerEncoder("all-MiniLM-L6-v2", max_length=64, batch_size=8, device="cpu").encode(texts)
    np.testing.assert_allclose(vectors.to_numpy(), direct.vectors, atol=2e-5)
    np.testing.assert_array_equal(vectors.take(np.array([239, 0, 100])), vectors.to_numpy()[[239, 0, 100]])
    assert manifest["truncated"] == direct.truncated


def test_kill_and_resume_gives_byte_identical_vectors(small_corpus, tmp_path):
    reference = tmp_path / "uninterrupted"
    subprocess.run(embed_command(small_corpus, reference), check=True, timeout=600)

    run = tmp_path / "killed"
    process = subprocess.Popen(embed_command(small_corpus, run), start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list((run / "embeddings").glob("shard-*.json"))) < 2:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done_before = len(list((run / "embeddings").glob("shard-*.json")))
    assert 2 <= done_before < 10, "the kill should land mid-run"
    assert not json.loads((run / "embeddings" / "manifest.json").read_text())["complete"]
    with pytest.raises(corpusmap.errors.CorpusmapError, match="incomplete"):
        corpusmap.load_run(run).vectors

    finished = subprocess.run(embed_command(small_corpus, run, quiet=False), capture_output=True, text=True,
                              timeout=600)
    assert finished.returncode == 0, finished.stderr
    assert f"{done_before} of 10 shards already done" in finished.stderr
    assert shard_bytes(run) == shard_bytes(reference)


def test_rerun_with_other_parameters_is_refused_unless_overwrite(small_corpus, tmp_path):
    run = tmp_path / "run"
    assert cli("-q", "embed", small_corpus, "-o", run, "--model", "tfidf", "--dim", "20").exit_code == 0
    first = shard_bytes(run)
    again = cli("-q", "embed", small_corpus, "-o", run, "--model", "tfidf", "--dim", "20")
    assert again.exit_code == 0 and shard_bytes(run) == first
    changed = cli("-q", "embed", small_corpus, "-o", run, "--model", "tfidf", "--dim", "30")
    assert changed.exit_code == 1 and "other parameters (dim 20 -> 30)" in changed.output
    assert shard_bytes(run) == first
    other_filter = cli("-q", "embed", small_corpus, "-o", run, "--model", "tfidf", "--dim", "20",
                       "--min-chars", "900")
    assert other_filter.exit_code == 1 and "--overwrite" in other_filter.output
    replaced = cli("-q", "embed", small_corpus, "-o", run, "--model", "tfidf", "--dim", "30", "--overwrite")
    assert replaced.exit_code == 0
    assert corpusmap.load_run(run).vectors.shape == (240, 30)


def test_a_corrupt_shard_is_named_by_merge_and_re_encoded_by_embed(small_corpus, tmp_path):
    run = tmp_path / "run"
    args = ["-q", "embed", small_corpus, "-o", run, "--model", "tfidf", "--dim", "16", "--shard-rows", "50"]
    assert cli(*args).exit_code == 0
    good = shard_bytes(run)
    shard = run / "embeddings" / "shard-00002.npy"
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF
    shard.write_bytes(bytes(data))
    merged = cli("merge", run)
    assert merged.exit_code == 1 and "shard-00002.npy fails its checksum" in merged.output
    assert cli(*args).exit_code == 0
    assert shard_bytes(run) == good
    assert cli("-q", "merge", run).exit_code == 0


def test_a_damaged_manifest_is_rebuilt_from_the_shard_receipts(small_corpus, tmp_path):
    """embeddings/manifest.json cut short: the same embed command writes it again from the shards' receipts (no
    shard re-encoded), with the fingerprint it had, so nothing computed from the vectors is stale."""
    run = tmp_path / "run"
    args = ["embed", small_corpus, "-o", run, "--model", "tfidf", "--dim", "16", "--shard-rows", "50"]
    assert cli("-q", *args).exit_code == 0
    manifest = run / "embeddings" / "manifest.json"
    good, shards = json.loads(manifest.read_text()), shard_bytes(run)
    times = {p: p.stat().st_mtime_ns for p in (run / "embeddings").glob("shard-*.npy")}
    manifest.write_bytes(manifest.read_bytes()[:-10])
    damaged = cli("neighbors", run)
    assert damaged.exit_code == 1 and "manifest.json is damaged" in damaged.output
    again = cli(*args)
    assert again.exit_code == 0, again.output
    rebuilt = json.loads(manifest.read_text())
    assert rebuilt["complete"] and rebuilt["stage"]["fingerprint"] == good["stage"]["fingerprint"]
    assert shard_bytes(run) == shards and times == {p: p.stat().st_mtime_ns for p in times}


def test_job_array_workers_fill_one_run(small_corpus, tmp_path):
    run = tmp_path / "run"
    common = ["-q", "embed", small_corpus, "-o", run, "--model", "tfidf", "--dim", "16", "--shard-rows", "50"]
    assert cli(*common, "--shard", "1/2").exit_code == 0
    assert not corpusmap.load_run(run).has_vectors()
    incomplete = cli("merge", run)
    assert incomplete.exit_code == 1 and "shard-00000" in incomplete.output
    assert cli(*common, "--shard", "0/2").exit_code == 0
    single = tmp_path / "single"
    assert cli("-q", "embed", small_corpus, "-o", single, "--model", "tfidf", "--dim", "16",
               "--shard-rows", "50").exit_code == 0
    assert shard_bytes(run) == shard_bytes(single)


def test_array_tasks_without_shards_fit_once_and_the_others_load_it(small_corpus, tmp_path, caplog):
    """More tasks than shards: the first task to run fits the TF-IDF model, every later one (with or without a
    shard) loads that fit instead of removing and fitting it again."""
    import logging

    run = tmp_path / "run"
    common = ["embed", small_corpus, "-o", run, "--model", "tfidf", "--dim", "16"]
    assert cli("-q", *common, "--prepare-only").exit_code == 0
    fits = []
    for task in (2, 1, 0):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="corpusmap"):
            assert cli(*common, "--shard", f"{task}/3").exit_code == 0
        fits.append(any("fitting on" in r.getMessage() for r in caplog.records))
    assert fits == [True, False, False]
    single = tmp_path / "single"
    assert cli("-q", "embed", small_corpus, "-o", single, "--model", "tfidf", "--dim", "16").exit_code == 0
    assert shard_bytes(run) == shard_bytes(single)


def _truncated_xml(tmp: Path, request) -> Path:
    """The real MEDLINE sample (../shared/data) cut in the middle of a record."""
    pubmed_dir = request.getfixturevalue("pubmed_dir")
    data = gzip.open(pubmed_dir / "medline16n0902_sample.xml.gz").read()[:200_000]
    path = tmp / "broken.xml"
    path.write_bytes(data)
    return path


def _truncated_pubmed_of_example(tmp: Path) -> Path:
    """The first 50 example abstracts written as a PubmedArticleSet (the annual-baseline layout), cut in the
    middle of a record."""
    from xml.sax.saxutils import escape

    articles = []
    for i, r in enumerate(read_jsonl(EXAMPLE_CORPUS)[:50]):
        articles.append(
            f"<PubmedArticle><MedlineCitation><PMID>{1000 + i}</PMID><Article><Journal><JournalIssue><PubDate>"
            f"<Year>{r['year']}</Year></PubDate></JournalIssue><Title>eLife</Title></Journal>"
            f"<ArticleTitle>{escape(r['title'])}</ArticleTitle><Abstract><AbstractText>{escape(r['abstract'])}"
            "</AbstractText></Abstract><Language>eng</Language></Article></MedlineCitation></PubmedArticle>")
    data = ('<?xml version="1.0" encoding="utf-8"?>\n<PubmedArticleSet>' + "\n".join(articles)
            + "</PubmedArticleSet>\n").encode()
    whole = tmp / "whole.xml"
    whole.write_bytes(data)
    from corpusmap.pubmed import iter_pubmed  # the file is valid PubMed XML before it is cut

    assert [r["abstract"] for r in iter_pubmed(whole)] == [" ".join(r["abstract"].split())
                                                           for r in read_jsonl(EXAMPLE_CORPUS)[:50]]
    path = tmp / "cut.xml"
    path.write_bytes(data[:len(data) * 2 // 3])
    return path


@pytest.mark.parametrize("case", ["missing", "format", "column", "no-text", "xml", "pubmed-cut", "model-name",
                                  "model-dir", "shard-flag", "chars-flag", "pooling-flag", "prepare-shard"])
def test_bad_inputs_exit_with_one_line(case, small_corpus, request, tmp_path):
    run = tmp_path / "run"
    inputs, extra, code, message = {
        "missing": (lambda: [tmp_path / "nope.jsonl"], [], 1, "no such file"),
        "format": (lambda: [tmp_path / "a.docx"], [], 1, "unknown format"),
        "column": (lambda: [small_corpus], ["--text-col", "body"], 2, "column 'body' (--text-col) not in"),
        "no-text": (lambda: [tmp_path / "empty.csv"], [], 1, f"no abstracts with text in {tmp_path / 'empty.csv'}"),
        "xml": (lambda: [_truncated_xml(tmp_path, request)], [], 1, "broken.xml"),
        "pubmed-cut": (lambda: [_truncated_pubmed_of_example(tmp_path)], [], 1, "cut.xml"),
        "model-name": (lambda: [small_corpus], ["--model", "nosuchorg/no-such-model-xyz"], 1, "cannot load model"),
        "model-dir": (lambda: [small_corpus], ["--model", str(tmp_path)], 1, "no model in that folder"),
        "shard-flag": (lambda: [small_corpus], ["--shard", "3/2"], 2, "--shard takes I/N"),
        "chars-flag": (lambda: [small_corpus], ["--min-chars", "10", "--max-chars", "5"], 2, "--max-chars"),
        "pooling-flag": (lambda: [small_corpus], ["--pooling", "max"], 2, "--pooling"),
        "prepare-shard": (lambda: [small_corpus], ["--prepare-only", "--shard", "1/3"], 2,
                          "--shard: --prepare-only only reads the inputs"),
    }[case]
    inputs = inputs()  # only the "xml" case needs ../shared/data
    (tmp_path / "a.docx").write_text("x")
    (tmp_path / "empty.csv").write_text("id,abstract\n1,\n2,  \n")
    result = cli("embed", *inputs, "-o", run, *extra)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert len([l for l in result.output.splitlines() if l.strip()]) <= 3  # usage lines + one error line
    assert not (run / "embeddings" / "manifest.json").exists()
    if not case.startswith("model"):  # the corpus could not be read: the new run folder is not left behind
        assert not run.exists(), sorted(run.rglob("*"))


def test_fit_from_puts_a_second_corpus_in_the_first_runs_tfidf_space(small_corpus, example_tfidf_run, tmp_path):
    """`--fit-from RUN` copies RUN's TF-IDF fit (here fitted on the whole example corpus) instead of fitting on the
    new corpus (240 of its abstracts): the vectors are RUN's fit applied to the new texts (what
    `map RUN --add NEW_RUN` needs); a different fit on resume is refused."""
    from corpusmap.encoders import TfidfEncoder

    reference = example_tfidf_run
    new = tmp_path / "new"
    r = cli("embed", small_corpus, "-o", new, "--model", "tfidf", "--fit-from", reference, "--quiet")
    assert r.exit_code == 0, r.output
    for name in ("vocabulary.json", "idf.npy", "components.npy"):
        source, copy = reference / "embeddings/tfidf" / name, new / "embeddings/tfidf" / name
        assert copy.read_bytes() == source.read_bytes()
    fit = TfidfEncoder()
    assert fit.load(reference / "embeddings/tfidf")
    run = corpusmap.load_run(new)
    texts = run.read_corpus(["text"]).column("text").to_pylist()
    np.testing.assert_array_equal(run.vectors.to_numpy(), fit.encode(texts).vectors)
    assert run.vectors.shape[1] == corpusmap.load_run(reference).vectors.shape[1]
    own = tmp_path / "own"  # without --fit-from the fit comes from the new corpus: another space
    assert cli("embed", small_corpus, "-o", own, "--model", "tfidf", "--quiet").exit_code == 0
    vocabulary = "embeddings/tfidf/vocabulary.json"
    assert (own / vocabulary).read_bytes() != (new / vocabulary).read_bytes()
    r = cli("embed", small_corpus, "-o", new, "--model", "tfidf", "--fit-from", own, "--quiet")
    assert r.exit_code == 1 and "fit_sha256" in r.output and "--overwrite" in r.output


def test_fit_from_errors(small_corpus, tmp_path):
    r = cli("embed", small_corpus, "-o", tmp_path / "a", "--fit-from", tmp_path, "--quiet")
    assert r.exit_code == 2 and "--model tfidf only" in r.output
    r = cli("embed", small_corpus, "-o", tmp_path / "b", "--model", "tfidf", "--fit-from", tmp_path, "--quiet")
    assert r.exit_code == 1 and "no tfidf fit there" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before anything is written


def test_fit_from_accepts_the_fits_own_settings_and_refuses_others(small_corpus, tmp_path):
    """--dim, --seed and --fit-rows cannot change a reused fit: given as that fit has them they are accepted (a
    script may pass them to every run), given otherwise refused with the fit's values."""
    base = tmp_path / "base"
    assert cli("embed", small_corpus, "-o", base, "--model", "tfidf", "--dim", "20", "--seed", "3", "-q").exit_code == 0
    same = cli("embed", small_corpus, "-o", tmp_path / "same", "--model", "tfidf", "--fit-from", base,
               "--dim", "20", "--seed", "3", "-q")
    assert same.exit_code == 0, same.output
    assert corpusmap.load_run(tmp_path / "same").vectors.shape[1] == 20
    other = cli("embed", small_corpus, "-o", tmp_path / "other", "--model", "tfidf", "--fit-from", base,
                "--dim", "30", "--seed", "3")
    assert other.exit_code == 2 and "--dim: --fit-from reuses" in other.output and "(dim 20, seed 3" in other.output
    assert not (tmp_path / "other").exists()


def test_a_lost_or_damaged_tfidf_fit_is_found(small_corpus, tmp_path):
    """The vectors record their fit's checksums: a lost fit makes them not current and embed fits it again (the
    same bytes, the shards kept); a damaged one is refused by --fit-from before it gives other vectors."""
    run, fit = tmp_path / "run", tmp_path / "run" / "embeddings" / "tfidf"
    cli("embed", small_corpus, "-o", run, "--model", "tfidf", "--dim", "20", "-q", ok=True)
    stored = {p.name: p.read_bytes() for p in fit.iterdir()}
    shard = run / "embeddings" / "shard-00000.npy"
    written = shard.stat().st_mtime_ns
    (fit / "idf.npy").unlink()
    from corpusmap.embed import EmbedOptions, EmbedParams, EmbedStage
    from corpusmap.run import Run

    params = EmbedParams(inputs=(str(small_corpus),), options=EmbedOptions(model="tfidf", dim=20))
    assert EmbedStage().status(Run(run), params).reason.endswith("embeddings/tfidf is missing")
    assert cli("embed", small_corpus, "-o", run, "--model", "tfidf", "--dim", "20", "-q").exit_code == 0
    assert {p.name: p.read_bytes() for p in fit.iterdir()} == stored
    assert shard.stat().st_mtime_ns == written and EmbedStage().status(Run(run), params).current
    components = np.load(fit / "components.npy")
    components[0] = 0
    np.save(fit / "components.npy", components)
    refused = cli("embed", small_corpus, "-o", tmp_path / "other", "--model", "tfidf", "--fit-from", run)
    assert refused.exit_code == 1 and "differs from the one its vectors were made with (damaged)" in refused.output
    assert not (tmp_path / "other").exists()


def test_every_command_has_help():
    result = cli("--help")
    assert result.exit_code == 0
    for name in main.list_commands(None):
        sub = cli(name, "--help")
        assert sub.exit_code == 0 and len(sub.output) > 100, name


def test_stage_without_a_run_names_embed(tmp_path):
    result = cli("merge", tmp_path / "nowhere")
    assert result.exit_code == 1 and "corpusmap embed" in result.output


def test_two_device_workers_match_a_single_process_and_resume_after_kill(small_corpus, tmp_path):
    """One worker process per device (here two CPU workers): same bytes as one process; kill -9 mid-run and
    the rerun finishes without redoing or duplicating shards."""
    reference = tmp_path / "single"
    subprocess.run(embed_command(small_corpus, reference), check=True, timeout=600)
    run = tmp_path / "multi"
    command = embed_command(small_corpus, run) + ["--devices", "cpu,cpu"]
    process = subprocess.Popen(command, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list((run / "embeddings").glob("shard-*.json"))) < 3:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    receipts = {p.name: p.read_text() for p in (run / "embeddings").glob("shard-*.json")}
    assert 3 <= len(receipts) < 10
    subprocess.run(command, check=True, timeout=600)
    for name, text in receipts.items():  # finished shards were not redone
        assert (run / "embeddings" / name).read_text() == text
    assert shard_bytes(run) == shard_bytes(reference)
    manifest = json.loads((run / "embeddings" / "manifest.json").read_text())
    assert manifest["complete"] and [s["index"] for s in manifest["shards"]] == list(range(10))


def test_year_values_that_are_not_years_are_a_warning_even_when_quiet(tmp_path, caplog):
    rows = [{"abstract": f"an abstract about cells number {i}", "year": 2015} for i in range(30)]
    rows[3]["year"], rows[7]["year"] = "abc", True
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = cli("-q", "embed", path, "-o", tmp_path / "run", "--model", "tfidf", "--dim", "5")
    assert result.exit_code == 0, result.output
    warning = next(r for r in caplog.records if "not a year" in r.getMessage())
    assert warning.levelname == "WARNING" and warning.getMessage().startswith("warning: corpus: 2 rows have a year")
    assert "--year-col" in warning.getMessage()


@pytest.mark.parametrize("env, expected", [
    ({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "5"}, (2, 4)),
    ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "0",
      "SLURM_ARRAY_TASK_STEP": "2"}, (2, 3)),  # --array=0-4:2: tasks 0, 2, 4 are workers 0, 1, 2
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "0"}, None),  # a gap
    ({"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "3"}, "SLURM_ARRAY_TASK_ID='x' is not a whole number"),
    ({}, (0, 1)),
])
def test_a_slurm_array_task_is_its_worker(monkeypatch, env, expected):
    from corpusmap.embed import parse_worker
    from corpusmap.errors import UsageProblem

    for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_STEP"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if expected is None or isinstance(expected, str):
        with pytest.raises(UsageProblem, match=expected or "not one of the array's workers.*--shard I/N"):
            parse_worker(None)
    else:
        assert parse_worker(None) == expected


@pytest.mark.parametrize("args, message", [
    (["--model", "tfidf", "--pooling", "cls", "--dtype", "float16"], "--pooling, --dtype: for transformer models"),
    (["--model", "tfidf", "--batch-size", "7"], "--batch-size: for transformer models, which --model tfidf is not"),
    (["--model", "tfidf", "--device", "cuda"], "--device: --model tfidf runs on the CPU"),
    (["--dim", "20"], "--dim: for --model tfidf (a fitted encoder)"),
    (["--model", "tfidf", "--tokenizer-workers", "2"], "--tokenizer-workers: --model tfidf runs on the CPU"),
])
def test_options_of_another_encoder_are_refused(small_corpus, tmp_path, args, message):
    result = cli("embed", small_corpus, "-o", tmp_path / "run", *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "run").exists()
