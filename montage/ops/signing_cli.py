"""``python -m montage.ops keys new|list|revoke`` and ``resign N|all`` (see :mod:`montage.ops.signing`)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from montage.errors import ExitCode, Refused, UsageError
from montage.ops import signing
from montage.ops.bundle import ENVELOPE, ProofsLayout, load_manifest

Out = Callable[[str], None]
Emit = Callable[[Any], None]


def keys(root: Path, proofs: Path, args: argparse.Namespace, out: Out, emit: Emit) -> int:
    if args.keys_command == "new":
        key, path = signing.new_key(proofs, root, args.name)
        out(f"created key {key.keyid} ({key.name})")
        out(f"  private key: {path} (mode 0600; never commit it, back it up where only its owner can read it)")
        out(f"  public key:  {key.file} (commit it: a new signer is a reviewable commit)")
        emit({"keyid": key.keyid, "name": key.name, "private_key": str(path), "public_key": str(key.file)})
        return ExitCode.OK
    if args.keys_command == "revoke":
        key, new = signing.revoke(proofs, args.key, args.reason)
        out(f"key {key.label} {'is now' if new else 'was already'} {key.revoked}")
        out(f"  every signature by it is rejected (UNTRUSTED); commit {signing.keys_dir(proofs) / signing.REVOKED_DIR}"
            " and re-sign the bundles with the new key: `invoke phase.resign all`")  # fmt: skip
        emit({"keyid": key.keyid, "name": key.name, "revoked": key.revoked, "newly_revoked": new})
        return ExitCode.OK
    return _list(proofs, out, emit)


def _list(proofs: Path, out: Out, emit: Emit) -> int:
    trust = signing.load_trust(proofs)
    signer = signing.configured_signer()
    mine = signer.public_key.keyid if signer else None
    rows = []
    for key in trust.keys.values():
        state = f"REVOKED ({key.revoked})" if key.revoked else "trusted"
        here = " [this machine's key]" if key.keyid == mine else ""
        out(f"{key.short}  {key.name:<28} {key.created:<21} {state}{here}")
        rows.append({"keyid": key.keyid, "name": key.name, "created": key.created, "revoked": key.revoked,
                     "file": str(key.file), "configured": key.keyid == mine})  # fmt: skip
    if not trust.keys:
        out(f"no trusted keys under {signing.keys_dir(proofs)}: bundles are not required to be signed")
    path, configured = signing.key_path()
    if signer is None:
        out(f"signing key: none at {path} (create one with `invoke keys.new`): bundles are written unsigned")
    else:
        where = signing.ENV_KEY_PEM if os.environ.get(signing.ENV_KEY_PEM, "").strip() else str(path)
        out(f"signing key: {where}: {signing.signer_label(signer, trust)}")
    out(f"signatures required for depends_on: {'yes' if signing.signatures_required(trust) else 'no'}")
    emit({"keys": rows, "signing_key": mine, "signing_key_path": str(path), "configured": configured,
          "required": signing.signatures_required(trust)})  # fmt: skip
    return ExitCode.OK


def resign(root: Path, phases_dir: Path, proofs: Path, which: str, out: Out, emit: Emit) -> int:
    """Re-judge each bundle from its evidence (no signature looked at), then sign it with the current key."""
    from montage.ops.loader import load_roadmap
    from montage.ops.status import verify_bundle

    signer = signing.configured_signer()
    path, _ = signing.key_path()
    if signer is None:
        raise UsageError(
            f"phase.resign needs a signing key: none at {path}; create one with `invoke keys.new`, "
            f"or name it with {signing.ENV_KEY_PATH} (a file) or {signing.ENV_KEY_PEM} (the PEM)."
        )
    trust = signing.load_trust(proofs)
    key = trust.keys.get(signer.public_key.keyid)
    if key is None or key.revoked:
        why = "is revoked" if key else f"is not trusted (its public key is not under {signing.keys_dir(proofs)})"
        raise Refused(f"the signing key {signing.signer_label(signer, trust)} {why}; bundles it signs would not count.")
    roadmap = load_roadmap(phases_dir)
    if which == "all":
        ids = sorted(roadmap.phases)
    else:
        try:
            ids = [int(which)]
        except ValueError:
            raise UsageError(f"phase {which!r} is not a phase number; expected an integer, or 'all'.") from None
        roadmap.get(ids[0])
    layout = ProofsLayout(proofs)
    code = ExitCode.OK
    results = []
    for pid in ids:
        bundle = layout.latest(pid)
        if not bundle.exists() and not bundle.is_symlink():
            out(f"phase {pid}: NOT RUN (no bundle at {bundle}); nothing to sign")
            results.append({"phase": pid, "state": "NOT RUN", "problems": []})
            code = ExitCode.INCONCLUSIVE if len(ids) == 1 else code
            continue
        problems = verify_bundle(bundle, phase_id=pid, mode="run")  # every file re-hashed, every check re-judged
        before = None if problems else signing.check_signature(bundle, load_manifest(bundle), trust)
        if before is not None and before.state == "FORGED":
            problems = [f"its envelope is FORGED ({before.reason}); inspect it, delete {ENVELOPE}, then resign"]
        if problems:
            code = ExitCode.TAMPERED
            out(f"phase {pid}: TAMPERED, not signed ({bundle})")
            for p in problems:
                out(f"  - {p}")
            results.append({"phase": pid, "state": "TAMPERED", "problems": problems})
            continue
        assert before is not None
        signing.sign_bundle(bundle, load_manifest(bundle), signer)
        out(f"phase {pid}: re-judged and SIGNED by {key.label} (was {before.label})")
        results.append({"phase": pid, "state": "SIGNED", "signed_by": key.label, "was": before.label, "problems": []})
    emit(results)
    return code
