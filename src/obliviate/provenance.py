"""C2PA provenance of a finished run: signed sidecar manifests next to its weight files.

``sign_run`` writes ``model/<file>.c2pa`` for every weight or adapter file (``model/*.safetensors``):
a C2PA manifest, not embedded in the file (``Builder.set_no_embed()``), that binds the file's bytes
(signed as ``application/octet-stream``, data-hash binding) to what was done to them:

- actions: ``c2pa.opened`` of the base model (the ingredient, with its weights sha256), then
  ``c2pa.edited`` with the method, its settings and the sha256 of ``config.yaml``;
- ``org.obliviate.evaluation``: the run's evaluation summary (forget / retain / utility numbers,
  the suite and its hash).

``verify_run`` checks each signature, the data hash of each file, and that the file hashes agree
with the run's own ``state.json`` and ``manifest.json``. The official ``c2pa-python`` bindings do
the C2PA work; they are the optional extra ``obliviate[c2pa]`` and imported only here, inside the
functions that need them. The formats are in docs/formats.md.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from obliviate.errors import ProvenanceError, RunFolderError
from obliviate.hashing import file_sha256
from obliviate.runs import RunFolder, atomic_write_bytes

__all__ = ["SIDECAR_SUFFIX", "EVALUATION_LABEL", "OK", "TAMPERED", "UNTRUSTED", "MISSING", "FileCheck",
           "evaluation_summary", "manifest_definition", "sign_run", "verify_run", "weight_files",
           "SIGN_ENV", "signing_from_environment"]

SIDECAR_SUFFIX = ".c2pa"
EVALUATION_LABEL = "org.obliviate.evaluation"
WEIGHTS_FORMAT = "application/octet-stream"
BASE_INGREDIENT_ID = "base_model"
CERTIFICATE_MARKER = "-----BEGIN CERTIFICATE-----"
# The parts of a run's config that are its data and evaluation, not the method's settings.
NOT_SETTINGS = ("model", "eval", "trust_remote_code", "force", "overwrite", "out")

OK, TAMPERED, UNTRUSTED, MISSING = "ok", "tampered", "untrusted certificate", "missing signature"
# The certificate chain, key and (optional) time-stamp authority that `obliviate demo` signs with.
SIGN_ENV = ("OBLIVIATE_SIGN_CERT", "OBLIVIATE_SIGN_KEY", "OBLIVIATE_SIGN_TSA_URL")


@dataclass
class FileCheck:
    """What ``verify_run`` found for one weight file.

    Attributes:
        path: the file, relative to the run folder (``model/model.safetensors``).
        status: ``ok``, ``tampered``, ``untrusted certificate`` or ``missing signature``.
        detail: why, in a few words (validation codes, the signer).
    """

    path: str
    status: str
    detail: str

    def line(self) -> str:
        return f"{self.path}: {self.status} ({self.detail})"


def _c2pa():
    """The ``c2pa`` module, or one clear error when the extra is not installed."""
    try:
        import c2pa
        import cryptography  # noqa: F401  (reads the signing key's algorithm)
    except ImportError as exc:
        raise ProvenanceError(f"C2PA signing and verifying need the extra `obliviate[c2pa]` ({exc.name} is missing): "
                              "pip install 'obliviate[c2pa]'") from None
    return c2pa


# ---- the run's facts ----

def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunFolderError(f"'{path}' is corrupt ({exc}): run the same command again to rewrite it") from None


def _finished_run(run) -> tuple[Path, dict, dict, str]:
    """``(folder, manifest.json, state.json, name of the stage that wrote model/)`` of a finished run."""
    path = Path(run)
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise RunFolderError(f"'{path}' has no manifest.json: pass the folder of a finished run "
                             "(`obliviate unlearn/whp/run --out FOLDER` writes one)")
    manifest = _read_json(manifest_path)
    if not isinstance(manifest, dict) or not manifest.get("complete"):
        raise RunFolderError(f"the run in '{path}' is not complete (manifest.json says so): finish it by running "
                             "the same command again, then sign it")
    stages = RunFolder(path).state()["stages"]
    stage = next((name for name, info in stages.items() if info.get("output") == "model"), None)
    if stage is None or not (path / "model").is_dir():
        raise RunFolderError(f"the run in '{path}' has no model/ folder to sign or verify")
    return path, manifest, stages, stage


def weight_files(run_dir, recorded=()) -> list[str]:
    """Weight and adapter files of a run's ``model/`` (on disk or ``recorded``), relative to the run folder."""
    names = {p.name for p in Path(run_dir, "model").glob("*.safetensors")}
    names |= {n for n in recorded if n.endswith(".safetensors") and "/" not in n}
    return [f"model/{name}" for name in sorted(names)]


def _without_local_paths(data):
    """Settings fit to publish: local absolute paths reduced to file names (config_sha256 binds the rest)."""
    if isinstance(data, dict):
        return {k: _without_local_paths(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_without_local_paths(v) for v in data]
    if isinstance(data, str):
        # a whole path, or paths inside a sentence such as manifest.json's "removed"
        return Path(data).name if os.path.isabs(data) else re.sub(r"(?<!\S)/\S+", lambda m: Path(m[0]).name, data)
    return data


def evaluation_summary(metrics: dict | None) -> dict:
    """The ``org.obliviate.evaluation`` assertion of a run's ``metrics.json`` content.

    Args:
        metrics: the content of ``metrics.json`` (``{"evaluations": {label: EVALUATION}}``), or None.

    Returns:
        ``{"evaluations": {label: {"weights_sha256", "suite": {"name", "sha256"}, "summary":
        {"forget.mean", ...}, "metrics": {name: {"group", "value", "higher_is_better", "n"}}}}}``;
        a skipped metric has ``group`` and ``skipped`` only.
    """
    from obliviate.reporting.results import group_summary

    evaluations = {}
    for label, evaluation in ((metrics or {}).get("evaluations") or {}).items():
        suite = evaluation.get("suite") or {}
        evaluations[label] = {
            "weights_sha256": (evaluation.get("model") or {}).get("weights_sha256"),
            "suite": {"name": suite.get("name"), "sha256": suite.get("sha256")},
            "summary": group_summary(evaluation),
            "metrics": {name: ({"group": m.get("group"), "skipped": m["skipped"]} if "skipped" in m else
                               {k: m.get(k) for k in ("group", "value", "higher_is_better", "n")})
                        for name, m in (evaluation.get("metrics") or {}).items()},
        }
    return {"evaluations": evaluations}


def manifest_definition(file: str, manifest: dict, config_sha256: str) -> dict:
    """The C2PA manifest definition (``c2pa.Builder`` JSON) of one weight file of a run.

    Args:
        file: the file, relative to the run folder (``model/model.safetensors``): the manifest's title.
        manifest: the run's ``manifest.json``.
        config_sha256: sha256 of the run's ``config.yaml``.
    """
    from obliviate import __version__

    agent = {"name": "obliviate", "version": __version__}
    base = manifest.get("base_model") or {}
    ingredient = {"title": _without_local_paths(str(base.get("spec"))), "format": WEIGHTS_FORMAT,
                  "relationship": "parentOf", "instance_id": BASE_INGREDIENT_ID,
                  "metadata": {"org.obliviate.weights_sha256": base.get("weights_sha256")}}
    settings = {k: v for k, v in (manifest.get("hyperparameters") or {}).items() if k not in NOT_SETTINGS}
    actions = [
        {"action": "c2pa.opened", "softwareAgent": agent, "parameters": {"ingredientIds": [BASE_INGREDIENT_ID]}},
        {"action": "c2pa.edited", "softwareAgent": agent,
         "description": _without_local_paths(f"unlearning: {manifest.get('removed')}"),
         "parameters": {"method": manifest.get("method"), "settings": _without_local_paths(settings),
                        "config_sha256": config_sha256}},
    ]
    return {"claim_generator_info": [agent], "title": file, "format": WEIGHTS_FORMAT, "ingredients": [ingredient],
            "assertions": [{"label": "c2pa.actions", "data": {"actions": actions}},
                           {"label": EVALUATION_LABEL, "data": evaluation_summary(manifest.get("metrics"))}]}


# ---- signing ----

def _read_pem(path, what: str, marker: str) -> bytes:
    """A PEM file's bytes, refused in one line when it is missing or holds no ``marker``."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ProvenanceError(f"cannot read the {what} '{path}' ({exc.strerror}): pass a PEM file") from None
    if marker.encode() not in data:
        raise ProvenanceError(f"'{path}' is not a PEM {what} (no '{marker}' line)")
    return data


def _signing_algorithm(c2pa, key_pem: bytes, key_path):
    """The C2PA algorithm of a private key: ES256/384/512 for EC keys, PS256 for RSA, Ed25519."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ProvenanceError(f"cannot load the private key '{key_path}' ({exc}): pass an unencrypted PEM key") \
            from None
    algs = c2pa.C2paSigningAlg
    if isinstance(key, ec.EllipticCurvePrivateKey):
        by_curve = {"secp256r1": algs.ES256, "secp384r1": algs.ES384, "secp521r1": algs.ES512}
        if key.curve.name in by_curve:
            return by_curve[key.curve.name]
    if isinstance(key, rsa.RSAPrivateKey):
        return algs.PS256
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return algs.ED25519
    raise ProvenanceError(f"the key '{key_path}' is not one C2PA signs with: use an EC (P-256, P-384, P-521), "
                          "RSA or Ed25519 key")


class _Discard:
    """A write stream that keeps nothing: a sidecar signing copies the asset, which we do not need."""

    def __init__(self):
        self.position = self.size = 0

    def write(self, data) -> int:
        self.position += len(data)
        self.size = max(self.size, self.position)
        return len(data)

    def read(self, n: int = -1) -> bytes:
        return b""

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = (offset, self.position + offset, self.size + offset)[whence]
        return self.position

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass


def sign_run(run, cert, key, tsa_url: str | None = None) -> list[str]:
    """Sign every weight file of a finished run with a sidecar C2PA manifest (``model/<file>.c2pa``).

    Args:
        run: the run folder (its manifest.json must say ``complete``).
        cert: PEM file with the signing certificate first, then its chain (the root may be left out).
        key: PEM file with the certificate's private key (unencrypted).
        tsa_url: an RFC 3161 time-stamp authority, so the signature outlives the certificate.

    Returns:
        The sidecar files written, relative to the run folder.

    Raises:
        ProvenanceError: the extra is missing, or the certificate, key or time-stamp authority is refused.
        RunFolderError: the run is not finished, or a weight file is not the one it wrote.
    """
    c2pa = _c2pa()
    path, manifest, stages, stage = _finished_run(run)
    if tsa_url and not tsa_url.startswith(("http://", "https://")):
        raise ProvenanceError(f"--tsa-url must start with http:// or https://, got '{tsa_url}'")
    cert_pem = _read_pem(cert, "certificate chain", CERTIFICATE_MARKER)
    key_pem = _read_pem(key, "private key", "PRIVATE KEY-----")
    algorithm = _signing_algorithm(c2pa, key_pem, key)
    config_sha256 = file_sha256(path / "config.yaml")
    if manifest.get("metrics") is None and (path / "metrics.json").is_file():
        manifest = {**manifest, "metrics": _read_json(path / "metrics.json")}
    written = []
    with RunFolder(path).lock():
        recorded = stages[stage].get("outputs", {})
        for file in weight_files(path, recorded):  # sign only what the run wrote
            if not (path / file).is_file() or recorded.get(file.removeprefix("model/")) != file_sha256(path / file):
                raise RunFolderError(f"{file} is not the file the run wrote (state.json records another sha256, or "
                                     "none): run the stage again rather than sign it")
        try:
            with c2pa.Signer.from_info(c2pa.C2paSignerInfo(algorithm, cert_pem, key_pem, tsa_url)) as signer:
                for file in weight_files(path):
                    with c2pa.Builder(manifest_definition(file, manifest, config_sha256)) as builder, \
                            open(path / file, "rb") as source:
                        builder.set_no_embed()
                        sidecar = builder.sign(signer, WEIGHTS_FORMAT, source, _Discard())
                    atomic_write_bytes(path / (file + SIDECAR_SUFFIX), sidecar)
                    written.append(file + SIDECAR_SUFFIX)
        except c2pa.C2paError as exc:
            tsa = f", and that the time-stamp authority {tsa_url} is reachable" if tsa_url else ""
            raise ProvenanceError(f"signing failed ({exc}): check that the certificate chain '{cert}' starts with the "
                                  f"certificate of the key '{key}' and has a C2PA key usage (emailProtection or "
                                  f"documentSigning){tsa}") from None
    return written


def signing_from_environment() -> tuple[str, str, str | None] | None:
    """``(cert, key, tsa_url)`` from ``$OBLIVIATE_SIGN_CERT``, ``$OBLIVIATE_SIGN_KEY`` and
    ``$OBLIVIATE_SIGN_TSA_URL``, checked (extra installed, readable PEM files); None when neither is set.

    Raises:
        ProvenanceError: only one of the two is set, a file is not a readable PEM, or the extra is missing.
    """
    cert, key, tsa_url = (os.environ.get(name) or None for name in SIGN_ENV)
    if not cert and not key:
        return None
    if not (cert and key):
        raise ProvenanceError(f"set both {SIGN_ENV[0]} and {SIGN_ENV[1]} (a certificate chain and its key, PEM) to "
                              "sign the run, or neither")
    _c2pa()
    _read_pem(cert, f"certificate chain (${SIGN_ENV[0]})", CERTIFICATE_MARKER)
    _read_pem(key, f"private key (${SIGN_ENV[1]})", "PRIVATE KEY-----")
    return cert, key, tsa_url


# ---- verifying ----

def _reader_context(c2pa, trust_anchors):
    """A c2pa Context: the certificate is judged against ``trust_anchors`` only when they are given."""
    settings = {"verify": {"verify_trust": trust_anchors is not None, "ocsp_fetch": False,
                           "remote_manifest_fetch": False}}
    if trust_anchors is not None:
        anchors = _read_pem(trust_anchors, "trust anchors file", CERTIFICATE_MARKER)
        settings["trust"] = {"trust_anchors": anchors.decode()}
    return c2pa.Context.from_dict(settings)


def _signed_facts(active: dict) -> dict:
    """What verify compares with the run: the title, the config hash and the base model's hash."""
    edited = {}
    for assertion in active.get("assertions", []):
        if assertion.get("label", "").startswith("c2pa.actions"):
            edited = next((a for a in assertion["data"].get("actions", []) if a.get("action") == "c2pa.edited"), {})
    base = next((i for i in active.get("ingredients", []) if i.get("relationship") == "parentOf"), {})
    return {"title": active.get("title"),
            "config_sha256": (edited.get("parameters") or {}).get("config_sha256"),
            "base_sha256": (base.get("metadata") or {}).get("org.obliviate.weights_sha256")}


def _run_disagreements(path: Path, file: str, facts: dict, manifest: dict, stages: dict, stage: str) -> list[str]:
    """How the file and its signed manifest disagree with the run's state.json and manifest.json."""
    name = file.removeprefix("model/")
    sha = file_sha256(path / file)
    problems = []
    if stages[stage].get("outputs", {}).get(name) != sha:
        problems.append("its sha256 differs from state.json's")
    if (manifest.get("stages") or {}).get(stage, {}).get("outputs", {}).get(name) != sha:
        problems.append("its sha256 differs from manifest.json's")
    if facts["title"] != file:
        problems.append(f"the manifest was signed for '{facts['title']}'")
    if facts["config_sha256"] != file_sha256(path / "config.yaml"):
        problems.append("the manifest was signed for another config.yaml")
    if facts["base_sha256"] != (manifest.get("base_model") or {}).get("weights_sha256"):
        problems.append("the manifest names another base model")
    return problems


def _check_file(c2pa, context, path: Path, file: str, manifest: dict, stages: dict, stage: str,
                trusted: bool) -> FileCheck:
    sidecar = path / (file + SIDECAR_SUFFIX)
    if not (path / file).is_file():
        return FileCheck(file, TAMPERED, "the file is missing: state.json records it")
    if not sidecar.is_file():
        return FileCheck(file, MISSING, f"no {sidecar.name}")
    try:
        with open(path / file, "rb") as stream, \
                c2pa.Reader(WEIGHTS_FORMAT, stream, sidecar.read_bytes(), context) as reader:
            state = reader.get_validation_state()
            results = (reader.get_validation_results() or {}).get("activeManifest") or {}
            active = reader.get_active_manifest() or {}
    except c2pa.C2paError as exc:
        return FileCheck(file, TAMPERED, f"{sidecar.name} is not a readable C2PA manifest: {exc}")
    failures = [f["code"] for f in results.get("failure", [])]
    broken = [code for code in failures if not code.startswith("signingCredential.")]
    if broken or state == "Invalid":
        return FileCheck(file, TAMPERED, ", ".join(broken) or f"validation state {state}")
    problems = _run_disagreements(path, file, _signed_facts(active), manifest, stages, stage)
    if problems:
        return FileCheck(file, TAMPERED, "; ".join(problems))
    info = active.get("signature_info") or {}
    signer = f"signed by '{info.get('common_name')}' (issuer '{info.get('issuer')}')"
    if failures or (trusted and state != "Trusted"):
        return FileCheck(file, UNTRUSTED, f"{', '.join(failures) or state}: {signer}, which --trust-anchors does "
                                          "not vouch for; the signature and data hash are intact")
    return FileCheck(file, OK, f"{signer}, " + ("trusted" if trusted else
                                              "certificate not checked: pass --trust-anchors to check it"))


def verify_run(run, trust_anchors=None) -> list[FileCheck]:
    """Check the sidecar manifest of every weight file of a finished run.

    Args:
        run: the run folder.
        trust_anchors: PEM file of the certificates to trust (roots or intermediates). Without it the
            signature and data hashes are checked, the certificate is not.

    Returns:
        One :class:`FileCheck` per weight file: ``ok``; ``tampered`` (the data hash or signature fails,
        or the file or manifest disagrees with the run's state.json / manifest.json); ``untrusted
        certificate`` (intact, but signed by a certificate the trust anchors do not vouch for);
        ``missing signature``.
    """
    c2pa = _c2pa()
    path, manifest, stages, stage = _finished_run(run)
    context = _reader_context(c2pa, trust_anchors)
    files = weight_files(path, stages[stage].get("outputs", {}))
    return [_check_file(c2pa, context, path, file, manifest, stages, stage, trust_anchors is not None)
            for file in files]
