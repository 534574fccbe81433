"""Held-out folders for the QA and NER profiles: part of the training data set aside as the dev set.

Settings are chosen on these folders (`run_task_bench.py --holdout 0.1`), never on the real dev set. The split
keeps whole units together, so no held-out example shares text with a training one: CoNLL sentences, SQuAD
articles (every question of one article's paragraphs goes to the same side). The shuffle's seed is fixed (0),
so every run of every setting sees the same split. Folders are written once and re-used while their manifest
(source hash, share, seed) matches.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

#: Training file names a task's data folder may hold, in the order prunecli looks them up.
TRAIN_NAMES = {"conll2003": ("train.txt",), "squad": ("train-v1.1.json", "train-v1.1-unambiguous.json")}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def held_indices(n: int, share: float, seed: int = 0) -> set[int]:
    """round(share * n) of range(n), at least one and never all, from a seeded shuffle."""
    if not 0 < share < 1:
        raise ValueError(f"holdout share must be in (0, 1), not {share}")
    k = min(max(1, round(share * n)), n - 1)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return set(order[:k])


def _conll_sentences(text: str) -> list[str]:
    """The blank-line separated blocks of a CoNLL file, each with its lines as written."""
    blocks, current = [], []
    for line in text.splitlines():
        if line.strip():
            current.append(line)
        elif current:
            blocks.append("\n".join(current))
            current = []
    if current:
        blocks.append("\n".join(current))
    return blocks


def _split_conll(src: Path, dst: Path, share: float, seed: int) -> dict:
    blocks = _conll_sentences(src.read_text(encoding="utf-8"))
    sentences = [i for i, b in enumerate(blocks) if not b.startswith("-DOCSTART-")]
    held = {sentences[i] for i in held_indices(len(sentences), share, seed)}
    train = [b for i, b in enumerate(blocks) if i not in held]
    dev = [blocks[i] for i in sorted(held)]
    (dst / "train.txt").write_text("\n\n".join(train) + "\n", encoding="utf-8")
    (dst / "dev.txt").write_text("\n\n".join(dev) + "\n", encoding="utf-8")
    return {"unit": "sentence", "train": len(sentences) - len(held), "dev": len(held)}


def _split_squad(src: Path, dst: Path, share: float, seed: int) -> dict:
    squad = json.loads(src.read_text(encoding="utf-8"))
    articles = squad["data"]
    held = held_indices(len(articles), share, seed)
    version = squad.get("version", "1.1")

    def questions(items: list[dict]) -> int:
        return sum(len(p["qas"]) for a in items for p in a["paragraphs"])

    train = [a for i, a in enumerate(articles) if i not in held]
    dev = [a for i, a in enumerate(articles) if i in held]
    for name, items in (("train-v1.1.json", train), ("dev-v1.1.json", dev)):
        (dst / name).write_text(json.dumps({"version": version, "data": items}), encoding="utf-8")
    return {"unit": "article", "train": questions(train), "dev": questions(dev),
            "articles": {"train": len(train), "dev": len(dev)}}


def holdout_folder(task: str, src: Path, dst: Path, share: float, seed: int = 0) -> dict:
    """Write (or re-use) `dst`: the training data of `src` less a `share` held out as the dev set.

    Returns the folder's manifest: source file and hash, share, seed, unit of the split and counts."""
    src, dst = Path(src), Path(dst)
    names = TRAIN_NAMES.get(task)
    if names is None:
        raise ValueError(f"no held-out split for task {task!r}; tasks: {', '.join(TRAIN_NAMES)}")
    source = next((src / n for n in names if (src / n).is_file()), None)
    if source is None:
        raise FileNotFoundError(f"{src}: no training file (looked for {', '.join(names)})")
    manifest = {"source": str(source.resolve()), "source_sha256": _sha256(source), "task": task,
                "holdout": share, "seed": seed}
    path = dst / "bench_manifest.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if {k: old.get(k) for k in manifest} == manifest:
            return old
    dst.mkdir(parents=True, exist_ok=True)
    split = _split_conll if task == "conll2003" else _split_squad
    manifest["counts"] = split(source, dst, share, seed)
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")  # last: a crash leaves no manifest
    return manifest
