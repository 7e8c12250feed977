"""`corpusmap run CONFIG.toml` and the stage contract: a stage runs only when its stored output is not current,
changing a stage's parameters reruns it and what was computed from it, and the config keeps TOML's types."""
from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from conftest import EXAMPLE_CORPUS, cli
from corpusmap.errors import UsageProblem

BASE = """
run = "out"
[embed]
inputs = ["data/*.jsonl.gz"]
model = "tfidf"
dim = {dim}
{embed_extra}
[neighbors]
k = {k}
[[map]]
method = "tsne"
n-iter = {n_iter}
early-exaggeration-iter = 10
[[map]]
method = "pca"
plot = false
[evaluate]
queries = 300
k = {eval_k}
[excess]
target = [2015]
top = {top}
figures = false
[[plot]]
map = "tsne"
color = "year"
width = {width}
"""
DEFAULTS = dict(dim=20, k=10, n_iter=10, eval_k=10, top=20, width=400, embed_extra="")


def write_config(folder, **changes):
    (folder / "data").mkdir(exist_ok=True)
    if not (folder / "data" / EXAMPLE_CORPUS.name).exists():
        shutil.copy(EXAMPLE_CORPUS, folder / "data" / EXAMPLE_CORPUS.name)
    path = folder / "pipeline.toml"
    path.write_text(BASE.format(**{**DEFAULTS, **changes}))
    return path


def fingerprints(out) -> dict:
    """The fingerprint of every output of the run (what changes when an output is recomputed)."""
    from corpusmap.run import Run

    def written(o):  # a map records no creation time (same inputs, same bytes): its file's time tells
        return o.paths[0].stat().st_mtime_ns if o.paths and o.paths[0].is_file() else None

    return {o.key: o.block.get("created") or written(o) or o.fingerprint for o in Run(out).outputs()}


def planned_and_ran(config, *args):
    """``corpusmap run CONFIG --dry-run`` then ``corpusmap run CONFIG`` (which must succeed): both results and
    the jobs each said run."""
    dry, result = cli("run", config, *args, "--dry-run"), cli("run", config, *args)
    assert result.exit_code == 0, result.output
    planned, ran = ([line.split(" (")[0] for line in r.output.splitlines() if line.startswith("run: ")]
                    for r in (dry, result))
    return dry, result, planned, ran


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A finished pipeline on the bundled example corpus (copied per test)."""
    folder = tmp_path_factory.mktemp("pipeline")
    config = write_config(folder)
    result = cli("run", config, "--quiet")
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture
def folder(done, tmp_path):
    dest = tmp_path / "p"
    shutil.copytree(done, dest)
    return dest


def test_run_makes_every_output_and_then_has_nothing_to_do(done):
    folder, out = done, done / "out"
    assert json.loads((out / "embeddings" / "manifest.json").read_text())["dim"] == 20
    assert json.loads((out / "knn" / "manifest.json").read_text())["k"] == 10
    for path in ("maps/tsne.parquet", "maps/tsne.png", "maps/pca.parquet", "maps/tsne.year.png",
                 "eval/metrics.json", "excess/report.md", "pipeline.json"):
        assert (out / path).is_file(), path
    state = json.loads((out / "pipeline.json").read_text())
    assert state["complete"] is True and "stopped_at" not in state and len(state["jobs"]) == 8
    before = fingerprints(out)
    again = cli("run", folder / "pipeline.toml")
    assert again.exit_code == 0, again.output
    assert [line.split(":")[0] for line in again.output.splitlines() if line.startswith(("skip", "run"))] == \
        ["skip (current)"] * 8
    assert fingerprints(out) == before
    dry = cli("run", folder / "pipeline.toml", "--dry-run")
    assert dry.output.splitlines()[1].startswith("skip (current): neighbors: corpusmap neighbors ")
    assert f"{out} -k 10" in dry.output.splitlines()[1]


# changing one table's parameters reruns exactly that stage and the ones computed from its output
DOWNSTREAM = {
    "embed": (dict(dim=30, embed_extra="overwrite = true"), {"embeddings", "knn", "maps/tsne", "maps/pca",
                                                             "render:maps/tsne.png", "render:maps/tsne.year.png",
                                                             "eval"}),
    "neighbors": (dict(k=12), {"knn", "maps/tsne", "render:maps/tsne.png", "render:maps/tsne.year.png", "eval"}),
    "map": (dict(n_iter=20), {"maps/tsne", "render:maps/tsne.png", "render:maps/tsne.year.png", "eval"}),
    "evaluate": (dict(eval_k=8), {"eval"}),
    "excess": (dict(top=10), {"excess"}),
    "plot": (dict(width=500), {"render:maps/tsne.year.png"}),
}


@pytest.mark.parametrize("stage", list(DOWNSTREAM))
def test_changing_a_stage_reruns_it_and_its_dependents(folder, stage):
    changes, rerun = DOWNSTREAM[stage]
    before = fingerprints(folder / "out")
    config = write_config(folder, **changes)
    # --dry-run said which jobs would run, those downstream of the changed one included
    dry, result, planned, ran = planned_and_ran(config, "--overwrite")
    assert planned == ran and ran, dry.output
    after = fingerprints(folder / "out")
    assert set(after) == set(before)  # everything is there again
    assert {key for key in after if after[key] != before[key]} == rerun
    if stage == "embed":  # pipeline.json says what its job removed: the old vectors and all computed from them
        job = json.loads((folder / "out" / "pipeline.json").read_text())["jobs"][0]
        assert set(job["removed"]) == rerun, job


def test_a_new_map_is_planned_into_the_evaluation_of_every_map(folder):
    """A [[map]] added to a finished pipeline: the dry run says the evaluation (which reads every map) runs
    again, as the run then does."""
    config = write_config(folder)
    config.write_text(config.read_text() + '[[map]]\nmethod = "pca"\nname = "pca2"\nplot = false\n')
    dry, result, planned, ran = planned_and_ran(config)
    assert planned == ran and any(line.startswith("run: evaluate") for line in ran), (dry.output, result.output)
    assert "pca2" in json.loads((folder / "out" / "eval" / "metrics.json").read_text())["maps_evaluated"]


def test_a_default_clustering_made_in_the_pipeline_is_planned_into_its_readers(folder):
    """The run holds only an HDBSCAN clustering, drawn by a figure and a page; a [clusters] table adds leiden,
    which becomes the default: the dry run plans the figure and the page again, as the run then does."""
    out = folder / "out"
    assert cli("clusters", out, "--on", "tsne", "-q").exit_code == 0
    config = write_config(folder)
    config.write_text(config.read_text() + '[[plot]]\nmap = "tsne"\ncolor = "cluster"\n[view]\nmap = "tsne"\n')
    assert cli("run", config, "-q").exit_code == 0
    config.write_text(config.read_text() + "[clusters]\n")
    dry, result, planned, ran = planned_and_ran(config)
    assert planned == ran and any(line.startswith("run: view") for line in ran), (dry.output, result.output)
    assert any(line.startswith("run: plot tsne cluster") for line in ran), ran


def test_an_option_without_effect_on_a_held_map_is_refused_by_the_plan(folder):
    config = write_config(folder)
    config.write_text(config.read_text() + '[[plot]]\nmap = "tsne"\ncolor = "label"\nreference = false\n')
    dry = cli("run", config, "--dry-run")
    assert dry.exit_code == 2 and "--no-reference: the map 'tsne' has no points added" in dry.output, dry.output


def test_a_changed_stage_is_refused_without_overwrite(folder):
    assert cli("run", write_config(folder)).exit_code == 0  # (embed records the copied folder's inputs)
    config = write_config(folder, k=12)
    dry = cli("run", config, "--dry-run")  # the plan says where the run will stop, and what lets it go on
    lines = dry.output.splitlines()
    assert lines[1].startswith("refused: neighbors:") and lines[2].startswith("not reached: map tsne:"), dry.output
    assert f"set overwrite = true in [neighbors] or run `corpusmap run {config} --overwrite`" in lines[-1]
    before = fingerprints(folder / "out")
    result = cli("run", config)  # refused before any job runs, in the words of the config
    assert result.exit_code == 1 and "computed with other parameters (k 10 -> 12); nothing was run" in result.output
    assert "set overwrite = true in [neighbors]" in result.output and "run:" not in result.output
    assert fingerprints(folder / "out") == before
    state = json.loads((folder / "out" / "pipeline.json").read_text())  # says this run did nothing, and why
    assert state["complete"] is False and state["jobs"] == [] and state["refused"].startswith("neighbors")
    # other vectors of the same corpus: refused in the plan as in the run
    config = write_config(folder, dim=30)
    dry = cli("run", config, "--dry-run")
    assert "refused: embed" in dry.output and "set overwrite = true in [embed]" in dry.output, dry.output
    result = cli("run", config)
    assert result.exit_code == 1 and "holds vectors computed with other parameters (dim 20 -> 30)" in result.output


def test_a_figure_of_regions_without_a_clustering_fails_before_any_job(folder):
    config = write_config(folder)
    config.write_text(config.read_text() + '\n[[plot]]\nmap = "tsne"\ncolor = "cluster"\n')
    before = fingerprints(folder / "out")
    for args in (["--dry-run"], ["--overwrite"]):
        result = cli("run", config, *args)
        assert result.exit_code == 2 and "needs the clustering 'leiden', which the run does not hold and no job " \
            "before it makes: add a [clusters] table" in result.output, result.output
    config.write_text(config.read_text() + "\n[clusters]\n")  # (a table's place in the file does not matter)
    assert "run: clusters leiden" in cli("run", config, "--dry-run").output
    # the command alike: `map --labels keywords` without clusters fails before the map is computed
    result = cli("map", folder / "out", "--method", "pca", "--name", "p2", "--labels", "keywords")
    assert result.exit_code == 1 and "no clustering 'leiden'" in result.output
    assert not (folder / "out" / "maps" / "p2.parquet").exists() and fingerprints(folder / "out") == before


def test_files_named_by_options_of_names_or_files_are_relative_to_the_config(folder):
    """group-words takes words or a file of words, model a hub name or a local folder: a value that is a file
    beside the config is read from there, whatever the working directory; a name stays a name."""
    import click

    from corpusmap.cli import main
    from corpusmap.cli.pipeline import command_args

    command = {name: main.get_command(click.Context(main), name) for name in ("embed", "excess")}
    (folder / "words.txt").write_text("cells\nprotein\n")
    args = command_args(command["excess"], "excess",
                        {"group-words": ["mine=words.txt", "delve,intricate"], "target": [2015]}, folder)
    assert args[1] == f"mine={folder / 'words.txt'}" and args[3] == "delve,intricate", args
    (folder / "local-model").mkdir()
    embed = command_args(command["embed"], "embed", {"inputs": ["data"], "model": "local-model"}, folder)
    assert embed[embed.index("--model") + 1] == str(folder / "local-model")
    hub = command_args(command["embed"], "embed", {"inputs": ["data"], "model": "org/some-model"}, folder)
    assert hub[hub.index("--model") + 1] == "org/some-model"
    embed = command_args(command["embed"], "embed", {"inputs": ["data"], "vectors": "v.npy",
                                                            "fit-from": "../other"}, folder)
    assert embed[embed.index("--vectors") + 1] == str(folder / "v.npy")
    assert embed[embed.index("--fit-from") + 1] == str(folder.parent / "other")


def test_a_changed_input_is_refused_in_the_configs_words_and_overwrite_reruns_everything(folder):
    """An edited input file: refused before any job runs; with --overwrite every stage runs in the one command
    (the later stages used to find the new corpus 'damaged', having read the old one's checksum in the plan)."""
    import gzip

    config = write_config(folder)
    assert cli("run", config).exit_code == 0  # (embed records the copied folder's inputs)
    path = folder / "data" / EXAMPLE_CORPUS.name
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    record = json.loads(lines[0])
    record["abstract"] += " One more sentence."
    path.write_bytes(gzip.compress("\n".join([json.dumps(record)] + lines[1:]).encode() + b"\n"))
    result = cli("run", config)
    assert result.exit_code == 1 and "holds vectors from other inputs or options: input " in result.output
    assert "nothing was run" in result.output and "set overwrite = true in [embed]" in result.output
    result = cli("run", config, "--overwrite")
    assert result.exit_code == 0, result.output
    assert "damaged" not in result.output and result.output.count("run: ") == 8, result.output  # every job


def test_an_input_edited_to_the_same_size_is_read_again_and_refused_in_the_configs_words(folder):
    """Same size, other bytes: only reading tells whether the corpus is the same. The plan says so; the refusal
    says how a pipeline gives leave and offers restoring the file, not giving the very same file again."""
    import gzip
    import io

    config = write_config(folder)
    assert cli("run", config).exit_code == 0
    path = folder / "data" / EXAMPLE_CORPUS.name
    data = path.read_bytes()
    edited = gzip.decompress(data).decode().replace(" the ", " THE ", 1).encode()
    bare = len(gzip.compress(edited, mtime=0))
    buffer = io.BytesIO()  # the gzip header's file name pads the edited file to the old size
    with gzip.GzipFile(filename="x" * (len(data) - bare - 1), mode="wb", fileobj=buffer, mtime=0) as fh:
        fh.write(edited)
    assert len(buffer.getvalue()) == len(data)
    path.write_bytes(buffer.getvalue())
    dry = cli("run", config, "--dry-run")
    assert dry.exit_code == 0 and "read again; the same corpus keeps everything computed from it" in dry.output
    result = cli("run", config)
    assert result.exit_code == 1 and "in this pipeline: set overwrite = true in [embed]" in result.output
    assert f"restore {path} as it was" in result.output and "give the inputs it was read from" not in result.output
    state = json.loads((folder / "out" / "pipeline.json").read_text())
    assert state["complete"] is False and state["stopped_at"].startswith("embed: ") and state["jobs"] == []


def test_a_changed_stage_whose_output_an_earlier_rerun_removes_is_not_refused(folder):
    """neighbors reruns (overwrite = true) and so removes the map, which is then made anew with its new
    parameters: it needs no overwrite of its own."""
    config = write_config(folder, k="12\noverwrite = true", n_iter=20)
    dry = cli("run", config, "--dry-run")
    assert "run: map tsne:" in dry.output and "refused" not in dry.output, dry.output
    result = cli("run", config)
    assert result.exit_code == 0, result.output
    meta = json.loads(pq.read_schema(folder / "out" / "maps" / "tsne.parquet").metadata[b"corpusmap"])
    assert meta["schedule"][-1]["n_iter"] == 20 and meta["knn"]["k"] == 12


def test_a_stage_needing_more_neighbours_than_the_graph_fails_before_any_job(folder):
    """t-SNE's default uniform affinities read 10 neighbours: a [neighbors] k of 8 fails the plan, not the map
    after the graph has been rebuilt; so does a [clusters] k above the graph's."""
    config = write_config(folder, k=8)
    before = fingerprints(folder / "out")
    for args in (["--dry-run"], ["--overwrite"]):
        result = cli("run", config, *args)
        assert result.exit_code == 2, result.output
        assert "the map 'tsne' needs 10 neighbours of each point, but the graph it would use has k = 8: set k = 10 " \
               "in [neighbors]" in result.output
    config = write_config(folder)
    config.write_text(config.read_text() + "\n[clusters]\nk = 12\n")
    result = cli("run", config, "--dry-run")
    assert result.exit_code == 2 and "[clusters] k = 12, but the graph it would use has k = 10: set k = 12 in " \
        "[neighbors]" in result.output, result.output
    # no [neighbors] table: the stored graph (k = 10) is the one a map asking for 12 neighbours would get
    no_graph_job = folder / "maps_only.toml"
    no_graph_job.write_text('run = "out"\n[[map]]\nmethod = "umap"\nname = "u13"\nn-neighbors = 13\n')
    for args in (["--dry-run"], []):
        result = cli("run", no_graph_job, *args)
        assert result.exit_code == 2, result.output
        assert "needs 12 neighbours of each point, but the graph it would use has k = 10: the graph stored in " \
            in result.output and "add a [neighbors] table with k = 12" in result.output
    assert fingerprints(folder / "out") == before


def test_the_reproduction_embed_overwrite_rebuilds_graph_and_map(folder):
    """Issue: with `[embed] overwrite = true`, changing dim used to end `done` over a run without graph or map."""
    config = write_config(folder, dim=30, embed_extra="overwrite = true")
    result = cli("run", config, "--quiet")
    assert result.exit_code == 0, result.output
    out = folder / "out"
    assert json.loads((out / "embeddings" / "manifest.json").read_text())["dim"] == 30
    assert json.loads((out / "knn" / "manifest.json").read_text())["dim"] == 30
    assert (out / "maps" / "tsne.parquet").is_file() and (out / "maps" / "tsne.png").is_file()
    again = cli("run", config)
    assert again.exit_code == 0 and "run:" not in again.output


def test_a_job_needing_what_an_earlier_rerun_removes_fails_the_plan(folder):
    """[embed] with other parameters removes the maps computed from the old vectors: a [[plot]] of a map that no
    job after it makes again fails before anything runs; without overwrite the plan says where the run stops."""
    config = write_config(folder, dim=30, embed_extra="overwrite = true")
    text = config.read_text()
    config.write_text(text[:text.index("[[map]]")] + text[text.index("[evaluate]"):])  # no [[map]] tables
    before = fingerprints(folder / "out")
    for args in (["--dry-run"], ["--quiet"]):
        result = cli("run", config, *args)
        assert result.exit_code == 2, result.output
        assert "needs maps/tsne of" in result.output and "which the embed job before it may remove" in result.output \
            and "add a [[map]] named 'tsne' after it" in result.output, result.output
    assert fingerprints(folder / "out") == before
    # a job refused for want of overwrite stops the run, so nothing after it is judged on what it would remove
    from corpusmap.neighbors import NeighborsParams, NeighborsStage
    from corpusmap.pipeline import Job, plan, refused
    from corpusmap.plot import PlotParams, PlotStage
    from corpusmap.run import Run

    run = Run(folder / "out")
    for overwrite in (False, True):
        jobs = [Job(NeighborsStage(), run, NeighborsParams(k=12), overwrite=overwrite),
                Job(PlotStage(), run, PlotParams(map="tsne", color="year", width=400))]
        if overwrite:
            with pytest.raises(UsageProblem, match="which the neighbors job before it may remove"):
                plan(jobs)
        else:
            (first, status), _ = plan(jobs)
            assert refused(first, status)
    # the same embed with the [[map]] tables back plans and runs (the reproduction test runs it)
    config.write_text(text)
    assert cli("run", config, "--dry-run").exit_code == 0


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_a_deleted_or_damaged_output_is_rerun(folder, damage):
    target = folder / "out" / "knn" / "indices.npy"
    if damage == "delete":
        target.unlink()
    else:
        target.write_bytes(target.read_bytes()[:1000])
    dry = cli("run", folder / "pipeline.toml", "--dry-run")
    assert "run: neighbors" in dry.output and "indices.npy" in dry.output
    result = cli("run", folder / "pipeline.toml", "--quiet")
    assert result.exit_code == 0, result.output
    assert target.stat().st_size == 10 * 1881 * 8 + 128


@pytest.mark.parametrize("name", ["corpus.json", "corpus.parquet"])
def test_a_damaged_corpus_is_read_again_by_the_pipelines_embed(folder, name):
    """The corpus and its manifest are embed's outputs: damaged, they are read again from the inputs (the same
    corpus, so everything computed from it is kept), not an error that stops the plan."""
    out = folder / "out"
    before = fingerprints(out)
    target = out / name
    target.write_bytes(target.read_bytes()[:100])
    dry = cli("run", folder / "pipeline.toml", "--dry-run")
    assert dry.exit_code == 0 and "run: embed" in dry.output and "damaged" in dry.output, dry.output
    result = cli("run", folder / "pipeline.toml")
    assert result.exit_code == 0, result.output
    assert target.stat().st_size > 1000  # read again
    after = fingerprints(out)
    assert set(after) == set(before) and {k for k in after if after[k] != before[k]} <= {"corpus"}
    again = cli("run", folder / "pipeline.toml", "--dry-run")
    assert "run:" not in again.output, again.output


@pytest.mark.parametrize("text, message", [
    ('run = "x"\n[embed]\ninputs = ["a.jsonl"]\nbatchsize = 3\n', "[embed] has no option 'batchsize'"),
    ('run = "x"\n[mapz]\n', "unknown table(s) mapz"),
    ('run = "x"\n[embed]\ninputs = ["nope.jsonl"]\n', "bad.toml: [embed] inputs: "),
    ('run = "x"\n[embed]\ninputs = ["nope/*.jsonl"]\n', "nope/*.jsonl matches nothing (paths in a config are relative"),
    ('[embed]\ninputs = ["a.jsonl"]\n', "name the run directory"),
    ('run = "x"\n[embed\n', "not valid TOML"),
    ('run = "x"\n[embed]\ninputs = ["a.jsonl"]\noverwrite = "false"\n', "overwrite = 'false': expected true or false"),
    ('run = "x"\nembed = "x"\n', "embed must be a table"),
    ('run = "x"\n[neighbors]\nk = "12"\n', "k = '12': expected a whole number"),
    ('run = "x"\n[neighbors]\nk = true\n', "k = True: expected a whole number"),
    ('run = "x"\n[neighbors]\nk = [1, 2]\n', "k takes one value, not a list"),
    ('run = "x"\n[neighbors]\nindex = "fast"\n', "[neighbors]: Invalid value for '--index'"),
    ('run = "x"\n[embed]\ninputs = "a.jsonl"\n[embed2]\n', "unknown table(s) embed2"),
    ('run = 3\n', "name the run directory"),
    ('run = "x"\n[[clusters]]\non = "tsne"\n[[clusters]]\non = "pca"\n',
     "the first [[clusters]] and the second [[clusters]] both write"),
    ('run = "x"\n[[map]]\nmethod = "tsne"\n[[map]]\nmethod = "tsne"\nperplexity = 50\n',
     "maps/tsne.parquet; give one of them its own name"),
    # a stage whose input neither the run holds nor a job before it makes fails the plan, not the run hours in
    ('run = "x"\n[embed]\ninputs = ["a.jsonl"]\n[clusters]\n',
     "which the run does not hold and no job before it makes: add [neighbors] before it"),
    ('run = "x"\n[embed]\ninputs = ["a.jsonl"]\n[neighbors]\n[evaluate]\nmap = ["tsne"]\n',
     "no job before it makes: add a [[map]] named 'tsne' before it"),
    ('run = "x"\n[embed]\ninputs = ["a.jsonl"]\n[neighbors]\n[[map]]\nmethod = "pca"\n[[plot]]\nmap = "pca"\n'
     'color = "cluster:topics:0"\n', "plot pca cluster:topics:0 needs clusters/topics of"),
    ('run = "x"\n[embed]\ninputs = ["a.jsonl"]\n[neighbors]\n[[map]]\nmethod = "pca"\n[[plot]]\nmap = "pca"\n'
     'color = "cluster:topics:0"\n', "no job before it makes: add a [clusters] table named 'topics' before it"),
    # a clustering named by a page, an export, an evaluation or an excess report, which no job makes
    ('run = "x"\n[embed]\ninputs = ["a.jsonl"]\n[excess]\nby = "cluster:topics"\n',
     "no job before it makes: add a [clusters] table named 'topics' before it"),
    ('run = "x"\n[embed]\ninputs = ["a.jsonl"]\n[excess]\nby = "cluster:foo"\noutput = "report"\n',
     "[excess] with --by cluster:foo needs the clustering 'foo', which the run does not hold"),
    ('run = "x"\n[embed]\ninputs = ["a.jsonl"]\n[excess]\nby = "cluster"\n',
     "[excess] with --by cluster needs the clustering 'leiden', which the run does not hold"),
    ('run = "x"\n[embed]\ninputs = ["a.jsonl"]\n[neighbors]\n[[map]]\nmethod = "pca"\n[view]\nmap = "pca"\n'
     'clusters = "topics"\n', "no job before it makes: add a [clusters] table named 'topics' before it"),
    ('run = "x"\n[embed]\ninputs = ["a.jsonl"]\n[neighbors]\n[[map]]\nmethod = "pca"\n[export]\nmap = "pca"\n'
     'clusters = "topics"\n', "no job before it makes: add a [clusters] table named 'topics' before it"),
    ('run = "x"\n[embed]\ninputs = ["a.jsonl"]\n[neighbors]\n[clusters]\n[evaluate]\nclusters = ["leiden", "topics"]\n',
     "no job before it makes: add a [clusters] table named 'topics' before it"),
    ('run = "x"\n[embed]\ninputs = ["a.jsonl"]\n[neighbors]\n[[map]]\nmethod = "pca"\n[[plot]]\nmap = "pca"\n'
     'labels = "keywords"\noutput = "named.png"\n',
     "with --labels keywords needs the clustering 'leiden', which the run does not hold"),
    ('run = "x"\n[embed]\ninputs = ["a.jsonl"]\n[[map]]\nmethod = "pca"\n[[plot]]\nmap = "pca"\n'
     'color = "excess:style:2024"\n', "which the run does not hold and no job before it makes: add [excess] before it"),
    # what a table cannot say: another run directory, opening a page, one option twice, a date for a text
    ('run = "x"\n[embed]\ninputs = ["a.jsonl"]\noutput = "elsewhere"\n', "[embed] output: not in a config"),
    ('run = "x"\n[view]\nopen = true\n', "[view] open: not in a config; open the page afterwards"),
    ('run = "x"\n[[plot]]\ncolor = "year"\ncolour = "label"\n', "[plot] color and colour set one option"),
    ('run = "x"\n[excess]\nyear-col = 1979-05-27\n', "year-col = datetime.date(1979, 5, 27): expected a string"),
])
def test_config_errors(tmp_path, text, message):
    (tmp_path / "a.jsonl").write_text('{"abstract": "A text about cells."}\n')
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = cli("run", path, "--dry-run")
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_a_negated_flag_in_a_table_means_what_it_says(tmp_path):
    """``no-normalize = true`` is --no-normalize, ``no-normalize = false`` --normalize (as on the command line)."""
    for value, flag in (("true", "--no-normalize"), ("false", "--normalize")):
        config = tmp_path / "c.toml"
        config.write_text(f'run = "out"\n[embed]\ninputs = ["a.jsonl"]\nmodel = "tfidf"\nno-normalize = {value}\n')
        (tmp_path / "a.jsonl").write_text('{"abstract": "a b c"}\n')
        dry = cli("run", config, "--dry-run")
        assert dry.exit_code == 0 and f" {flag} " in dry.output, dry.output


def test_lists_for_options_of_comma_separated_values(folder):
    """`resolution = [0.5, 2]` is `--resolution 0.5,2`, as the command line writes it."""
    config = folder / "pipeline.toml"
    config.write_text(config.read_text() + '\n[clusters]\nresolution = [0.5, 2]\n')
    dry = cli("run", config, "--dry-run")
    assert dry.exit_code == 0 and "corpusmap clusters" in dry.output and "--resolution 0.5,2" in dry.output, \
        dry.output
    config.write_text(config.read_text().replace("resolution = [0.5, 2]", 'resolution = [0.5, "x"]'))
    res = cli("run", config, "--dry-run")
    assert res.exit_code == 2, res.output
    assert f"Error: {config}: [clusters]: --resolution takes comma-separated numbers, e.g. 0.2,1,5: 'x' is not " \
           "one" in res.output


def test_inputs_and_paths_resolve_against_the_config_folder(folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anywhere else
    dry = cli("run", folder / "pipeline.toml", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"corpusmap embed '{folder / 'data' / '*.jsonl.gz'}' " in dry.output


def test_library_pipeline_without_click(folder):
    from corpusmap.neighbors import NeighborsParams, NeighborsStage
    from corpusmap.pipeline import Job, run_jobs
    from corpusmap.run import Run

    run = Run(folder / "out")
    lines: list = []
    results = run_jobs([Job(NeighborsStage(), run, NeighborsParams(k=10))], echo=lines.append)
    assert results == [] and lines == ["skip (current): neighbors"]
    results = run_jobs([Job(NeighborsStage(), run, NeighborsParams(k=11), overwrite=True)], echo=lines.append)
    assert results[0].computed and "maps/tsne" in results[0].removed


def test_an_export_table(folder):
    config = folder / "pipeline.toml"
    config.write_text(config.read_text() + '\n[[export]]\nmap = "pca"\n')
    result = cli("run", config)
    assert result.exit_code == 0 and "run: export pca" in result.output, result.output
    assert (folder / "out" / "exports" / "pca.atlas.parquet").is_file()
    assert "skip (current): export pca" in cli("run", config).output


def test_the_plan_knows_the_clusterings_the_run_will_hold(folder):
    """The default clustering is chosen among those the run holds and those the jobs before make (a and b, none
    of them leiden: no default); a clustering that a job before removes (a graph recomputed) is missing; inputs
    may be recursive globs."""
    out = folder / "out"
    assert cli("clusters", out, "--name", "a", "--levels", "1", "-q").exit_code == 0
    config = write_config(folder)
    text = config.read_text().replace('inputs = ["data/', 'inputs = ["data/**/')
    assert 'inputs = ["data/**/' in text
    config.write_text(text + '[[clusters]]\nname = "b"\nlevels = 1\n[[plot]]\nmap = "tsne"\ncolor = "cluster"\n')
    dry = cli("run", config, "--dry-run")
    assert dry.exit_code == 2 and "will hold a, b, none of them the default (leiden): name one" in dry.output, \
        dry.output
    config = write_config(folder, k=12)
    config.write_text(config.read_text().replace("[neighbors]\n", "[neighbors]\noverwrite = true\n")
                      .replace("[excess]\n", '[excess]\nby = "cluster:a"\n'))
    dry = cli("run", config, "--dry-run")
    assert dry.exit_code == 2 and "needs clusters/a of" in dry.output and "which the neighbors job before it may " \
        "remove" in dry.output, dry.output
    config = write_config(folder, k=12)  # the default clustering (the only one, a) goes the same way
    config.write_text(config.read_text().replace("[neighbors]\n", "[neighbors]\noverwrite = true\n")
                      + '[[plot]]\nmap = "tsne"\ncolor = "cluster"\n')
    dry = cli("run", config, "--dry-run")
    assert dry.exit_code == 2 and "with --color cluster needs the clustering 'a', which a job before it removes" \
        in dry.output, dry.output
