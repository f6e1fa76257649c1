"""Signed bundles (issue 12, Build 1): DSSE envelopes of in-toto statements, ed25519, committed trust.

Every key here is a real ed25519 key made by ``keys new`` in the test's temporary directory; nothing
is mocked.  The forgeries are made the way anyone who can write the files can (:func:`forge`): they
re-judge consistently (a descriptive field edited, every hash recomputed), so only the signature can
catch them; the unsigned controls show that.
"""

from __future__ import annotations

import base64
import json
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from montage.ops.invoke_tasks import build_namespace

from .conftest import Repo, simple_phase
from .forge import forge
from .test_runner import PARTIAL_GATE, status_of

ENVELOPE = "bundle.dsse.json"


def latest(repo: Repo, pid: int) -> Path:
    return repo.proofs / f"phase-{pid:02d}" / "latest"


def out_of(repo: Repo, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = repo.ops(*args)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def use_key(monkeypatch: pytest.MonkeyPatch, path: Path) -> Path:
    monkeypatch.setenv("MONTAGE_OPS__SIGNING_KEY", str(path))
    return path


def new_key(repo: Repo, capsys: pytest.CaptureFixture[str], name: str) -> dict[str, Any]:
    capsys.readouterr()
    assert repo.ops("keys", "new", "--name", name, "--json") == 0
    return dict(json.loads(capsys.readouterr().out))


@pytest.fixture
def keyed(
    two_phases: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Repo:
    """Two phases and alice's key: private key outside the repository, public key under proofs/keys/."""
    use_key(monkeypatch, tmp_path / "secrets" / "alice.pem")
    new_key(two_phases, capsys, "alice")
    return two_phases


def _hostname(m: dict[str, Any]) -> None:
    m["host"]["hostname"] = "elsewhere"  # descriptive, never judged: re-judging cannot see this edit


# ---------------------------------------------------------------- keys


def test_keys_new_writes_a_0600_private_key_outside_the_repo_and_a_public_key_to_commit(
    two_phases: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = two_phases
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    info = new_key(repo, capsys, "alice")
    private = Path(info["private_key"])
    assert private == tmp_path / "xdg" / "montage" / "signing-key.pem"  # the default path
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    public = Path(info["public_key"])
    assert public.parent == repo.proofs / "keys"
    record = json.loads(public.read_text())
    assert record["name"] == "alice" and record["public_key"]["keytype"] == "ed25519"
    assert b"PRIVATE" not in public.read_bytes()
    before = private.read_bytes()
    code, out = out_of(repo, capsys, "keys", "new", "--name", "again")
    assert code == 6 and "never overwrites a private key" in out
    assert private.read_bytes() == before
    code, out = out_of(repo, capsys, "keys", "list")
    assert code == 0 and "alice" in out and "this machine's key" in out


def test_keys_new_refuses_a_private_key_path_inside_the_repository(
    two_phases: Repo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = two_phases
    use_key(monkeypatch, repo.root / "var" / "key.pem")
    code, out = out_of(repo, capsys, "keys", "new")
    assert code == 2 and "inside the repository" in out
    assert not (repo.root / "var" / "key.pem").exists()
    assert not (repo.proofs / "keys").exists()


# ---------------------------------------------------------------- signed bundles


def test_signed_bundle_verifies_shows_its_signer_and_verifies_on_a_fresh_clone(
    keyed: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = keyed
    code, out = out_of(repo, capsys, "run", "0")
    assert code == 0 and "signature: SIGNED by alice" in out
    envelope = json.loads((latest(repo, 0) / ENVELOPE).read_text())
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicate"] == json.loads((latest(repo, 0) / "manifest.json").read_text())
    names = {s["name"] for s in statement["subject"]}
    assert {"manifest.json", "phase.json", "summary.md", "evidence/ok/output.txt"} <= names
    st = status_of(repo, capsys)[0]
    assert (st["state"], st["signature"]) == ("PASS", "SIGNED") and "alice" in str(st["signed_by"])
    code, out = out_of(repo, capsys, "verify", "0")
    assert code == 0 and "VERIFIED" in out and "SIGNED by alice" in out
    assert repo.ops("run", "1") == 0  # a signed PASS satisfies depends_on
    # A fresh clone without any private key: the committed public key is all it needs.
    repo.commit_all("bundles and the trusted key")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo.root), str(clone)], check=True, timeout=60)
    monkeypatch.delenv("MONTAGE_OPS__SIGNING_KEY")
    monkeypatch.chdir(clone)
    capsys.readouterr()
    assert Repo(clone).ops("verify", "all") == 0
    assert capsys.readouterr().out.count("SIGNED by alice") == 2


def test_edited_and_rehashed_manifest_is_forged_and_does_not_satisfy_depends_on(
    keyed: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = keyed
    assert repo.ops("run", "0") == 0
    forge(latest(repo, 0), _hostname)  # every hash consistent, every check re-judges the same
    st = status_of(repo, capsys)[0]
    assert (st["state"], st["signature"]) == ("TAMPERED", "FORGED"), st
    assert any("signs another bundle" in r and "host" in r for r in st["reasons"])  # type: ignore[attr-defined]
    code, out = out_of(repo, capsys, "run", "1")
    assert code == 6 and "phase 0 (first) is TAMPERED" in out
    assert not latest(repo, 1).exists()
    code, out = out_of(repo, capsys, "verify", "0")
    assert code == 5 and "signature FORGED" in out


def test_the_same_edit_on_an_unsigned_project_goes_unseen(two_phases: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    """The control: hashes alone cannot see a consistent edit (what signatures add)."""
    repo = two_phases
    assert repo.ops("run", "0") == 0
    forge(latest(repo, 0), _hostname)
    st = status_of(repo, capsys)[0]
    assert (st["state"], st["signature"]) == ("PASS", "UNSIGNED")
    assert repo.ops("verify", "0") == 0
    assert repo.ops("run", "1") == 0  # no key committed: today's behaviour, an unsigned PASS counts


def test_dropped_envelope_is_unsigned_and_does_not_satisfy_depends_on_once_a_key_is_trusted(
    keyed: Repo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = keyed
    assert repo.ops("run", "0") == 0
    forge(latest(repo, 0), _hostname)
    (latest(repo, 0) / ENVELOPE).unlink()
    st = status_of(repo, capsys)[0]
    assert (st["state"], st["signature"]) == ("PASS", "UNSIGNED")
    code, out = out_of(repo, capsys, "run", "1")
    assert code == 6 and "is PASS but UNSIGNED" in out
    code, out = out_of(repo, capsys, "verify", "0")
    assert code == 6 and "UNSIGNED" in out and "VERIFIED" not in out
    monkeypatch.setenv("MONTAGE_OPS__REQUIRE_SIGNATURES", "never")  # the setting decides
    assert repo.ops("run", "1") == 0
    monkeypatch.setenv("MONTAGE_OPS__REQUIRE_SIGNATURES", "sometimes")
    code, out = out_of(repo, capsys, "status")
    assert code == 2 and "MONTAGE_OPS__REQUIRE_SIGNATURES='sometimes'" in out


def test_signatures_always_required_even_without_a_committed_key(
    two_phases: Repo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = two_phases
    assert repo.ops("run", "0") == 0
    monkeypatch.setenv("MONTAGE_OPS__REQUIRE_SIGNATURES", "always")
    code, out = out_of(repo, capsys, "run", "1")
    assert code == 6 and "UNSIGNED" in out


def test_envelope_of_another_bundle_is_forged(keyed: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = keyed
    assert repo.ops("run", "0") == 0
    first = (latest(repo, 0) / ENVELOPE).read_bytes()
    assert repo.ops("run", "1") == 0
    # another phase's envelope: validly signed by a trusted key, but not of this bundle
    shutil.copy(latest(repo, 0) / ENVELOPE, latest(repo, 1) / ENVELOPE)
    st = status_of(repo, capsys)[1]
    assert (st["state"], st["signature"]) == ("TAMPERED", "FORGED")
    assert "of phase 0, this bundle is of phase 1" in str(st["reasons"])
    # an earlier run of the same phase: same phase, other manifest
    assert repo.ops("run", "0") == 0
    (latest(repo, 0) / ENVELOPE).write_bytes(first)
    st = status_of(repo, capsys)[0]
    assert (st["state"], st["signature"]) == ("TAMPERED", "FORGED")
    assert repo.ops("verify", "0") == 5


def test_a_broken_signature_by_a_trusted_key_is_forged(keyed: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = keyed
    assert repo.ops("run", "0") == 0
    path = latest(repo, 0) / ENVELOPE
    envelope = json.loads(path.read_text())
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[0] ^= 1
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    path.write_text(json.dumps(envelope))
    st = status_of(repo, capsys)[0]
    assert (st["state"], st["signature"]) == ("TAMPERED", "FORGED")
    assert "does not verify" in str(st["reasons"])
    path.write_text("{not json")
    assert status_of(repo, capsys)[0]["signature"] == "FORGED"


def test_a_key_that_is_not_committed_signs_untrusted(
    keyed: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = keyed
    use_key(monkeypatch, tmp_path / "secrets" / "mallory.pem")
    info = new_key(repo, capsys, "mallory")
    Path(info["public_key"]).unlink()  # mallory's key exists but nobody committed it
    code, out = out_of(repo, capsys, "run", "0")
    assert code == 0 and "UNTRUSTED" in out
    st = status_of(repo, capsys)[0]
    assert (st["state"], st["signature"]) == ("PASS", "UNTRUSTED")
    code, out = out_of(repo, capsys, "run", "1")
    assert code == 6 and "is PASS but UNTRUSTED" in out and "not under proofs/keys/" in out
    code, out = out_of(repo, capsys, "resign", "0")
    assert code == 6 and "is not trusted" in out


def test_revoked_key_is_rejected_and_resign_moves_the_bundle_to_a_new_key(
    keyed: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = keyed
    assert repo.ops("run", "0") == 0
    code, out = out_of(repo, capsys, "keys", "revoke", "alice", "--reason", "laptop stolen")
    assert code == 0 and "laptop stolen" in out
    assert len(list((repo.proofs / "keys" / "revoked").glob("*.json"))) == 1  # a committed file
    st = status_of(repo, capsys)[0]
    assert (st["state"], st["signature"]) == ("PASS", "UNTRUSTED")
    assert "revoked" in str(st["signature_reason"])
    code, out = out_of(repo, capsys, "run", "1")
    assert code == 6 and "UNTRUSTED" in out
    assert repo.ops("verify", "0") == 6
    code, out = out_of(repo, capsys, "resign", "0")
    assert code == 6 and "is revoked" in out  # alice's key still configured: refused
    # later signatures by the revoked key are rejected too: a new run it signs reads UNTRUSTED
    assert repo.ops("run", "0") == 0
    assert status_of(repo, capsys)[0]["signature"] == "UNTRUSTED"
    use_key(monkeypatch, tmp_path / "secrets" / "bob.pem")
    new_key(repo, capsys, "bob")
    code, out = out_of(repo, capsys, "resign", "all")
    assert code == 0, out
    assert "phase 0: re-judged and SIGNED by bob" in out and "phase 1: NOT RUN" in out
    st = status_of(repo, capsys)[0]
    assert (st["state"], st["signature"]) == ("PASS", "SIGNED") and "bob" in str(st["signed_by"])
    assert repo.ops("run", "1") == 0


def test_resign_re_judges_and_refuses_a_tampered_bundle(
    partial_signed: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = partial_signed
    bundle = latest(repo, 0)

    def to_pass(m: dict[str, Any]) -> None:
        m["verdict"], m["reasons"] = "PASS", []

    forge(bundle, to_pass)
    (bundle / ENVELOPE).unlink()  # what a forger would do: drop the signature, hope resign blesses it
    code, out = out_of(repo, capsys, "resign", "0")
    assert code == 5 and "re-judging gives PARTIAL" in out
    assert not (bundle / ENVELOPE).exists()


@pytest.fixture
def partial_signed(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Repo:
    repo.phase("00-first.yaml", simple_phase(0, "first", gate=PARTIAL_GATE))
    use_key(monkeypatch, tmp_path / "secrets" / "alice.pem")
    new_key(repo, capsys, "alice")
    assert repo.ops("run", "0") == 4
    return repo


def test_key_from_the_environment_signs_as_ci_does(
    keyed: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = keyed
    pem = (tmp_path / "secrets" / "alice.pem").read_text()
    monkeypatch.setenv("MONTAGE_OPS__SIGNING_KEY", str(tmp_path / "nowhere.pem"))  # the PEM wins over a path
    monkeypatch.setenv("MONTAGE_OPS__SIGNING_KEY_PEM", pem)
    assert repo.ops("run", "0") == 0
    assert status_of(repo, capsys)[0]["signature"] == "SIGNED"


def test_bad_key_configuration_exits_2_before_any_step_and_names_it(
    keyed: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = keyed
    use_key(monkeypatch, tmp_path / "missing.pem")
    code, out = out_of(repo, capsys, "run", "0")
    assert code == 2 and "MONTAGE_OPS__SIGNING_KEY" in out and "missing.pem" in out
    assert not latest(repo, 0).exists()
    (tmp_path / "rsa.pem").write_text("-----BEGIN PRIVATE KEY-----\nnonsense\n-----END PRIVATE KEY-----\n")
    use_key(monkeypatch, tmp_path / "rsa.pem")
    code, out = out_of(repo, capsys, "run", "0")
    assert code == 2 and "rsa.pem" in out and "PEM" in out
    assert not latest(repo, 0).exists()


def test_a_key_file_claiming_another_keys_id_is_refused(keyed: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = keyed
    (public,) = (repo.proofs / "keys").glob("*.json")
    record = json.loads(public.read_text())
    record["keyid"] = "0" * 64
    public.write_text(json.dumps(record))
    code, out = out_of(repo, capsys, "status")
    assert code == 2 and public.name in out and "is not the id of its key" in out


def test_invoke_has_the_keys_and_resign_tasks() -> None:
    names = set(build_namespace().task_names)
    assert {"keys.new", "keys.list", "keys.revoke", "phase.resign"} <= names
