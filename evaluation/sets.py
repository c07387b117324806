"""Evaluation sets: triples (x_gen, mask, x_gt) read from webdataset shards or a folder of files.

Three kinds, one reader:
- shards with ``gen.png``, ``mask.png``, ``gt.png`` [+ ``txt``, ``json``] per sample, as
  ``evaluation.generate`` and ``evaluation.make_set`` write them (a folder of ``*.tar``, one
  ``.tar`` path, or a brace pattern);
- a folder of ``NAME.gen.png`` / ``NAME.mask.png`` / ``NAME.gt.png`` [+ ``NAME.txt``,
  ``NAME.json``] — how outputs of FLUX-Fill, SD inpainting or any tool made elsewhere get scored.

Both become the same in-memory records of encoded bytes, so both give the same table. The set
is checked before anything runs: a missing member or mismatched sizes is an ``EvalInputError``
naming the sample (the CLI turns it into one line and exit 2).
"""

from __future__ import annotations

import glob
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from pixperfect.image_io import read_image, read_mask

MEMBERS = ("gen", "mask", "gt")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp")


class EvalInputError(ValueError):
    """A problem with the evaluation inputs, reported as one line."""


@dataclass
class Record:
    """One sample as encoded bytes; decoded on demand (keeps 100s of 512² samples cheap in memory)."""

    key: str
    data: dict[str, bytes]
    prompt: str | None = None
    meta: dict = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        with Image.open(io.BytesIO(self.data["gen"])) as im:
            return im.height, im.width

    def decode(self) -> dict[str, torch.Tensor]:
        return {"x_gen": read_image(self.data["gen"], "RGB"), "mask": read_mask(self.data["mask"]),
                "x_gt": read_image(self.data["gt"], "RGB")}


def _member_of(ext_key: str) -> str | None:
    """``gen.png`` → ``gen``; ``mask.jpg`` → ``mask``; anything else → None."""
    stem, _, ext = ext_key.rpartition(".")
    return stem if stem in MEMBERS and f".{ext}" in IMAGE_EXTS else None


def _from_shards(urls: list[str]) -> list[Record]:
    import webdataset as wds

    records = []
    for url in urls:
        try:
            for raw in wds.tariterators.tarfile_samples([{"url": url}]):
                key = raw["__key__"]
                data = {m: raw[k] for k in raw if (m := _member_of(k)) is not None}
                prompt = raw["txt"].decode("utf-8", errors="replace") if "txt" in raw else None
                meta = json.loads(raw["json"]) if "json" in raw else {}
                records.append(Record(key, data, prompt, meta))
        except Exception as exc:  # a broken tar: one line, not a webdataset traceback
            raise EvalInputError(f"cannot read shard {url}: {exc}") from None
    return records


def _from_folder(folder: Path) -> list[Record]:
    records: dict[str, Record] = {}
    for path in sorted(folder.iterdir()):
        name = path.name
        for member in MEMBERS:
            for ext in IMAGE_EXTS:
                suffix = f".{member}{ext}"
                if name.endswith(suffix):
                    key = name[: -len(suffix)]
                    records.setdefault(key, Record(key, {})).data[member] = path.read_bytes()
    for key, rec in records.items():
        txt, meta = folder / f"{key}.txt", folder / f"{key}.json"
        rec.prompt = txt.read_text() if txt.is_file() else None
        rec.meta = json.loads(meta.read_text()) if meta.is_file() else {}
    return list(records.values())


def _shard_urls(spec: str) -> list[str]:
    import webdataset as wds

    urls = wds.shardlists.expand_urls(spec)
    missing = [u for u in urls if not Path(u).is_file()]
    if missing:
        raise EvalInputError(f"set {spec}: {len(missing)} shard(s) not found, e.g. {missing[0]}")
    return urls


def load_set(spec: str, limit: int | None = None) -> list[Record]:
    """Read and check a set: a folder of triples, a folder of shards, a shard path or brace pattern."""
    path = Path(str(spec))
    if path.is_dir():
        if any(path.glob("*.gen.*")):
            records = _from_folder(path)
        elif any(path.glob("*.tar")):
            records = _from_shards(sorted(glob.glob(str(path / "*.tar"))))
        else:
            raise EvalInputError(f"set {spec} holds neither NAME.gen.png/NAME.mask.png/NAME.gt.png triples "
                                 "nor *.tar shards")
    elif ".tar" in str(spec):
        records = _from_shards(_shard_urls(str(spec)))
    else:
        raise EvalInputError(f"set {spec} does not exist (expected a folder of triples, a folder of shards, "
                             "or a .tar path / brace pattern)")
    if limit is not None:
        records = records[:limit]
    if not records:
        raise EvalInputError(f"set {spec} is empty: no samples found")
    for rec in records:
        missing = [m for m in MEMBERS if m not in rec.data]
        if missing:
            raise EvalInputError(f"set {spec}: sample {rec.key!r} has no {'/'.join(missing)} image "
                                 f"(every sample needs {', '.join(f'{m}.png' for m in MEMBERS)})")
        sizes = {}
        for m in MEMBERS:
            try:
                with Image.open(io.BytesIO(rec.data[m])) as im:
                    im.load()  # a truncated file fails here, before any method runs
                    sizes[m] = (im.width, im.height)
            except Exception as exc:
                raise EvalInputError(f"set {spec}: sample {rec.key!r}: {m} is not a readable image ({exc})") from None
        if len(set(sizes.values())) != 1:
            raise EvalInputError(f"set {spec}: sample {rec.key!r} has mismatched sizes (W×H) "
                                 + ", ".join(f"{m} {w}×{h}" for m, (w, h) in sizes.items()))
    return records


def families_of(record: Record) -> list[str]:
    """The artifact-family labels a sample carries (``json["families"]``), else ``["unlabelled"]``."""
    fams = record.meta.get("families")
    return list(fams) if fams else ["unlabelled"]
