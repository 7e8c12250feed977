"""What the stage contract guarantees under faults: nothing is deleted before new inputs are read, one writer per
output, outputs appear as a whole, orphans of killed writers are cleaned up, and recorded checksums are verified
where the data is used. All on the bundled example corpus."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import EXAMPLE_CORPUS, cli, copy_run, run_commands
from corpusmap.run import Run

EMBED = ["embed", EXAMPLE_CORPUS, "--model", "tfidf", "--dim", "20", "--quiet"]
CORPUSMAP = [sys.executable, "-m", "corpusmap"]


def tree(folder: Path) -> dict:
    """Every file under ``folder`` (bookkeeping in .corpusmap aside) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".corpusmap" not in p.parts}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    run = tmp_path_factory.mktemp("contract") / "run"
    return run_commands(run, EMBED + ["-o", run], ["neighbors", run, "-k", "10", "--quiet"],
                        ["map", run, "--method", "pca", "--quiet"],
                        ["excess", run, "--target", "2015", "--target", "2016", "--no-figures", "--quiet"])


@pytest.fixture
def run(base, tmp_path):
    return copy_run(base, tmp_path)


def test_overwrite_reads_the_new_inputs_completely_before_deleting_anything(run, tmp_path):
    lines = [json.dumps({"abstract": f"a perfectly fine abstract about topic {i}", "year": 2015}) for i in range(50)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines[:40] + ['{"abstract": "cut short'] + lines[40:]) + "\n")
    before = tree(run)
    result = cli("embed", bad, "-o", run, "--model", "tfidf", "--dim", "20", "--overwrite", "--quiet")
    assert result.exit_code == 1 and "bad.jsonl:41" in result.output
    assert tree(run) == before


def test_two_writers_of_one_run_cannot_mix_their_outputs(run, tmp_path):
    shutil.rmtree(run)
    procs = [subprocess.Popen(CORPUSMAP + [str(a) for a in EMBED[:-1]] + ["-o", str(run), "--dim", dim, "-q"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for dim in ("20", "30")]
    outcomes = [(p.wait(timeout=300), p.stdout.read()) for p in procs]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 1], outcomes
    loser = next(out for code, out in outcomes if code == 1)
    assert "already holds vectors made with other parameters" in loser and "Traceback" not in loser
    manifest = json.loads((run / "embeddings" / "manifest.json").read_text())
    corpus = json.loads((run / "corpus.json").read_text())
    assert manifest["complete"] and manifest["corpus_sha256"] == corpus["sha256"]
    winner_dim = 20 if outcomes[0][0] == 0 else 30
    assert manifest["dim"] == winner_dim == Run(run).vectors.shape[1]


def test_two_writers_with_the_same_parameters_share_the_work(tmp_path):
    run = tmp_path / "run"
    args = CORPUSMAP + [str(a) for a in EMBED[:-1]] + ["-o", str(run), "--shard-rows", "200", "-q"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0], [p.stdout.read() for p in procs]
    single = tmp_path / "single"
    assert cli(*EMBED, "-o", single, "--shard-rows", "200").exit_code == 0
    assert {k: v for k, v in tree(run / "embeddings").items() if k.endswith(".npy")} == \
        {k: v for k, v in tree(single / "embeddings").items() if k.endswith(".npy")}


def test_a_second_writer_of_an_output_waits_for_the_first(run):
    with Run(run).lock("knn"):
        # a current output is read without waiting (nothing to write) ...
        reader = subprocess.run(CORPUSMAP + ["neighbors", str(run), "-k", "10"], capture_output=True, text=True,
                                timeout=120)
        assert reader.returncode == 0 and "nothing to do" in reader.stdout + reader.stderr
        # ... one that must write waits for the writer holding the lock
        proc = subprocess.Popen(CORPUSMAP + ["neighbors", str(run), "-k", "12", "--overwrite"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(4)
        assert proc.poll() is None  # still waiting
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "waiting for another corpusmap process that is writing knn" in out
    assert json.loads((run / "knn" / "manifest.json").read_text())["k"] == 12


def test_an_output_appears_as_a_whole(run, monkeypatch):
    from corpusmap.excess import report
    from corpusmap.excess.analysis import Criteria
    from corpusmap.excess.stage import ExcessParams, ExcessStage

    before = tree(run / "excess")
    assert "excess_2016.parquet" in before

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "write_report", fail)
    params = ExcessParams(source=(str(run),), targets=("2015",), figures=False, criteria=Criteria(min_freq=2e-4))
    with pytest.raises(Exception):
        ExcessStage().run(Run(run), params, overwrite=True)
    assert tree(run / "excess") == before  # the old report, whole
    assert not list((run / ".corpusmap" / "tmp").iterdir())
    monkeypatch.undo()
    result = cli("excess", run, "--target", "2015", "--no-figures", "--overwrite", "--quiet")
    assert result.exit_code == 0, result.output
    names = set(tree(run / "excess"))
    assert "excess_2015.parquet" in names and not any("2016" in name for name in names)  # nothing left over


def test_orphans_of_killed_writers_are_removed_by_the_next_run_of_that_stage(run):
    orphan = run / ".corpusmap" / "tmp" / "knn-999999"
    orphan.mkdir(parents=True)
    (orphan / "indices.npy").write_bytes(b"half")
    assert cli("neighbors", run, "-k", "11", "--overwrite", "--quiet").exit_code == 0
    assert not orphan.exists()
    # a shard left half-written by a killed embed is removed when that shard is encoded again
    (run / "embeddings" / "shard-00000.npy").unlink()
    (run / "embeddings" / "shard-00000.json").unlink()
    half = run / "embeddings" / ".shard-00000.npy.tmp-999999"
    half.write_bytes(b"\x93NUMPY half")
    assert cli(*EMBED, "-o", run).exit_code == 0
    assert not half.exists() and Run(run).has_vectors()


def test_an_embed_waits_for_a_shard_another_process_holds(tmp_path):
    """Without --shard, `corpusmap embed` encodes the shards no other process holds, then waits for the one another
    holds (here this test), and encodes it when that process let it go undone: it never ends with a shard missing,
    as a job-array worker may."""
    run = tmp_path / "run"
    args = [str(a) for a in EMBED[:-1]] + ["-o", str(run), "--shard-rows", "400"]
    assert cli(*args, "--prepare-only", "-q").exit_code == 0
    receipts = [run / "embeddings" / f"shard-{i:05d}.json" for i in (0, 2, 3, 4)]
    with Run(run).lock("embeddings/shard-1"):
        proc = subprocess.Popen(CORPUSMAP + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 240
        while proc.poll() is None and not all(p.is_file() for p in receipts) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        assert proc.poll() is None, proc.stdout.read()  # still waiting for shard 1
    code, out = proc.wait(timeout=240), proc.stdout.read()
    assert code == 0 and "waiting for another corpusmap process that is encoding 1 shard(s)" in out, out
    assert Run(run).has_vectors()


def test_checksums_are_verified_where_the_data_is_used(run):
    # a shard changed in place (same size) is refused by neighbors and evaluate
    shard = run / "embeddings" / "shard-00000.npy"
    array = np.load(shard)
    array[7] = array[8]
    np.save(shard, array)
    for args in (["neighbors", run, "-k", "12", "--overwrite"], ["evaluate", run]):
        result = cli(*args)
        assert result.exit_code == 1 and "shard-00000.npy fails its checksum" in result.output, result.output
        assert "corpusmap embed" in result.output
    # embed notices it too and re-encodes that shard
    assert cli(*EMBED, "-o", run).exit_code == 0
    assert cli("neighbors", run, "-k", "10", "--quiet").exit_code == 0  # the graph was still current


def test_a_changed_graph_is_refused_by_map(run):
    path = run / "knn" / "indices.npy"
    indices = np.load(path)
    indices[0, [0, 1]] = indices[0, [1, 0]]
    np.save(path, indices)
    result = cli("map", run, "--method", "tsne", "--n-iter", "10")
    assert result.exit_code == 1 and "indices.npy fails its checksum" in result.output
    assert "corpusmap neighbors" in result.output and not (run / "maps" / "tsne.parquet").exists()


def test_a_truncated_corpus_is_read_again_not_reused(run):
    corpus = run / "corpus.parquet"
    good = corpus.read_bytes()
    corpus.write_bytes(good[: len(good) // 2])
    result = cli(*EMBED, "-o", run)
    assert result.exit_code == 0, result.output
    assert corpus.read_bytes() == good
    assert Run(run).has_vectors() and (run / "knn" / "indices.npy").is_file()  # nothing computed from it was lost
    # the other stages refuse a damaged corpus with the command that rebuilds it
    corpus.write_bytes(good[: len(good) // 2])
    result = cli("map", run, "--method", "pca", "--name", "pca2")
    assert result.exit_code == 1 and "corpus.parquet" in result.output and "corpusmap embed" in result.output
    # damaged in place (one byte, same size): the command named is what repairs it, keeping everything else
    damaged = bytearray(good)
    damaged[len(good) // 2] ^= 0xFF
    corpus.write_bytes(bytes(damaged))
    graph = (run / "knn" / "indices.npy").read_bytes()
    result = cli(*EMBED, "-o", run)
    assert result.exit_code == 0, result.output
    assert corpus.read_bytes() == good and (run / "knn" / "indices.npy").read_bytes() == graph


def test_flags_named_in_messages_exist():
    """Every --flag that a message of corpusmap names is an option of some command."""
    import re

    import click

    from corpusmap.cli import main

    ctx = click.Context(main)
    options = set()
    for name in main.list_commands(ctx):
        for param in main.get_command(ctx, name).params:
            options.update(o for o in getattr(param, "opts", []) + getattr(param, "secondary_opts", [])
                           if o.startswith("--"))
    options.update(o for p in main.params for o in p.opts)
    # click's own; `ray start --head` named in a hint; embedding-atlas's command line named by export
    options.update({"--help", "--version", "--head", "--text", "--neighbors"})
    package = Path(__file__).resolve().parents[1] / "corpusmap"
    named = {}
    for path in package.rglob("*.py"):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith("#") or "help=" in line:
                continue
            for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", line):
                named.setdefault(flag, f"{path.relative_to(package)}:{lineno}")
    missing = {flag: where for flag, where in named.items() if flag not in options}
    assert not missing, missing


def test_every_command_has_help():
    import click

    from corpusmap.cli import main

    ctx = click.Context(main)
    for name in main.list_commands(ctx):
        result = cli(name, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output, name
        assert main.get_command(ctx, name).help, name


def test_an_input_replaced_while_a_stage_computes_commits_nothing(run, monkeypatch):
    """A map computed from a graph that another command replaced meanwhile is not committed (it would be stale
    at once, and removed as such): the message says so and to run the command again."""
    from corpusmap.maps import MapStage

    real = MapStage.compute

    def compute_while_the_graph_is_replaced(self, *args):
        manifest = real(self, *args)
        assert cli("neighbors", run, "-k", "12", "--overwrite", "-q").exit_code == 0
        return manifest

    monkeypatch.setattr(MapStage, "compute", compute_while_the_graph_is_replaced)
    result = cli("map", run, "--method", "tsne", "--n-iter", "50", "--early-exaggeration-iter", "25", "--no-plot")
    assert result.exit_code == 1, result.output
    assert "knn of" in result.output and "changed while a map was computed" in result.output
    assert "run the command again" in result.output and not (run / "maps" / "tsne.parquet").exists()


@pytest.mark.parametrize("damage", ["deleted", "manifest damaged"])
def test_an_input_missing_by_hand_removes_nothing_computed_from_it(run, damage):
    """A graph deleted or with a damaged manifest is not a new graph: the clusters computed from it (and the
    maps) stay when another stage runs; replacing the graph does remove the clusters."""
    assert cli("clusters", run, "--levels", "2", "-q").exit_code == 0
    if damage == "deleted":
        shutil.rmtree(run / "knn")
    else:
        (run / "knn" / "manifest.json").write_text('{"k": 1')
    before = {**tree(run / "maps"), **tree(run / "clusters")}
    assert cli("excess", run, "--target", "2015", "--no-figures", "--overwrite", "-q").exit_code == 0
    result = cli("view", run, "--map", "pca", "--clusters", "none", "-q")
    if damage == "deleted":  # the page, without neighbours
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 1 and "knn/manifest.json is damaged" in result.output, result.output
    after = {**tree(run / "maps"), **tree(run / "clusters")}
    assert all(after[k] == v for k, v in before.items() if not k.endswith(".renders.json")), sorted(after)
    assert "maps/pca.png" in json.loads(after["pca.renders.json"])["renders"]  # the figure's record kept
    assert cli("neighbors", run, "-k", "12", "--overwrite", "-q").exit_code == 0  # a new graph
    assert not list((run / "clusters").glob("*.parquet")) and (run / "maps" / "pca.parquet").is_file()


def _readable_damage(good: bytes, start: int, stop: int) -> bytes:
    """``good`` (a parquet file) with one byte in ``start..stop`` flipped such that it still reads, with other
    values: damage that only a checksum of the whole file finds."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    original = pq.read_table(pa.BufferReader(good))
    for offset in range(start, stop):
        damaged = bytearray(good)
        damaged[offset] ^= 0xFF
        try:
            table = pq.read_table(pa.BufferReader(bytes(damaged)))
        except (pa.ArrowException, OSError):
            continue
        if not table.equals(original):
            return bytes(damaged)
    raise AssertionError("no readable one-byte damage found")


def test_a_map_or_figure_damaged_in_place_is_made_again(run):
    """One byte of the map parquet's id or title column, or of its figure, changed in place (same size, still
    readable): the command that made it remakes it (the same bytes), instead of calling the damaged file current."""
    import pyarrow.parquet as pq

    path, figure = run / "maps" / "pca.parquet", run / "maps" / "pca.png"
    good, good_figure = path.read_bytes(), figure.read_bytes()
    group = pq.ParquetFile(path).metadata.row_group(0)
    for column in (group.column(i) for i in range(group.num_columns)):
        if column.path_in_schema in ("id", "title"):
            path.write_bytes(_readable_damage(good, column.data_page_offset,
                                              column.data_page_offset + column.total_compressed_size))
            result = cli("map", run, "--method", "pca")
            assert result.exit_code == 0 and path.read_bytes() == good, (column.path_in_schema, result.output)
    damaged = bytearray(good_figure)
    damaged[len(good_figure) // 2] ^= 0x01
    figure.write_bytes(bytes(damaged))
    result = cli("plot", run, "--map", "pca")
    assert result.exit_code == 0 and figure.read_bytes() == good_figure, result.output


def test_other_reader_options_are_refused_with_the_way_back(run):
    result = cli(*EMBED, "-o", run, "--min-chars", "500")
    assert result.exit_code == 1 and "filters min_chars" in result.output, result.output
    assert "give the reader options it was read with" in result.output and "restore" not in result.output


def test_parameters_that_make_no_difference_never_call_for_overwrite(run, caplog):
    """Below the exact threshold `auto` is the exact graph, and an exact graph has no recall target: asking for
    them so keeps the stored output (no refusal, no recomputation). Asked for where they can never matter (an
    exact index, a PCA map's seed) they are refused as options with no effect."""
    before = tree(run)
    for args in (["neighbors", run, "-k", "10", "--index", "exact"],
                 ["neighbors", run, "-k", "10", "--target-recall", "0.5", "--recall-queries", "50", "--seed", "3"]):
        result = cli(*args)
        assert result.exit_code == 0 and "current" in result.output, (args, result.output)
    assert "--target-recall, --recall-queries, --seed: 1,881 vectors are fewer than --exact-threshold 20,000, so " \
        "--index auto compares every pair" in caplog.text, caplog.text
    for args, flags in ((["neighbors", run, "--index", "exact", "--target-recall", "0.5"], "--target-recall"),
                        (["neighbors", run, "--index", "hnsw", "--exact-threshold", "100"], "--exact-threshold"),
                        (["map", run, "--method", "pca", "--seed", "7"], "--seed")):
        result = cli(*args)
        assert result.exit_code == 2 and f"Error: {flags}: " in result.output and "drop it" in result.output, args
    assert tree(run) == before
    result = cli("neighbors", run, "-k", "11")  # one that does make a difference is refused as before
    assert result.exit_code == 1 and "(k 10 -> 11)" in result.output


def test_a_parameter_of_several_values_takes_one_value_as_one_item():
    """A library user may pass one string or number where a list is expected: one item, never its characters
    (ExcessParams(source="run") once read the folder "/" letter by letter)."""
    from corpusmap.clusters import ClustersParams
    from corpusmap.embed import EmbedParams
    from corpusmap.evaluate import EvaluateParams
    from corpusmap.excess.stage import ExcessParams

    assert ExcessParams(source="/data/run").source == ("/data/run",)
    assert ExcessParams(source="/data/run", targets=2024).targets == ("2024",)
    assert ExcessParams(source="/data/run", group="style", cutoffs=0.01).cutoffs == (0.01,)
    assert EvaluateParams(maps="tsne", clusters="leiden").maps == ("tsne",)
    assert EvaluateParams(maps="tsne", clusters="leiden").clusters == ("leiden",)
    assert ClustersParams(resolutions=0.5, levels=1).resolutions == (0.5,)
    assert EmbedParams(inputs="a.jsonl").inputs == ("a.jsonl",)


def test_numbers_beyond_floats_and_not_finite_are_refused_in_one_line():
    """An integer too large for a float is judged by its own range (not an OverflowError of the finiteness
    check); NaN and infinity are refused by name."""
    from corpusmap.clusters import ClustersParams
    from corpusmap.errors import UsageProblem
    from corpusmap.neighbors import NeighborsParams

    with pytest.raises(UsageProblem, match="--levels must be between 1 and 8"):
        ClustersParams(levels=10 ** 400)
    with pytest.raises(UsageProblem, match="--target-recall must be a finite number, not nan"):
        NeighborsParams(target_recall=float("nan"))



def test_a_refusal_names_the_change_as_the_user_gave_it(run):
    """An unset parameter is shown as what it means (evaluate's maps: every map), and a changed method alone,
    not the other method's parameters that differ with it."""
    assert cli("evaluate", run, "--quiet").exit_code == 0
    result = cli("evaluate", run, "--map", "pca")
    assert result.exit_code == 1 and "(maps every map -> pca)" in result.output, result.output
    result = cli("excess", run, "--no-figures")
    assert result.exit_code == 1 and "(targets 2015,2016 -> every period)" in result.output, result.output
    assert cli("clusters", run, "--levels", "1", "--quiet").exit_code == 0
    result = cli("clusters", run, "--on", "pca", "--name", "leiden", "--min-cluster-size", "100")
    assert result.exit_code == 1 and "(method leiden -> hdbscan)" in result.output, result.output


def test_a_preset_equals_its_filters_given_one_by_one(tmp_path):
    """`--preset landscape` reads what its filters given one by one read: the same corpus, kept as it is."""
    run = tmp_path / "run"
    cli(*EMBED, "-o", run, "--preset", "landscape", ok=True)
    before = tree(run)
    result = cli(*EMBED, "-o", run, "--min-chars", "251", "--max-chars", "3999", "--english-only",
                 "--cut-truncated", "--finished-only")
    assert result.exit_code == 0, result.output
    assert tree(run) == before


def test_staging_removes_the_folders_of_killed_writers_of_its_own_output_only(run):
    """A map named tsne-2 is staged in maps_tsne-2-PID: staging map tsne must not take it for its own orphan."""
    r = Run(run)
    tmp = r.meta_dir / "tmp"
    orphan, other = tmp / "maps_tsne-999999", tmp / "maps_tsne-2-999998"
    for folder in (orphan, other):
        folder.mkdir(parents=True)
        (folder / "x.parquet").write_bytes(b"partial")
    with r.staging("maps/tsne") as folder:
        assert folder.is_dir() and not orphan.exists() and (other / "x.parquet").is_file()
    assert not folder.exists() and (other / "x.parquet").is_file()


def test_a_removal_cut_short_is_finished_by_the_next_stage(run, monkeypatch):
    """A process killed while removing what a replaced graph made stale leaves the rest recognisably stale (the
    most derived outputs go first), and the next stage that runs removes it before anything else."""
    cli("clusters", run, "--levels", "1", "--quiet", ok=True)
    cli("evaluate", run, "--quiet", ok=True)
    remove = Run._remove

    def killed_after_one(self, output):
        remove(self, output)
        monkeypatch.setattr(Run, "_remove", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))

    monkeypatch.setattr(Run, "_remove", killed_after_one)
    result = cli("neighbors", run, "-k", "11", "--overwrite", "--quiet")
    assert result.exit_code == 130  # (an interrupt, as a kill would leave it)
    monkeypatch.setattr(Run, "_remove", remove)
    assert not (run / "eval").exists() and (run / "clusters" / "leiden.json").is_file()  # eval went first
    result = cli("map", run, "--method", "pca")  # current: nothing to compute, but the removal is finished
    assert result.exit_code == 0 and "current" in result.output, result.output
    assert not (run / "clusters" / "leiden.json").exists() and (run / "knn" / "manifest.json").is_file()


def test_a_lost_corpus_record_is_rebuilt_by_the_same_inputs_and_never_replaced_silently(run):
    """Without corpus.json, other reader options would read another corpus than the vectors were computed from:
    refused without --overwrite, nothing lost. The inputs and options it was read with rebuild the record and keep
    everything."""
    (run / "corpus.json").unlink()
    before = tree(run)
    result = cli(*EMBED, "-o", run, "--min-chars", "900")
    assert result.exit_code == 1 and "corpus.json is missing or damaged, and the inputs give another corpus" in \
        result.output and "--overwrite" in result.output, result.output
    assert tree(run) == before
    result = cli(*EMBED, "-o", run)
    assert result.exit_code == 0, result.output
    after = tree(run)
    assert "corpus.json" in after and {k: v for k, v in after.items() if k != "corpus.json"} == before
    (run / "corpus.parquet").unlink()  # the record kept, the corpus lost: the message names what is lost
    result = cli(*EMBED, "-o", run, "--min-chars", "900")
    assert result.exit_code == 1 and "corpus.parquet is missing or damaged" in result.output, result.output


def test_a_damaged_corpus_record_removes_nothing_computed_from_the_corpus(run):
    """A corpus.json that cannot be read is a missing record, not another corpus: no stage takes it as a reason
    to remove the vectors, the graph, the maps or the report."""
    (run / "corpus.json").write_text('{"rows": 18')
    before = tree(run)
    result = cli("neighbors", run, "-k", "10")
    assert result.exit_code == 1 and "corpus.json" in result.output, result.output
    assert Run(run).invalidate() == [] and tree(run) == before


def test_a_read_only_run_never_says_it_removed_what_it_could_not(run):
    """A stale output in a run the user may not write stays, and no command reports it removed."""
    import os

    cli("evaluate", run, "--quiet", ok=True)
    manifest = json.loads((run / "eval" / "manifest.json").read_text())
    manifest["stage"]["inputs"]["embeddings"] = "an earlier one"
    (run / "eval" / "manifest.json").write_text(json.dumps(manifest))
    wrap = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot drop the override capabilities")
        wrap = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    subprocess.run(["chmod", "-R", "a-w", str(run)], check=True)
    try:
        done = subprocess.run(wrap + CORPUSMAP + ["map", str(run), "--method", "pca"], capture_output=True,
                              text=True, timeout=300)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(run)], check=True)
    assert done.returncode == 0, done.stderr
    assert "removed" not in done.stderr + done.stdout and (run / "eval" / "metrics.json").is_file()


def test_an_input_replaced_while_a_figure_was_drawn_fails_the_command(run, monkeypatch):
    """Another command replaces the map while a figure of it is being written: the figure, stale at once, is
    removed and the command fails (it does not report a figure it no longer has)."""
    from corpusmap.plot import PlotStage

    commit = PlotStage.commit

    def replaced_meanwhile(self, r, params, staging):
        commit(self, r, params, staging)
        with monkeypatch.context() as other:  # the other command's map, committed before its own removals run
            other.setattr(Run, "invalidate", lambda *args, **kwargs: [])
            cli("map", run, "--method", "tsne", "--name", "pca", "--perplexity", "3", "--n-iter", "10",
                "--early-exaggeration-iter", "10", "--no-plot", "--overwrite", "--quiet", ok=True)

    monkeypatch.setattr(PlotStage, "commit", replaced_meanwhile)
    result = cli("plot", run, "--map", "pca", "--color", "year", "-o", run / "maps" / "pca.year.png")
    assert result.exit_code == 1 and "was replaced by another command while it was computed" in result.output, \
        result.output
    assert not (run / "maps" / "pca.year.png").exists()


def test_an_atomic_write_removes_the_temporary_files_of_killed_writers_only(tmp_path):
    """``.NAME.tmp-HOST-PID`` of a process that is gone, untouched for a while, is removed by this process's first
    write into its folder; a live writer's, a recently written one, or one of another machine sharing the folder,
    is kept."""
    from corpusmap.atomic import _host, write_json

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = tmp_path / f".x.json.tmp-{_host()}-{dead.pid}"
    live = tmp_path / f".x.json.tmp-{_host()}-{os.getppid()}"
    other = tmp_path / f".x.json.tmp-elsewhere-{dead.pid}"
    recent = tmp_path / f".x.json.tmp-{_host()}-{dead.pid + 100_000_000}"  # (written a moment ago: kept)
    beside = tmp_path / f".y.parquet.tmp-{_host()}-{dead.pid}"  # (another file's, in the same folder)
    for path in (left, live, other, recent, beside):
        path.write_text("{")
        if path is not recent:
            os.utime(path, (time.time() - 3600, time.time() - 3600))
    write_json(tmp_path / "x.json", {"a": 1})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1}
    assert not left.exists() and live.exists() and other.exists() and recent.exists()
    assert not beside.exists()
