"""C2PA provenance: `obliviate sign` / `obliviate verify` on finished runs of the tiny model.

A throw-away CA and signing certificate (ES256, emailProtection) are made with `cryptography`; two
runs (full weights, and a LoRA adapter) are made once with `obliviate unlearn` and copied per test.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import shutil
import sys

import pytest

pytest.importorskip("c2pa")
pytest.importorskip("cryptography")

from obliviate.cli import main  # noqa: E402
from obliviate.provenance import EVALUATION_LABEL, signing_from_environment, verify_run  # noqa: E402
from obliviate.reporting.results import group_summary  # noqa: E402

os.environ["OBLIVIATE_PROGRESS"] = "0"


def _certificate_chain(folder, tag: str) -> dict:
    """A CA and a leaf certificate C2PA accepts (ES256, digitalSignature, emailProtection), as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common_name):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"obliviate tests {tag}")])

    def usage(signer: bool):
        return x509.KeyUsage(digital_signature=signer, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=not signer,
                             crl_sign=not signer, encipher_only=False, decipher_only=False)

    def certificate(subject, issuer, public_key, signing_key, extensions):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=30))
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate(name(f"{tag} CA"), name(f"{tag} CA"), ca_key.public_key(), ca_key,
                     [(x509.BasicConstraints(ca=True, path_length=0), True), (usage(False), True)])
    leaf = certificate(name(f"{tag} signer"), ca.subject, key.public_key(), ca_key,
                       [(x509.BasicConstraints(ca=False, path_length=None), True), (usage(True), True),
                        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False),
                        (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False)])
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)  # noqa: E731
    files = {"chain": folder / f"{tag}_chain.pem", "key": folder / f"{tag}_key.pem", "ca": folder / f"{tag}_ca.pem"}
    files["chain"].write_bytes(pem(leaf) + pem(ca))
    files["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    files["ca"].write_bytes(pem(ca))
    return files


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """Two unrelated chains: ``a`` signs, ``b`` is someone else's CA."""
    folder = tmp_path_factory.mktemp("certs")
    return {"a": _certificate_chain(folder, "a"), "b": _certificate_chain(folder, "b")}


@pytest.fixture(scope="module")
def finished_runs(tiny_model_dir, tmp_path_factory):
    """A finished full-weights run and a finished LoRA-adapter run (gradient ascent, 4 steps), unsigned."""
    from conftest import TINY_TEXT

    root = tmp_path_factory.mktemp("c2pa_runs")
    (root / "forget.txt").write_text((TINY_TEXT.split("\n")[0] + "\n") * 6)
    (root / "probe.jsonl").write_text(json.dumps({"prompt": "Harry Potter went to", "references": ["Hogwarts"]})
                                      + "\n")
    command = ["unlearn", "--model", str(tiny_model_dir), "--method", "gradient_ascent",
               "--forget", str(root / "forget.txt"), "--probe-prompts", str(root / "probe.jsonl"),
               "--context-length", "16", "--set", "train.max_steps=4", "--set", "train.batch_size=2",
               "--set", "train.learning_rate=1e-3"]
    assert main(command + ["--out", str(root / "full")]) == 0
    assert main(command + ["--out", str(root / "adapter"), "--lora", "--lora-save", "adapter"]) == 0
    return {"full": root / "full", "adapter": root / "adapter"}


@pytest.fixture
def runs(finished_runs, tmp_path):
    """Fresh copies of the finished runs (tests damage them)."""
    return {kind: shutil.copytree(path, tmp_path / kind) for kind, path in finished_runs.items()}


def _sign(run, chain) -> int:
    return main(["sign", str(run), "--cert", str(chain["chain"]), "--key", str(chain["key"])])


def _verify(run, capsys, anchors=None) -> tuple[int, list[str], str]:
    capsys.readouterr()
    code = main(["verify", str(run)] + (["--trust-anchors", str(anchors)] if anchors else []))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def _signed_manifest(run, file="model/model.safetensors") -> dict:
    import c2pa

    with open(run / file, "rb") as stream, \
            c2pa.Reader("application/octet-stream", stream, (run / (file + ".c2pa")).read_bytes()) as reader:
        return reader.get_active_manifest()


def test_signed_runs_verify_and_record_what_was_done(runs, certs, capsys, tmp_path_factory):
    for run, weights in ((runs["full"], "model/model.safetensors"),
                         (runs["adapter"], "model/adapter_model.safetensors")):
        assert _sign(run, certs["a"]) == 0
        assert capsys.readouterr().out.splitlines() == [f"signed {weights}: {weights}.c2pa"]
        code, lines, _ = _verify(run, capsys, certs["a"]["ca"])
        assert code == 0 and lines == [f"{weights}: ok (signed by 'a signer' (issuer 'obliviate tests a'), trusted)"]
        code, lines, _ = _verify(run, capsys)  # no trust anchors: the signature and hashes only
        assert code == 0 and "certificate not checked" in lines[0]

    run = runs["full"]
    signed = _signed_manifest(run)
    manifest = json.loads((run / "manifest.json").read_text())
    assert signed["title"] == "model/model.safetensors"
    actions = next(a for a in signed["assertions"] if a["label"].startswith("c2pa.actions"))["data"]["actions"]
    assert [a["action"] for a in actions] == ["c2pa.opened", "c2pa.edited"]  # opened first, as C2PA asks
    base = signed["ingredients"][0]
    assert base["relationship"] == "parentOf"
    assert base["metadata"]["org.obliviate.weights_sha256"] == manifest["base_model"]["weights_sha256"]
    edited = actions[1]["parameters"]
    from obliviate.hashing import file_sha256

    assert edited["method"] == "gradient_ascent" and edited["config_sha256"] == file_sha256(run / "config.yaml")
    assert edited["settings"]["train"]["max_steps"] == 4
    assert edited["settings"]["forget"]["sources"] == ["forget.txt"]  # local paths are not published
    assert actions[1]["description"] == "unlearning: knowledge of the forget corpus forget.txt"
    assert str(tmp_path_factory.getbasetemp()) not in json.dumps(signed)  # nor the base model's path
    evaluation = next(a for a in signed["assertions"] if a["label"] == EVALUATION_LABEL)["data"]["evaluations"]
    metrics = json.loads((run / "metrics.json").read_text())["evaluations"]
    assert set(evaluation) == {"base", "unlearned"}
    for label in evaluation:
        assert evaluation[label]["summary"] == group_summary(metrics[label])
        assert evaluation[label]["suite"]["sha256"] == metrics[label]["suite"]["sha256"]
        assert evaluation[label]["metrics"]["reference_probability"]["value"] == \
            metrics[label]["metrics"]["reference_probability"]["value"]


def test_one_flipped_byte_is_tampering(runs, certs, capsys):
    run = runs["full"]
    assert _sign(run, certs["a"]) == 0
    weights = run / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 1
    weights.write_bytes(bytes(data))
    code, lines, err = _verify(run, capsys, certs["a"]["ca"])
    assert code == 1 and lines[0].startswith("model/model.safetensors: tampered (")
    assert "assertion.dataHash.mismatch" in lines[0]
    assert "verification failed: 1 of 1 files (tampered)" in err


def test_replaced_weights_are_not_signed_and_a_foreign_signature_disagrees_with_the_run(runs, certs, capsys):
    """Weights that are not the run's: `sign` refuses them, and a valid signature made elsewhere over them
    is caught by the run's own state.json and manifest.json."""
    import c2pa

    from obliviate.hashing import file_sha256
    from obliviate.provenance import manifest_definition

    run = runs["full"]
    weights = run / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 1
    weights.write_bytes(bytes(data))
    capsys.readouterr()
    assert _sign(run, certs["a"]) == 2
    assert "is not the file the run wrote" in capsys.readouterr().err

    definition = manifest_definition("model/model.safetensors", json.loads((run / "manifest.json").read_text()),
                                     file_sha256(run / "config.yaml"))
    info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, certs["a"]["chain"].read_bytes(),
                               certs["a"]["key"].read_bytes(), None)
    with c2pa.Signer.from_info(info) as signer, c2pa.Builder(definition) as builder, open(weights, "rb") as source:
        builder.set_no_embed()
        (run / "model" / "model.safetensors.c2pa").write_bytes(
            builder.sign(signer, "application/octet-stream", source, io.BytesIO()))
    code, lines, _ = _verify(run, capsys, certs["a"]["ca"])
    assert code == 1 and "tampered" in lines[0]
    assert "sha256 differs from state.json's" in lines[0] and "sha256 differs from manifest.json's" in lines[0]


def test_swapped_manifest_fails(runs, certs, capsys):
    full, adapter = runs["full"], runs["adapter"]
    assert _sign(full, certs["a"]) == 0 and _sign(adapter, certs["a"]) == 0
    shutil.copy(adapter / "model" / "adapter_model.safetensors.c2pa", full / "model" / "model.safetensors.c2pa")
    code, lines, _ = _verify(full, capsys, certs["a"]["ca"])
    assert code == 1 and lines[0].startswith("model/model.safetensors: tampered (")
    assert "assertion.dataHash.mismatch" in lines[0]


def test_manifest_of_another_config_fails(runs, certs, capsys):
    """Same weights, but config.yaml changed after signing: the manifest is not this run's."""
    run = runs["full"]
    assert _sign(run, certs["a"]) == 0
    with open(run / "config.yaml", "a") as fh:
        fh.write("# edited\n")
    code, lines, _ = _verify(run, capsys, certs["a"]["ca"])
    assert code == 1 and "tampered" in lines[0] and "another config.yaml" in lines[0]


def test_untrusted_certificate_is_not_tampering(runs, certs, capsys):
    run = runs["full"]
    assert _sign(run, certs["a"]) == 0
    code, lines, err = _verify(run, capsys, certs["b"]["ca"])
    assert code == 1 and lines[0].startswith("model/model.safetensors: untrusted certificate (")
    assert "signingCredential.untrusted" in lines[0] and "tampered" not in lines[0]
    assert "untrusted certificate" in err
    assert [c.status for c in verify_run(run, trust_anchors=certs["a"]["ca"])] == ["ok"]


def test_unsigned_run_says_so(runs, capsys):
    code, lines, err = _verify(runs["adapter"], capsys)
    assert code == 1
    assert lines == ["model/adapter_model.safetensors: missing signature (no adapter_model.safetensors.c2pa)"]
    assert "is not signed: sign it with `obliviate sign" in err


def test_unfinished_run_and_bad_files_are_one_line(runs, certs, capsys, tmp_path):
    run = runs["full"]
    cases = [
        (["sign", str(tmp_path), "--cert", str(certs["a"]["chain"]), "--key", str(certs["a"]["key"])],
         "has no manifest.json"),
        (["verify", str(tmp_path)], "has no manifest.json"),
        (["sign", str(run), "--cert", str(certs["a"]["key"]), "--key", str(certs["a"]["key"])],
         "is not a PEM certificate chain"),
        (["sign", str(run), "--cert", str(certs["a"]["chain"]), "--key", str(tmp_path / "nope.pem")],
         "cannot read the private key"),
        (["sign", str(run), "--cert", str(certs["a"]["chain"]), "--key", str(certs["b"]["key"])],
         "signing failed"),
        (["sign", str(run), "--cert", str(certs["a"]["chain"]), "--key", str(certs["a"]["key"]),
          "--tsa-url", "ftp://example"], "--tsa-url must start with http"),
        (["verify", str(run), "--trust-anchors", str(certs["a"]["key"])], "is not a PEM trust anchors file"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], (argv, err)
    assert not list((run / "model").glob("*.c2pa"))  # nothing signed by a refused command

    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    capsys.readouterr()
    assert _sign(run, certs["a"]) == 2
    assert "is not complete" in capsys.readouterr().err
    (run / "manifest.json").write_text("{")
    assert main(["verify", str(run)]) == 2
    assert "manifest.json' is corrupt" in capsys.readouterr().err


def test_missing_extra_is_one_clear_line(runs, certs, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "c2pa", None)  # `import c2pa` raises ImportError
    for argv in (["sign", str(runs["full"]), "--cert", str(certs["a"]["chain"]), "--key", str(certs["a"]["key"])],
                 ["verify", str(runs["full"])]):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "pip install 'obliviate[c2pa]'" in err[0] and "c2pa is missing" in err[0]


def test_demo_signing_comes_from_the_environment(runs, certs, capsys, monkeypatch, tiny_model_dir, tmp_path):
    for name in ("OBLIVIATE_SIGN_CERT", "OBLIVIATE_SIGN_KEY", "OBLIVIATE_SIGN_TSA_URL"):
        monkeypatch.delenv(name, raising=False)
    assert signing_from_environment() is None
    monkeypatch.setenv("OBLIVIATE_SIGN_CERT", str(certs["a"]["chain"]))
    # half configured: the demo refuses before it writes anything
    assert main(["demo", "--model", str(tiny_model_dir), "--out", str(tmp_path / "demo")]) == 2
    assert "set both OBLIVIATE_SIGN_CERT and OBLIVIATE_SIGN_KEY" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()
    monkeypatch.setenv("OBLIVIATE_SIGN_KEY", str(certs["a"]["key"]))
    assert signing_from_environment() == (str(certs["a"]["chain"]), str(certs["a"]["key"]), None)


def test_sidecars_do_not_change_the_run_as_a_base_model(runs, certs):
    """A signed run used as another run's model is the same model: its sidecars are not weights."""
    from obliviate.hashing import path_signature

    before = path_signature(str(runs["full"]))
    assert _sign(runs["full"], certs["a"]) == 0
    assert path_signature(str(runs["full"])) == before


def test_demo_signs_its_run_when_a_certificate_is_configured(certs, capsys, monkeypatch, tiny_model_dir, tmp_path):
    import obliviate.demo

    small = {**obliviate.demo.DEMO_SETTINGS,
             "synthesize": {**obliviate.demo.DEMO_SETTINGS["synthesize"], "n_samples": 8, "max_new_tokens": 40},
             "reinforce": {"train": {"max_steps": 2, "batch_size": 2}}, "finetune": {"max_steps": 2, "batch_size": 2}}
    monkeypatch.setattr(obliviate.demo, "DEMO_SETTINGS", small)
    monkeypatch.setenv("OBLIVIATE_SIGN_CERT", str(certs["a"]["chain"]))
    monkeypatch.setenv("OBLIVIATE_SIGN_KEY", str(certs["a"]["key"]))
    monkeypatch.delenv("OBLIVIATE_SIGN_TSA_URL", raising=False)
    out = tmp_path / "demo"
    assert main(["demo", "--model", str(tiny_model_dir), "--out", str(out)]) == 0
    assert (out / "model" / "model.safetensors.c2pa").is_file()
    card = (out / "model" / "README.md").read_text(encoding="utf-8")
    assert "model-index" in card
    code, lines, _ = _verify(out, capsys)
    assert code == 0 and lines and all(": ok" in line for line in lines), lines
