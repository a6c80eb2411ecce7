"""Release stage: build (build.py), checksums (manifest.py), verify (verify.py, phi.py), diff (diff.py),
data card files (dictionary.py, croissant.py, patient_info.py, qc.py), definition loading (definition.py).

Entry points: ``build_release(load_definition(path), out)``, ``verify_release(dir) -> list[Problem]``,
``diff_releases(a, b) -> dict``. Submodules are imported on use so ``import etl.release`` stays light.
"""
