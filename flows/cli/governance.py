"""`steward approvals`, `approve`, `reject`, `sign`, `keys`, `evidence` and `ledger`: sign-off and the record of it.

An answer counts only signed by the approver's key (`--key FILE` or STEWARD_KEY_FILE): `approve` and `reject`
sign and send; `sign` prints the signature for the Prefect UI's form, for an approver answering there."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from flows.cli.common import _environment, _fail, console, err
from steward.errors import NotFound, StewardError
from steward.settings import Settings

if TYPE_CHECKING:
    from steward.ledger import Ledger
    from tasks.signoff.approvals import Pending


def _approver_context() -> tuple[Settings, Ledger]:
    from steward.anchor import anchored
    from steward.db import make_engine

    settings = Settings()
    _environment(settings, server=True)
    return settings, anchored(make_engine(settings.db_url), settings)


def approvals(
    sweep: bool = typer.Option(
        False,
        "--sweep",
        help="First escalate or expire suspended sign-offs past their deadline, and withdraw "
        "those whose run ended (what the signoff-sweep flow does on a schedule).",
    ),
) -> None:
    """List the runs waiting for sign-off, with their evidence and what they still need."""
    settings, ledger = _approver_context()  # before Prefect is imported: it reads PREFECT_API_URL once
    from tasks.signoff.approvals import pending
    from tasks.signoff.evidence_artifact import evidence_url

    if sweep:
        from flows.signoff import signoff_sweep_flow

        for line in signoff_sweep_flow():
            console.print(f"swept: {line}", markup=False, highlight=False)
    waiting = pending(ledger=ledger)
    if not waiting:
        console.print("no run is waiting for sign-off")
        return
    ui = (settings.prefect_api_url or os.environ.get("PREFECT_API_URL", "")).removesuffix("/api")
    for item in waiting:
        request, t = item.tally.request, item.tally
        mode = "suspended (no process waiting)" if item.suspended else "paused"
        console.print(
            f"\n[bold]{escape(request.model)}[/] run {item.run.name} ({item.run_id}), {mode}", highlight=False
        )
        for name, value in (
            ("author (may not approve)", request.author),
            ("tier", request.tier),
            ("progress", t.progress.summary(request.policy)),
            ("requested", f"{request.requested_at:%Y-%m-%d %H:%M} UTC"),
            ("deadline", f"{t.deadline:%Y-%m-%d %H:%M} UTC, then {request.policy.on_timeout}"),
            ("evidence digest", request.evidence_digest),
            ("evidence report", request.evidence_page),
            ("evidence in the Prefect UI", evidence_url(request)),
            ("Prefect run", f"{ui}/runs/flow-run/{item.run_id}"),
        ):
            console.print(f"  {name}: {value}", markup=False, highlight=False)


KEY_HELP = "Your Ed25519 private key (default: STEWARD_KEY_FILE); its public line is registered under your name."


def _answer(
    run: str, *, approver: str, decision: str, comment: str, evidence: str, wait: float, key: Path | None
) -> None:
    settings, ledger = _approver_context()  # before Prefect is imported
    from steward.ledger import APPROVAL_REFUSED
    from tasks.signoff.approvals import answer, find
    from tasks.signoff.keys import answering_key

    try:
        signing = answering_key(settings, key)
        item: Pending = find(run, ledger=ledger)
        record = answer(
            item,
            approver=approver,
            key=signing,
            decision=decision,  # type: ignore[arg-type]
            comment=comment,
            evidence_digest=evidence,
            ledger=ledger,
            wait_seconds=wait,
        )
    except StewardError as exc:
        _fail(exc)
        return
    if record is None:
        console.print(f"answer sent to run {item.run_id}; it has not recorded it yet (see `steward approvals`)")
    elif record.action == APPROVAL_REFUSED:
        err.print(
            f"[bold red]refused:[/] {escape(record.payload['reason'])} (ledger seq {record.seq})", highlight=False
        )
        raise typer.Exit(code=1)
    else:
        console.print(
            f"{record.action} by {approver} recorded (ledger seq {record.seq})", markup=False, highlight=False
        )


def approve(
    run: str = typer.Argument(
        ..., help="The waiting run: its id, an id prefix, or its name (see `steward approvals`)."
    ),
    approver: str = typer.Option(..., "--as", help="Your name as configured in params.yaml governance.approvers."),
    comment: str = typer.Option("", "--comment", help="A note for the ledger."),
    evidence: str = typer.Option(
        ..., "--evidence", help="The evidence digest you reviewed: 12 or more of its hex characters."
    ),
    wait: float = typer.Option(60, "--wait", help="Seconds to wait for the run to record the answer."),
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
) -> None:
    """Approve a waiting sign-off, signed by your key, through the Prefect API (the run checks the policy and
    the signature, and records the answer)."""
    _answer(run, approver=approver, decision="approve", comment=comment, evidence=evidence, wait=wait, key=key)


def reject(
    run: str = typer.Argument(..., help="The waiting run: its id, an id prefix, or its name."),
    approver: str = typer.Option(..., "--as", help="Your name as configured in params.yaml governance.approvers."),
    reason: str = typer.Option(..., "--reason", help="Why: recorded in the ledger and shown to the run's author."),
    request_changes: bool = typer.Option(False, "--request-changes", help="Ask for changes instead of rejecting."),
    evidence: str = typer.Option(
        ..., "--evidence", help="The evidence digest you reviewed: 12 or more of its hex characters."
    ),
    wait: float = typer.Option(60, "--wait", help="Seconds to wait for the run to record the answer."),
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
) -> None:
    """Reject a waiting sign-off (or request changes), signed by your key: the model is not approved."""
    decision = "request_changes" if request_changes else "reject"
    _answer(run, approver=approver, decision=decision, comment=reason, evidence=evidence, wait=wait, key=key)


def sign(
    run: str = typer.Argument(..., help="The waiting run: its id, an id prefix, or its name."),
    decision: str = typer.Option("approve", "--decision", help="approve, reject or request_changes."),
    comment: str = typer.Option("", "--comment", help="Exactly the comment you will type in the form."),
    evidence: str = typer.Option(
        ..., "--evidence", help="The evidence digest you reviewed: 12 or more of its hex characters."
    ),
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
) -> None:
    """Print the signature of an answer, for the signature field of the Prefect UI's form: the form's decision,
    comment and evidence digest must be exactly those signed here."""
    settings, ledger = _approver_context()  # before Prefect is imported
    from tasks.signoff.approvals import find
    from tasks.signoff.approvals import sign as sign_answer
    from tasks.signoff.keys import answering_key

    if decision not in ("approve", "reject", "request_changes"):
        _fail(ValueError(f"--decision {decision!r}: approve, reject or request_changes"))
    try:
        item = find(run, ledger=ledger)
        token = sign_answer(
            item,
            key=answering_key(settings, key),
            decision=decision,  # type: ignore[arg-type]
            comment=comment,
            evidence_digest=evidence,
        )
    except (StewardError, ValueError) as exc:
        _fail(exc)
        return
    console.print(token, markup=False, highlight=False, soft_wrap=True)


def keys_new(
    path: Path = typer.Argument(..., help="Where to write the private key (its public line goes to PATH.pub)."),
    comment: str = typer.Option("", "--comment", help="A label in the public line, e.g. your e-mail address."),
) -> None:
    """Make an Ed25519 key pair (as `ssh-keygen -t ed25519` would); register its public line under your name."""
    from steward.keys import new_key

    try:
        key = new_key(path, comment=comment)
    except StewardError as exc:
        _fail(exc)
        return
    console.print(f"{key.public.openssh} {comment}".rstrip(), markup=False, highlight=False, soft_wrap=True)
    console.print(f"fingerprint {key.public.fingerprint}; private key {path} (keep it to yourself)", highlight=False)


def evidence(
    model: str = typer.Argument(
        ..., help="A model version (`name:vN`, `name` for its newest, or a registry id), or `verify`."
    ),
    pack: Path | None = typer.Argument(None, help="With `verify`: the pack to check (its folder or zip)."),
    out: Path | None = typer.Option(None, "--out", help="Folder to write; a zip of it is written beside it (DIR.zip)."),
) -> None:
    """Write a model's evidence pack (`steward evidence MODEL --out DIR`): its frozen evidence, sign-off and ledger
    excerpt mapped to EU AI Act Annex IV points 1-9 and the Article 13 instructions for use, each file with its
    sha256 and each report with the signatures that cover it. `steward evidence verify PACK` checks one offline."""
    if model == "verify":
        _verify_pack(pack)
        return
    if out is None or pack is not None:
        _fail(
            StewardError(
                "write a pack with `steward evidence MODEL --out DIR`, check one with `steward evidence verify PACK`"
            )
        )
        return
    _write_pack(model, out)


def _verify_pack(pack: Path | None) -> None:
    from tasks.document.pack_check import verify_pack

    if pack is None:
        _fail(StewardError("`steward evidence verify PACK`: name the pack (its folder or its zip)"))
        return
    try:
        check = verify_pack(pack)
    except StewardError as exc:
        _fail(exc)
        return
    console.print(
        f"{pack}: {check.model}, {check.files} files, evidence digest {check.evidence_digest}", highlight=False
    )
    for s in check.signatures:
        what = "signed" if s["verified"] else "NOT VERIFIED"
        covers = f"covers {len(s['covers'])} evidence files" if s["covers"] else "covers none of this evidence"
        console.print(
            f"  seq {s['seq']} {s['action']} by {s['signer']} ({s['fingerprint'] or 'no valid key'}) {what} "
            f"at {s['signed_at']}: {covers}",
            markup=False,
            highlight=False,
        )
    if check.problems:
        for problem in check.problems:
            err.print(f"  {problem}", markup=False, highlight=False)
        _fail(StewardError(f"the pack does not verify: {len(check.problems)} problem(s)"))
    console.print(
        "pack verified: every file, the evidence digest, the ledger excerpt and every signature", highlight=False
    )


def _write_pack(model: str, out: Path) -> None:
    from steward.db import make_engine
    from steward.ledger import GATE_VERDICT, Ledger
    from steward.registry import Registry
    from steward.signoff import latest
    from steward.storage import Storage
    from tasks.document import evidence as frozen
    from tasks.document.evidence_pack import write_pack

    settings = Settings()
    engine = make_engine(settings.db_url)
    try:
        version = Registry(engine).get(model)
        records = Ledger(engine).records(subject=version.ref)
        signed = latest(records, model=version.ref)
        verdicts = [r.payload["evidence_digest"] for r in records if r.action == GATE_VERDICT]
        digest = signed.request.evidence_digest if signed else (verdicts[-1] if verdicts else None)
        if digest is None:
            raise NotFound(f"the ledger holds no evidence digest for {version.ref}: it predates sign-off")
        storage = Storage.from_settings(settings)
        snapshot = frozen.load(digest, storage=storage)
        pack = write_pack(version, records=records, snapshot=snapshot, storage=storage, out=out)
    except StewardError as exc:
        _fail(exc)
        return
    console.print(f"evidence pack for {version.ref}: {pack.folder} and {pack.zip_path}", highlight=False)
    console.print(f"pack manifest digest: {pack.digest}; evidence digest: {snapshot.digest}", highlight=False)
    for gap in pack.gaps:
        console.print(f"  gap: {gap}", markup=False, highlight=False)


def ledger_verify(
    file: Path | None = typer.Option(None, "--file", help="Verify an exported JSONL copy instead of the database."),
    against: str | None = typer.Option(
        None,
        "--against",
        help="The anchor to check against: s3://BUCKET/PREFIX or a checkpoint file "
        "(default: STEWARD_LEDGER_ANCHOR, else STEWARD_HOME/ledger-checkpoints.jsonl).",
    ),
    keys: list[Path] = typer.Option(
        [],
        "--key",
        help="A public key checkpoints may be signed by, once per instance writing to the anchor "
        "(default: this instance's).",
    ),
) -> None:
    """Check the hash chain against the signed checkpoints of its anchor, re-verify every sign-off signature
    and every batch of decisions against the prediction log, offline; name the first point where the ledger
    diverges (exit 1) if a record was edited, the chain rewritten and recomputed, its tail cut, or a
    checkpoint deleted."""
    from steward.anchor import anchor_from, verifying_keys
    from steward.anchor_verify import Exported, verify
    from steward.db import make_engine
    from steward.erasure import erasure_problems
    from steward.ledger import (
        APPROVAL_DECLINED,
        APPROVAL_GRANTED,
        APPROVAL_REQUESTED,
        POLICY_ADOPTED,
        Ledger,
        read_jsonl,
    )
    from steward.log_verify import BatchCheck, unmatched_batches
    from steward.policy_in_force import policy_problems
    from steward.reviews import edited_notes
    from steward.signoff import unverified

    signed = (POLICY_ADOPTED, APPROVAL_REQUESTED, APPROVAL_GRANTED, APPROVAL_DECLINED)
    settings = Settings()
    batches: BatchCheck | None = None
    personal: list[str] = []
    try:
        anchor = anchor_from(against, settings=settings)
        public = verifying_keys(settings, keys)
        if file:
            exported = read_jsonl(file)
            report = verify(Exported(exported), anchor, public)
            sign_offs = [r for r in exported if r.action in signed]
        else:
            engine = make_engine(settings.db_url)
            ledger = Ledger(engine)
            report = verify(ledger, anchor, public)
            sign_offs = ledger.records(actions=signed)  # through the action index: never the whole table
            batches = unmatched_batches(engine, ledger)
            personal = erasure_problems(engine, ledger) + edited_notes(engine, ledger)
    except StewardError as exc:
        _fail(exc)
        return
    failed = False
    if not report.chain.ok:
        err.print(f"ledger broken at seq {report.chain.first_bad_seq}: {escape(report.chain.problem)}", highlight=False)
        failed = True
    if not report.ok:
        where = f" at seq {report.first_divergence}" if report.first_divergence else ""
        err.print(f"ledger diverges from its anchor {escape(anchor.uri)}{where}:", highlight=False)
        for problem in report.problems:
            err.print(f"  {escape(problem)}", highlight=False)
        failed = True
    for problem in unverified(sign_offs):
        err.print(f"signature broken: {escape(problem)}", highlight=False)
        failed = True
    for problem in policy_problems(sign_offs):
        err.print(f"governance broken: {escape(problem)}", highlight=False)
        failed = True
    for problem in batches.problems if batches else []:
        err.print(f"decisions broken: {escape(problem)}", highlight=False)
        failed = True
    for problem in personal:
        err.print(f"personal data broken: {escape(problem)}", highlight=False)
        failed = True
    if failed:
        raise typer.Exit(code=1)
    console.print(
        f"ledger ok: {report.chain.count} records, chain intact, sign-off signatures verified, "
        "every sign-off under the policy in force",
        highlight=False,
    )
    console.print(f"anchor {anchor.uri}: {report.summary}", markup=False, highlight=False)
    if batches is not None:
        console.print(
            f"{batches.checked} decision batches match the prediction log "
            f"({batches.decisions} decisions in {batches.intervals} sealed intervals)",
            highlight=False,
        )
        if batches.unsealed:
            console.print(batches.unsealed, highlight=False)


def ledger_export(
    out: Path | None = typer.Option(None, "--out", help="Write the ledger as JSON lines to this file."),
    s3_key: str | None = typer.Option(None, "--s3-key", help="Upload to STEWARD_S3_BUCKET under this key."),
    retain_days: int | None = typer.Option(None, "--retain-days", help="Object Lock retention, if the bucket has it."),
) -> None:
    """Export the ledger to a file and/or to S3 (COMPLIANCE retention where the bucket supports Object Lock)."""
    from steward.db import make_engine
    from steward.ledger import Ledger
    from steward.ledger_export import export_to_s3
    from steward.storage import Storage

    settings = Settings()
    ledger = Ledger(make_engine(settings.db_url))
    if out is None and s3_key is None:
        _fail(ValueError("say where: --out FILE and/or --s3-key KEY"))
    try:
        if out is not None:
            console.print(f"{ledger.export_jsonl(out)} records written to {out}", highlight=False)
        if s3_key is not None:
            done = export_to_s3(ledger, storage=Storage.from_settings(settings), key=s3_key, retain_days=retain_days)
            console.print(f"{done.count} records uploaded to {done.uri}: {done.message}", highlight=False)
    except StewardError as exc:
        _fail(exc)
