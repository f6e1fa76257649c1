"""``python -m montage.ops``: list, status, run, gate, verify, rollback, schema, scan.

Owns the exit codes of :mod:`montage.errors`: 0 PASS, 1 FAIL, 2 invalid input, 3 INCONCLUSIVE,
4 PARTIAL, 5 TAMPERED, 6 refused, 7 tool missing, 130 interrupted.  Every command takes ``--json``.
Errors are one paragraph, without a traceback unless ``--debug``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from montage.errors import ExitCode, UsageError, run_reporting

PROG = "python -m montage.ops"


def _phase_number(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"phase {raw!r} is not a phase number; expected an integer such as 3.") from None
    if value < 0:
        raise UsageError(f"phase {raw!r} is negative; expected 0 or more.")
    return value


def _common_options(*, defaults: bool) -> argparse.ArgumentParser:
    """The options every command takes, before or after its name.  The subcommands' copies default to
    SUPPRESS: argparse lets a subparser's defaults overwrite what the main parser parsed, so
    ``--proofs-dir X selftest 5`` silently wrote into the real proofs/ (the subcommand's None won)."""
    common = argparse.ArgumentParser(add_help=False)

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    common.add_argument("--json", action="store_true", default=default(False), help="machine-readable output on stdout")
    common.add_argument(
        "--repo-root", type=Path, default=default(None), help="repository root (default: found from cwd)"
    )
    common.add_argument("--phases-dir", type=Path, default=default(None), help="default: <root>/phases")
    common.add_argument("--proofs-dir", type=Path, default=default(None), help="default: <root>/proofs")
    common.add_argument("--debug", action="store_true", default=default(False), help="show tracebacks")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options(defaults=False)
    parser = argparse.ArgumentParser(prog=PROG, description="Montage phase gates.",
                                     parents=[_common_options(defaults=True)])  # fmt: skip
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("list", parents=[common], help="list the phases")
    sub.add_parser("status", parents=[common], help="state of every phase (TAMPERED > STALE > OVERRIDDEN > verdict)")
    run = sub.add_parser("run", parents=[common], help="run a phase's steps, judge its gate, write its bundle")
    run.add_argument("phase")
    run.add_argument("--force", action="store_true", help="run although dependencies lack a PASS (recorded)")
    run.add_argument("--dry-run", action="store_true", help="print what would run")
    gate = sub.add_parser("gate", parents=[common], help="judge a phase's gate only (no steps, no dependency check)")
    gate.add_argument("phase")
    gate.add_argument("--dry-run", action="store_true", help="print the checks that would run")
    verify = sub.add_parser("verify", parents=[common], help="re-hash and re-judge a bundle ('all' for every phase)")
    verify.add_argument("phase", nargs="?", help="a phase number or 'all' (not needed with --bundle)")
    verify.add_argument("--bundle", type=Path, default=None, help="verify this bundle directory instead of latest/")
    resign = sub.add_parser("resign", parents=[common], help="re-judge a bundle, then sign it with the current key")
    resign.add_argument("phase", help="a phase number or 'all'")
    keys = sub.add_parser("keys", parents=[common], help="signing keys: new, list, revoke")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    knew = keys_sub.add_parser("new", parents=[common], help="create a key pair (private key outside the repo)")
    knew.add_argument("--name", default=None, help="who signs with it (default: user@host)")
    keys_sub.add_parser("list", parents=[common], help="trusted keys, revocations and the configured key")
    krev = keys_sub.add_parser("revoke", parents=[common], help="revoke a key: its signatures are rejected")
    krev.add_argument("key", help="a key id (a unique prefix is enough) or name")
    krev.add_argument("--reason", default="", help="why (recorded in the committed revocation file)")
    selftest = sub.add_parser("selftest", parents=[common], help="prove each gate check fails on its negative control")
    selftest.add_argument("phase", help="phase number or 'all'")
    selftest.add_argument(
        "--fast", action="store_true", help="only the fast controls (scans, pytest, command, file, log)"
    )
    selftest.add_argument("--no-cache", action="store_true", help="run again although a current result exists")
    rollback = sub.add_parser("rollback", parents=[common], help="print a phase's rollback plan; --yes executes it")
    rollback.add_argument("phase")
    rollback.add_argument("--yes", action="store_true", help="execute the plan")
    schema = sub.add_parser("schema", parents=[common], help="write phases/schema.json for editors")
    schema.add_argument("--output", type=Path, default=None, help="default: <phases-dir>/schema.json")
    scan = sub.add_parser("scan", parents=[common], help="AST scans: import hacks and stubs (one parse per file)")
    scan.add_argument("--kind", choices=["all", "import_hacks", "stub_scan"], default="all")
    scan.add_argument("--allowlist", default=None, help="stub allow-list (default: phases/stub_allowlist.txt)")
    adr = sub.add_parser("adr", parents=[common], help="ADRs in MADR 4 form: new, list, accept, supersede, refresh")
    adr.add_argument("--adr-dir", type=Path, default=None, help="default: <root>/docs/adr")
    adr_sub = adr.add_subparsers(dest="adr_command", metavar="ACTION", required=True)
    new = adr_sub.add_parser("new", parents=[common], help="write a proposed ADR (NNNN-slug.md) and the index")
    new.add_argument("title")
    new.add_argument("--phase", default=None, help="the phase whose gate confirms it (Confirmation lists its checks)")
    new.add_argument("--supersedes", type=int, default=None, help="the ADR number this one replaces (once accepted)")
    new.add_argument("--evidence", type=Path, action="append", default=[], help="a measured file (repeatable)")
    new.add_argument("--stdout", action="store_true", help="print the ADR instead of writing it")
    adr_sub.add_parser("list", parents=[common], help="number, status, date, decision-makers and title of each ADR")
    acc = adr_sub.add_parser("accept", parents=[common], help="mark a proposed ADR accepted (needs a chosen option)")
    acc.add_argument("number", type=int)
    acc.add_argument("--by", action="append", default=[], help="a decision-maker's name (repeatable)")
    sup = adr_sub.add_parser("supersede", parents=[common], help="OLD is superseded by NEW (updates both files)")
    sup.add_argument("old", type=int)
    sup.add_argument("new", type=int)
    ref = adr_sub.add_parser(
        "refresh", parents=[common], help="re-render an ADR's generated blocks from current evidence"
    )
    ref.add_argument("number", type=int)
    adr_sub.add_parser("index", parents=[common], help="regenerate docs/adr/README.md")
    chk = adr_sub.add_parser(
        "check", parents=[common], help="duplicate numbers, broken links, accepted without decision"
    )
    chk.add_argument("number", type=int, nargs="?", default=None, help="judge only this ADR, which must be accepted")
    cov = sub.add_parser("coverage-plan", parents=[common], help="the roadmap's W-0..W-3 coverage plan, measured")
    cov.add_argument("--data", type=Path, default=None, help="reuse this coverage data file or coverage JSON report")
    cov.add_argument("--all-tests", action="store_true", help="measure the whole suite (default: -m 'not slow')")
    cov.add_argument("--write-base", action="store_true", help="record the measured figures as the baseline")
    return parser


class Ctx:
    def __init__(self, args: argparse.Namespace) -> None:
        from montage.ops.sessions import repo_root

        self.args = args
        self.root = (args.repo_root or repo_root()).resolve()
        env_phases = os.environ.get("MONTAGE_OPS__PHASES_DIR")
        env_proofs = os.environ.get("MONTAGE_OPS__BUNDLES_DIR")
        self.phases_dir = args.phases_dir or self.root / (env_phases or "phases")
        self.proofs_dir = args.proofs_dir or self.root / (env_proofs or "proofs")
        self.json = bool(args.json)

    def out(self, line: str) -> None:
        """Human output: stdout, or stderr when stdout carries JSON."""
        print(line, file=sys.stderr if self.json else sys.stdout, flush=True)

    def emit(self, data: Any) -> None:
        if self.json:
            print(json.dumps(data, indent=2, sort_keys=True, default=str))


def cmd_list(ctx: Ctx) -> int:
    from montage.ops.loader import load_roadmap

    roadmap = load_roadmap(ctx.phases_dir)
    rows: list[dict[str, Any]] = [
        {
            "id": lp.phase.id,
            "slug": lp.phase.slug,
            "title": lp.phase.title,
            "depends_on": lp.phase.deps,
            "steps": len(lp.phase.steps),
            "checks": len(lp.phase.gate),
            "file": lp.path.name,
        }
        for lp in roadmap.ordered()
    ]
    for r in rows:
        deps = ",".join(str(d) for d in r["depends_on"]) or "-"
        ctx.out(f"{r['id']:>2}  {r['slug']:<28} deps {deps:<6} {r['title']}")
    ctx.emit(rows)
    return ExitCode.OK


def cmd_status(ctx: Ctx) -> int:
    from montage.ops import signing
    from montage.ops.bundle import ProofsLayout
    from montage.ops.loader import load_roadmap
    from montage.ops.status import roadmap_status

    required = signing.signatures_required(signing.load_trust(ctx.proofs_dir))
    statuses = roadmap_status(load_roadmap(ctx.phases_dir), ProofsLayout(ctx.proofs_dir), ctx.root)
    for st in statuses:
        when = st.date or "-"
        commit = (st.commit or "-")[:10] + ("+dirty" if st.dirty else "")
        forced = " (forced)" if st.forced and st.state != "OVERRIDDEN" else ""
        sig = f"SIGNED by {st.signed_by}" if st.signature == "SIGNED" else st.signature or "-"
        ctx.out(f"{st.id:>2}  {st.slug:<28} {st.state + forced:<12} {when:<21} {commit:<16} {st.bundle or '-'}  {sig}")
        for reason in st.reasons[:6]:
            ctx.out(f"      - {reason}")
        if st.signature in ("UNTRUSTED", "FORGED"):
            ctx.out(f"      - signature {st.signature}: {st.signature_reason}")
        if st.selftest:
            ctx.out(f"      {st.selftest}")
    ctx.out(
        "signatures: "
        + ("required: only a PASS signed by a trusted key satisfies depends_on" if required else "not required")
        + f" ({signing.ENV_REQUIRE}; trusted keys: {signing.keys_dir(ctx.proofs_dir)})"
    )
    ctx.emit([st.as_dict() for st in statuses])
    return ExitCode.OK


def _run_or_gate(ctx: Ctx, mode: str) -> int:
    from montage.ops.runner import RunOptions, execute

    args = ctx.args
    opts = RunOptions(
        repo_root=ctx.root,
        phases_dir=ctx.phases_dir,
        proofs_dir=ctx.proofs_dir,
        phase_id=_phase_number(args.phase),
        mode="gate" if mode == "gate" else "run",
        force=bool(getattr(args, "force", False)),
        dry_run=bool(args.dry_run),
    )
    code, published = execute(opts, ctx.out)
    head = {"phase": opts.phase_id, "mode": mode, "exit_code": code}
    if published is None:  # refused or a dry run: nothing was judged
        ctx.emit(head | {"verdict": None, "reasons": [], "forced": False, "forced_reasons": [], "steps": [],
                         "checks": [], "artifacts": {}, "bundle": None})  # fmt: skip
    else:
        shown = {"verdict", "reasons", "forced", "forced_reasons", "steps", "checks", "artifacts"}
        ctx.emit(head | published.manifest.model_dump(mode="json", include=shown) | {"bundle": str(published.bundle)})
    return code


def cmd_verify(ctx: Ctx) -> int:
    from montage.ops import signing
    from montage.ops.bundle import ProofsLayout, load_manifest
    from montage.ops.loader import load_roadmap
    from montage.ops.status import phase_of_path, verify_bundle

    layout = ProofsLayout(ctx.proofs_dir)
    trust = signing.load_trust(ctx.proofs_dir)
    required = signing.signatures_required(trust)
    targets: list[tuple[str, Path]] = []
    if ctx.args.bundle is not None:
        targets.append((str(ctx.args.bundle), ctx.args.bundle))
    elif ctx.args.phase is None:
        raise UsageError("verify needs a phase number, 'all', or --bundle DIR.")
    elif ctx.args.phase == "all":
        roadmap = load_roadmap(ctx.phases_dir)
        targets = [(f"phase {i}", layout.latest(i)) for i in sorted(roadmap.phases)]
    else:
        pid = _phase_number(ctx.args.phase)
        load_roadmap(ctx.phases_dir).get(pid)
        targets.append((f"phase {pid}", layout.latest(pid)))
    results: list[dict[str, Any]] = []
    code = ExitCode.OK
    for label, path in targets:
        if not path.exists() and not path.is_symlink():
            results.append({"target": label, "bundle": str(path), "state": "NOT RUN", "problems": []})
            ctx.out(f"{label}: NOT RUN (no bundle at {path})")
            if len(targets) == 1:
                code = ExitCode.INCONCLUSIVE
            continue
        # a bundle must be of the phase its place names; latest/ holds only phase.run bundles
        problems = verify_bundle(
            path, phase_id=phase_of_path(path), mode="run" if path.name == "latest" else None, trust=trust
        )
        sig = None if problems else signing.check_signature(path, load_manifest(path), trust)
        if problems:
            state = "TAMPERED"
        elif sig is not None and sig.state != "SIGNED" and required:
            state = sig.state  # UNSIGNED or UNTRUSTED where a trusted key is required: not proof here
        else:
            state = "VERIFIED"
        results.append(
            {"target": label, "bundle": str(path), "state": state, "problems": problems}
            | {"signature": sig.state if sig else None, "signed_by": sig.signer if sig else None}
        )
        if problems:
            code = ExitCode.TAMPERED
            ctx.out(f"{label}: TAMPERED ({path})")
            for p in problems:
                ctx.out(f"  - {p}")
            continue
        assert sig is not None
        if state != "VERIFIED":
            code = code if code == ExitCode.TAMPERED else ExitCode.REFUSED
            ctx.out(f"{label}: {state} ({path}): files and checks re-judge the same, but {sig.reason}")
            where = phase_of_path(path)
            ctx.out(
                f"  - a trusted key is committed under {signing.keys_dir(ctx.proofs_dir)}: re-sign it with "
                f"`invoke phase.resign {where if where is not None else 'N'}`"
            )
        else:
            ctx.out(
                f"{label}: VERIFIED ({path}), {sig.label}: every file matches its sha256 and every check "
                "re-judges the same" + ("" if sig.state == "SIGNED" else f" ({sig.reason})")
            )
    ctx.emit(results)
    return code


def cmd_resign(ctx: Ctx) -> int:
    from montage.ops.signing_cli import resign

    return resign(ctx.root, ctx.phases_dir, ctx.proofs_dir, ctx.args.phase, ctx.out, ctx.emit)


def cmd_keys(ctx: Ctx) -> int:
    from montage.ops.signing_cli import keys

    return keys(ctx.root, ctx.proofs_dir, ctx.args, ctx.out, ctx.emit)


def cmd_selftest(ctx: Ctx) -> int:
    from montage.ops.bundle import ProofsLayout
    from montage.ops.loader import load_roadmap
    from montage.ops.selftest import selftest_phase

    roadmap = load_roadmap(ctx.phases_dir)
    wanted = roadmap.ordered() if ctx.args.phase == "all" else [roadmap.get(_phase_number(ctx.args.phase))]
    rows, worst = [], ExitCode.OK
    for lp in wanted:
        manifest, bundle = selftest_phase(
            lp, ctx.root, ProofsLayout(ctx.proofs_dir), fast=ctx.args.fast, cache=not ctx.args.no_cache, out=ctx.out
        )
        rows.append({"phase": lp.phase.id, "verdict": manifest.verdict.value, "reasons": manifest.reasons,
                     "bundle": str(bundle)})  # fmt: skip
        if manifest.verdict.value != "PASS":
            worst = ExitCode.FAIL
    ctx.emit(rows)
    return worst


def cmd_rollback(ctx: Ctx) -> int:
    from montage.ops import rollback
    from montage.ops.bundle import ProofsLayout
    from montage.ops.loader import load_roadmap

    phase = load_roadmap(ctx.phases_dir).get(_phase_number(ctx.args.phase)).phase
    steps = rollback.plan(phase, ctx.root, ProofsLayout(ctx.proofs_dir))
    if not steps:
        ctx.out(f"phase {phase.id} ({phase.slug}) has no rollback steps.")
        ctx.emit({"phase": phase.id, "plan": [], "executed": False})
        return ExitCode.OK
    ctx.out(f"rollback plan of phase {phase.id} ({phase.slug}):")
    for i, s in enumerate(steps, 1):
        ctx.out(f"  {i}. {s['id']}: {s['action']}" + (f"  # {s['description']}" if s["description"] else ""))
    if not ctx.args.yes:
        ctx.out("Nothing executed. Re-run with --yes to execute these steps in order.")
        ctx.emit({"phase": phase.id, "plan": steps, "executed": False})
        return ExitCode.OK
    code, record = rollback.execute(phase, ctx.root, ProofsLayout(ctx.proofs_dir), ctx.out)
    ctx.out(f"rollback {'completed' if code == 0 else 'STOPPED'}; record: {record.get('record')}")
    ctx.emit({"phase": phase.id, "plan": steps, "executed": True, **record})
    return code


def cmd_schema(ctx: Ctx) -> int:
    from montage.core.files import atomic_write_text
    from montage.ops.model import schema

    target = ctx.args.output or ctx.phases_dir / "schema.json"
    atomic_write_text(target, json.dumps(schema(), indent=2, sort_keys=True) + "\n")
    ctx.out(f"wrote {target}")
    ctx.emit({"path": str(target)})
    return ExitCode.OK


def cmd_scan(ctx: Ctx) -> int:
    from montage.ops.astscan import scan
    from montage.ops.checks.stub_scan import parse_allowlist

    result = scan(ctx.root)
    allow_path = Path(ctx.args.allowlist) if ctx.args.allowlist else ctx.phases_dir / "stub_allowlist.txt"
    if not allow_path.is_absolute():
        allow_path = ctx.root / allow_path
    entries, problems = parse_allowlist(allow_path.read_text(encoding="utf-8") if allow_path.is_file() else "")
    if problems:
        raise UsageError(f"{allow_path}: " + "; ".join(problems))
    data: dict[str, Any] = {"files_scanned": len(result.files), "parse_errors": [f.as_dict() for f in result.errors]}
    bad = 0
    if ctx.args.kind in ("all", "import_hacks"):
        data["import_hacks"] = [f.as_dict() for f in result.hacks]
        ctx.out(f"import_hacks: {len(result.hacks)}")
        for f in result.hacks:
            ctx.out("  " + f.render())
        bad += len(result.hacks)
    if ctx.args.kind in ("all", "stub_scan"):
        keyed = [(f, f"{f.path}::{f.name if f.kind == 'stub' else f.kind}") for f in result.stubs]
        stubs = [f for f, key in keyed if key not in entries]
        data["stub_scan"] = [f.as_dict() for f in stubs]
        data["allowed"] = len(result.stubs) - len(stubs)
        ctx.out(f"stub_scan: {len(stubs)} ({data['allowed']} allowed by {allow_path.name})")
        for f in stubs:
            ctx.out("  " + f.render())
        bad += len(stubs)
    for f in result.errors:
        ctx.out("  cannot parse " + f.render())
    ctx.out(f"{len(result.files)} files scanned ({result.source})")
    ctx.emit(data)
    if bad:
        return ExitCode.FAIL
    return ExitCode.INCONCLUSIVE if result.errors else ExitCode.OK


def cmd_adr(ctx: Ctx) -> int:
    from montage.ops import adr
    from montage.ops.bundle import ProofsLayout

    args = ctx.args
    ops = adr.OpsContext(ctx.root, args.adr_dir or ctx.root / adr.ADR_DIR, ctx.phases_dir, ProofsLayout(ctx.proofs_dir))
    action = args.adr_command
    if action == "check":
        adr.check_or_raise(ops, args.number)
        ctx.out(f"ADRs in {ops.adr_dir}: no duplicate numbers, no broken links, every accepted ADR has a decision")
        return ExitCode.OK
    adrs = adr.load_all(ops.adr_dir)
    if action == "list":
        rows = [{"number": a.number, "status": a.status, "date": str(a.meta["date"]), "title": a.title,
                 "decision_makers": a.meta.get("decision-makers", []), "file": str(a.path)} for a in adrs]  # fmt: skip
        for r in rows:
            ctx.out(
                f"{r['number']:04d}  {r['status']:<24} {r['date']}  {r['title']}  "
                f"({', '.join(r['decision_makers']) or '-'})"
            )
        ctx.emit(rows)
        return ExitCode.OK
    texts: dict[Path, str] = {}
    if action == "new":
        phase = _phase_number(args.phase) if args.phase is not None else None
        path, text = adr.new(ops, args.title, phase, args.supersedes, args.evidence)
        if args.stdout:
            print(text, end="")
            return ExitCode.OK
        texts[path] = text
        done = f"ADR written to {path} (status proposed: write the decision, then `invoke adr.accept N`)"
    elif action == "accept":
        record = adr.get(adrs, args.number, ops.adr_dir)
        texts[record.path] = adr.accept(record, args.by)
        done = f"ADR {args.number:04d} accepted: {record.path}"
    elif action == "supersede":
        old, new = adr.get(adrs, args.old, ops.adr_dir), adr.get(adrs, args.new, ops.adr_dir)
        texts[old.path], texts[new.path] = adr.supersede(old, new)
        done = f"ADR {args.old:04d} superseded by ADR {args.new:04d} ({old.path}, {new.path})"
    elif action == "refresh":
        record = adr.get(adrs, args.number, ops.adr_dir)
        texts[record.path] = adr.refresh(record, ops)
        done = f"ADR {args.number:04d} refreshed from current evidence: {record.path}"
    else:
        done = "index regenerated"
    adr.write(ops, texts)
    ctx.out(f"{done}; index {ops.adr_dir / adr.INDEX}")
    ctx.emit({"action": action, "written": [str(p) for p in texts], "index": str(ops.adr_dir / adr.INDEX)})
    return ExitCode.OK


def cmd_coverage_plan(ctx: Ctx) -> int:
    from montage.core.files import atomic_write_text
    from montage.ops import coverage_plan as cp

    data = ctx.args.data
    from montage.ops.bundle import utc_now
    from montage.ops.fingerprint import git_state

    data = data if data is None or data.is_absolute() else Path.cwd() / data
    git, date = git_state(ctx.root), utc_now()
    report, source = cp.read_report(ctx.root, data, [] if ctx.args.all_tests else None)
    if ctx.args.write_base:
        record = cp.baseline_record(report, ctx.root, source, git, date)
        atomic_write_text(ctx.root / cp.BASE_FILE, json.dumps(record, indent=2) + "\n")
        line, branch = record["global_line"], record["global_branch"]
        ctx.out(f"wrote {ctx.root / cp.BASE_FILE} (global line {line} %, branch {branch} %)")
    base = cp.read_base(ctx.root)
    weeks = cp.plan(report, base, ctx.root)
    for line in cp.render_lines(weeks, base, source):
        ctx.out(line)
    ctx.emit({"source": source, "mapping": {k: v[0] for k, v in cp.MAPPING.items()}, "weeks": weeks})
    return ExitCode.OK


COMMANDS: dict[str, Callable[[Ctx], int]] = {
    "list": cmd_list,
    "status": cmd_status,
    "run": lambda ctx: _run_or_gate(ctx, "run"),
    "gate": lambda ctx: _run_or_gate(ctx, "gate"),
    "verify": cmd_verify,
    "resign": cmd_resign,
    "keys": cmd_keys,
    "rollback": cmd_rollback,
    "selftest": cmd_selftest,
    "schema": cmd_schema,
    "scan": cmd_scan,
    "adr": cmd_adr,
    "coverage-plan": cmd_coverage_plan,
}


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    try:
        args = build_parser().parse_args(args_list)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else ExitCode.USAGE
    from montage.ops.lifeline import claim_parent

    claim_parent()
    # Our own handlers: Python installs none for SIGINT when it starts with SIGINT ignored (a run
    # launched in the background by a script), and Ctrl-C would then do nothing.
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return run_reporting(
            PROG,
            lambda: COMMANDS[args.command](Ctx(args)),
            debug=debug,
            interrupted="interrupted; no bundle was written for the interrupted run",
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
