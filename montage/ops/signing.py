"""Signed proof bundles: an in-toto Statement in a DSSE envelope, signed with ed25519.

A bundle's ``bundle.dsse.json`` is a DSSE envelope (securesystemslib's :class:`Envelope`) whose payload
is an in-toto Statement v1: ``subject`` lists every file of the bundle with its sha256 (manifest.json
included), ``predicate`` is the manifest itself.  Signing and verification are securesystemslib's
(``CryptoSigner``, ``SSlibKey``); nothing here does cryptography of its own.

Trust is a directory in the repository, like git's allowed-signers file: ``proofs/keys/*.json`` holds the
trusted public keys (adding a signer is a visible commit), ``proofs/keys/revoked/<keyid>.json`` marks a key
revoked (every signature by it is then rejected).  The private key never enters the repository: it is read
from ``MONTAGE_OPS__SIGNING_KEY_PEM`` (the PEM itself, e.g. a CI secret), else the file named by
``MONTAGE_OPS__SIGNING_KEY`` (e.g. a secrets file), else ``$XDG_CONFIG_HOME/montage/signing-key.pem``
(``~/.config/montage/signing-key.pem``).  ``MONTAGE_OPS__REQUIRE_SIGNATURES`` (auto/always/never) decides
whether an unsigned or untrusted PASS satisfies ``depends_on``; ``auto`` requires a signature once
``proofs/keys/`` holds any key.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, Signature, SSlibKey

from montage.core.files import atomic_write_bytes, atomic_write_text, canonical_json, sha256_file
from montage.errors import ConfigError, Refused, UsageError
from montage.ops.bundle import ENVELOPE, MANIFEST
from montage.ops.manifest import Manifest

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "urn:montage:proof-bundle-manifest:v1"
KEYS_DIR = "keys"  # under the proofs directory
REVOKED_DIR = "revoked"  # under KEYS_DIR

ENV_KEY_PATH = "MONTAGE_OPS__SIGNING_KEY"
ENV_KEY_PEM = "MONTAGE_OPS__SIGNING_KEY_PEM"
ENV_REQUIRE = "MONTAGE_OPS__REQUIRE_SIGNATURES"
REQUIRE_CHOICES = ("auto", "always", "never")

BundleSigner = CryptoSigner  # what signs a bundle (an ed25519 key held by this machine)
SigState = Literal["SIGNED", "UNSIGNED", "UNTRUSTED", "FORGED"]


# ---------------------------------------------------------------- trusted keys


@dataclass(frozen=True)
class TrustedKey:
    keyid: str
    name: str
    created: str
    key: SSlibKey
    file: Path
    revoked: str | None = None  # "revoked at T: reason" when revoked

    @property
    def short(self) -> str:
        return self.keyid[:16]

    @property
    def label(self) -> str:
        return f"{self.name} ({self.short})"


@dataclass(frozen=True)
class Trust:
    """The committed trust store: every key file under proofs/keys/ and the revocations."""

    keys: dict[str, TrustedKey] = field(default_factory=dict)

    @property
    def any_committed(self) -> bool:
        return bool(self.keys)

    def find(self, ident: str) -> TrustedKey:
        """The key whose id starts with ``ident`` (or whose name is ``ident``); exactly one must match."""
        hits = [k for k in self.keys.values() if k.keyid.startswith(ident.lower()) or k.name == ident]
        if not ident or not hits:
            known = ", ".join(k.label for k in self.keys.values()) or "none"
            raise UsageError(f"no trusted key matches {ident!r}; the keys under proofs/keys/ are: {known}.")
        if len(hits) > 1:
            shown = ", ".join(k.label for k in hits)
            raise UsageError(f"{ident!r} matches {len(hits)} keys ({shown}); give more of the id.")
        return hits[0]


def keys_dir(proofs: Path) -> Path:
    return proofs / KEYS_DIR


def _key_from_public_hex(public_hex: str, where: str) -> SSlibKey:
    try:
        raw = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex))
    except ValueError as exc:
        raise ConfigError(f"{where}: the ed25519 public key is not 32 hex-encoded bytes ({exc}).") from None
    return SSlibKey.from_crypto(raw, None, "ed25519")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable JSON file ({exc}).") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, found {type(data).__name__}.")
    return data


def load_trust(proofs: Path) -> Trust:
    """Read proofs/keys/; a malformed key file is a configuration error naming the file (exit 2)."""
    root = keys_dir(proofs)
    revoked: dict[str, str] = {}
    for path in sorted((root / REVOKED_DIR).glob("*.json")):
        data = _read_json(path)
        keyid = data.get("keyid")
        if not isinstance(keyid, str) or path.stem != keyid:
            raise ConfigError(f"{path}: expected {{'keyid': '<the file name>', ...}}, found keyid {keyid!r}.")
        revoked[keyid] = f"revoked at {data.get('revoked_at', '?')}: {data.get('reason') or 'no reason given'}"
    keys: dict[str, TrustedKey] = {}
    for path in sorted(root.glob("*.json")):
        data = _read_json(path)
        pub = data.get("public_key")
        if not (isinstance(pub, dict) and pub.get("keytype") == "ed25519" and pub.get("scheme") == "ed25519"):
            raise ConfigError(f"{path}: 'public_key' must be an ed25519 key (keytype and scheme 'ed25519').")
        keyval = pub.get("keyval")
        public_hex = keyval.get("public") if isinstance(keyval, dict) else None
        if not isinstance(public_hex, str):
            raise ConfigError(f"{path}: 'public_key.keyval.public' must be the hex-encoded ed25519 public key.")
        key = _key_from_public_hex(public_hex, str(path))
        if data.get("keyid") != key.keyid:
            # The id is derived from the key: a file cannot claim another key's id (and its revocation).
            raise ConfigError(f"{path}: 'keyid' {data.get('keyid')!r} is not the id of its key ({key.keyid}).")
        if key.keyid in keys:
            raise ConfigError(f"{path}: key {key.keyid[:16]} is also in {keys[key.keyid].file}.")
        keys[key.keyid] = TrustedKey(
            keyid=key.keyid,
            name=str(data.get("name") or "?"),
            created=str(data.get("created") or "?"),
            key=key,
            file=path,
            revoked=revoked.get(key.keyid),
        )
    return Trust(keys)


def signatures_required(trust: Trust, environ: Mapping[str, str] | None = None) -> bool:
    """Does an unsigned or untrusted PASS fail ``depends_on``?  (``MONTAGE_OPS__REQUIRE_SIGNATURES``)."""
    env = os.environ if environ is None else environ
    raw = env.get(ENV_REQUIRE, "").strip().lower() or "auto"
    if raw not in REQUIRE_CHOICES:
        raise ConfigError(f"{ENV_REQUIRE}={env.get(ENV_REQUIRE)!r} is not one of {', '.join(REQUIRE_CHOICES)}.")
    return raw == "always" or (raw == "auto" and trust.any_committed)


# ---------------------------------------------------------------- the private key


def default_key_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "montage" / "signing-key.pem"


def key_path(environ: Mapping[str, str] | None = None) -> tuple[Path, bool]:
    """Where the private key lives and whether a setting named it (else it is the default path)."""
    env = os.environ if environ is None else environ
    configured = env.get(ENV_KEY_PATH, "").strip()
    if configured:
        return Path(configured).expanduser(), True
    return default_key_path(env), False


def _signer_from_pem(pem: bytes, where: str) -> CryptoSigner:
    try:
        private = load_pem_private_key(pem, None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: not an unencrypted PEM (PKCS#8) private key ({exc}).") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise ConfigError(f"{where}: the key is {type(private).__name__}; bundles are signed with ed25519 only.")
    return CryptoSigner(private, SSlibKey.from_crypto(private.public_key(), None, "ed25519"))


def configured_signer(environ: Mapping[str, str] | None = None) -> CryptoSigner | None:
    """The signer of this machine, or None when no key is configured (the default path does not exist).

    A key named by a setting must be readable and ed25519, else :class:`ConfigError` (exit 2).
    """
    env = os.environ if environ is None else environ
    pem = env.get(ENV_KEY_PEM, "")
    if pem.strip():
        return _signer_from_pem(pem.encode(), ENV_KEY_PEM)
    path, configured = key_path(env)
    if not configured and not path.exists():
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        source = ENV_KEY_PATH if configured else "the default key path"
        raise ConfigError(f"{source} {path}: the signing key cannot be read ({exc.strerror or exc}).") from None
    return _signer_from_pem(data, str(path))


def new_key(proofs: Path, repo_root: Path, name: str | None = None) -> tuple[TrustedKey, Path]:
    """Create a key pair: the private key (0600) outside the repository, the public key under proofs/keys/."""
    if os.environ.get(ENV_KEY_PEM, "").strip():
        raise UsageError(f"{ENV_KEY_PEM} is set, so that key signs; unset it to create a key file with keys.new.")
    path, configured = key_path()
    source = f"{ENV_KEY_PATH}={path}" if configured else f"the default key path {path}"
    resolved = path.resolve()
    if resolved.is_relative_to(repo_root.resolve()):
        raise UsageError(
            f"{source} is inside the repository {repo_root}; a private key must never be committed: "
            f"point {ENV_KEY_PATH} outside it (default ~/.config/montage/signing-key.pem)."
        )
    if path.exists() or path.is_symlink():
        raise Refused(
            f"a signing key already exists at {path} ({source}); keys.new never overwrites a private key. "
            "Revoke it with `invoke keys.revoke ID` if it is compromised, move the file away, then run keys.new."
        )
    signer = CryptoSigner.generate_ed25519()
    pub = signer.public_key
    name = name or f"{getpass.getuser()}@{socket.gethostname()}"
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "key"
    public_file = keys_dir(proofs) / f"{slug}-{pub.keyid[:12]}.json"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write_bytes(path, signer.private_bytes, mode=0o600)
    record = {"keyid": pub.keyid, "name": name, "created": _now(), "public_key": pub.to_dict()}
    atomic_write_text(public_file, canonical_json(record, indent=2) + "\n")
    return load_trust(proofs).keys[pub.keyid], path


def revoke(proofs: Path, ident: str, reason: str) -> tuple[TrustedKey, bool]:
    """Mark a trusted key revoked (a committed file); returns the key and whether it was newly revoked."""
    key = load_trust(proofs).find(ident)
    if key.revoked:
        return key, False
    record = {"keyid": key.keyid, "name": key.name, "revoked_at": _now(), "reason": reason}
    atomic_write_text(keys_dir(proofs) / REVOKED_DIR / f"{key.keyid}.json", canonical_json(record, indent=2) + "\n")
    return load_trust(proofs).keys[key.keyid], True


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- signing and verifying bundles


def statement(bundle: Path, manifest: Manifest) -> dict[str, Any]:
    """The in-toto Statement a bundle's envelope must carry: every file's sha256, the manifest as predicate."""
    digests = {**manifest.files, MANIFEST: sha256_file(bundle / MANIFEST)}
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": rel, "digest": {"sha256": digests[rel]}} for rel in sorted(digests)],
        "predicateType": PREDICATE_TYPE,
        "predicate": manifest.model_dump(mode="json"),
    }


def sign_bundle(bundle: Path, manifest: Manifest, signer: CryptoSigner) -> None:
    """Write (atomically) the DSSE envelope signing this bundle's statement with ``signer``."""
    envelope = Envelope(canonical_json(statement(bundle, manifest)).encode(), PAYLOAD_TYPE, {})
    envelope.sign(signer)
    atomic_write_text(bundle / ENVELOPE, canonical_json(envelope.to_dict(), indent=2) + "\n")


def signer_label(signer: CryptoSigner, trust: Trust) -> str:
    key = trust.keys.get(signer.public_key.keyid)
    if key is None:
        return f"key {signer.public_key.keyid[:16]} (not under proofs/keys/: its signatures read UNTRUSTED)"
    return key.label + (f", REVOKED ({key.revoked})" if key.revoked else "")


@dataclass(frozen=True)
class SignatureCheck:
    state: SigState
    reason: str
    signer: str | None = None  # "name (keyid)" of the trusted key that signed

    @property
    def label(self) -> str:
        return f"SIGNED by {self.signer}" if self.state == "SIGNED" else self.state


def check_signature(bundle: Path, manifest: Manifest, trust: Trust) -> SignatureCheck:
    """SIGNED (a trusted, unrevoked key signed exactly this bundle), UNSIGNED (no envelope), UNTRUSTED
    (signed, but by an unknown or revoked key), or FORGED (the envelope is malformed, signs something
    else, or a trusted key's signature does not verify)."""
    path = bundle / ENVELOPE
    if path.is_symlink():
        return SignatureCheck("FORGED", f"{ENVELOPE} is a symlink; a bundle holds only its own regular files")
    if not path.exists():
        return SignatureCheck("UNSIGNED", f"no {ENVELOPE}: nobody signed this bundle")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        envelope = Envelope.from_dict(data)
        payload = json.loads(envelope.payload)
    except Exception as exc:  # any malformation of attacker-controlled input (KeyError, binascii, ...)
        return SignatureCheck("FORGED", f"{ENVELOPE} is not a DSSE envelope of a JSON statement ({type(exc).__name__})")
    if envelope.payload_type != PAYLOAD_TYPE:
        return SignatureCheck("FORGED", f"{ENVELOPE} carries {envelope.payload_type!r}, not an in-toto statement")
    mismatch = _statement_mismatch(payload, statement(bundle, manifest))
    if mismatch:
        return SignatureCheck("FORGED", f"{ENVELOPE} signs another bundle: {mismatch}")
    return _judge_signatures(envelope, trust)


def _statement_mismatch(found: Any, wanted: dict[str, Any]) -> str | None:
    if found == wanted:
        return None
    if not isinstance(found, dict):
        return "its payload is not a statement"
    for key in ("_type", "predicateType"):
        if found.get(key) != wanted[key]:
            return f"its {key} is {found.get(key)!r}, expected {wanted[key]!r}"
    pred, mine = found.get("predicate"), wanted["predicate"]
    if pred != mine:
        if isinstance(pred, dict):
            if pred.get("phase_id") != mine["phase_id"]:
                return f"its manifest is of phase {pred.get('phase_id')!r}, this bundle is of phase {mine['phase_id']}"
            diff = sorted(k for k in mine.keys() | pred.keys() if pred.get(k) != mine.get(k))
            return f"its manifest differs from manifest.json in {', '.join(diff[:6])}"
        return "its predicate is not a manifest"
    subjects = {s.get("name"): s.get("digest") for s in found.get("subject") or [] if isinstance(s, dict)}
    wanted_subjects = {s["name"]: s["digest"] for s in wanted["subject"]}
    diff = sorted(str(k) for k in subjects.keys() | wanted_subjects.keys() if subjects.get(k) != wanted_subjects.get(k))
    return f"its subject differs for {', '.join(diff[:6]) or 'the subject list'}"


def _judge_signatures(envelope: Envelope, trust: Trust) -> SignatureCheck:
    if not envelope.signatures:
        return SignatureCheck("UNSIGNED", f"{ENVELOPE} holds no signature")
    pae = envelope.pae()
    revoked: list[str] = []
    unknown: list[str] = []
    for sig in envelope.signatures.values():
        key = trust.keys.get(sig.keyid)
        if key is None:
            unknown.append(sig.keyid[:16])
            continue
        if not _verifies(key.key, sig, pae):
            return SignatureCheck("FORGED", f"the signature by trusted key {key.label} does not verify")
        if key.revoked:
            revoked.append(f"{key.label}, {key.revoked}")
            continue
        return SignatureCheck("SIGNED", "signed by a trusted key", key.label)
    if revoked:
        return SignatureCheck("UNTRUSTED", "signed by a revoked key: " + "; ".join(revoked))
    return SignatureCheck("UNTRUSTED", f"signed by key {', '.join(unknown)}, which is not under proofs/keys/")


def _verifies(key: SSlibKey, sig: Signature, pae: bytes) -> bool:
    from securesystemslib.exceptions import UnverifiedSignatureError, VerificationError

    try:
        key.verify_signature(sig, pae)
    except (UnverifiedSignatureError, VerificationError, ValueError):
        return False
    return True
