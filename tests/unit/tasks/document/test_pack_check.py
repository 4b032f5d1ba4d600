"""`steward evidence verify PACK`: a pack checked offline, from its own files. Each attack on a written pack (a
report changed, a report changed with its manifest and digest rewritten to match, an approval reworded, a file
slipped in) must be named."""

import json
import shutil
import zipfile
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from steward.db import make_engine
from steward.governance import GovernanceParams
from steward.keys import SigningKey
from steward.ledger import APPROVAL_REQUESTED, Ledger, Record, record_hash
from steward.registry import Registry
from steward.signoff import ANSWER, OPENING, Request, Tally, answer_statement, signature_token
from steward.storage import Storage, sha256_file
from tasks.document import evidence
from tasks.document.evidence_pack import write_pack
from tasks.document.pack_check import verify_pack
from tasks.signoff.policy import Approval
from tasks.signoff.record import record_answer
from tests.unit.tasks.document.test_evidence_pack import _project

ALICE, BOB, CAROL = (SigningKey(Ed25519PrivateKey.generate()) for _ in range(3))


def _signed_pack(tmp_path, *, approvers=("alice",)):
    """A pack of a model carol opened and `approvers` approved, each answer signed by its approver's key."""
    storage = Storage(local_root=tmp_path / "store")
    snap = evidence.snapshot(_project(tmp_path / "project"), storage=storage)
    engine = make_engine(f"sqlite:///{tmp_path / 'steward.db'}")
    ledger = Ledger(engine)
    model = Registry(engine, ledger=ledger).register(
        name="credit-risk", model_tag="credit-risk:abc", model_md5="m", data_md5="d", params_hash="p" * 64,
        git_commit=None, flow_run_id="run-1", metrics={},
    )  # fmt: skip
    governance = GovernanceParams.model_validate(
        {
            "signoff": {"minimal": {}, "limited": {}, "high": {"approvers": len(approvers)}},
            "approvers": {
                "alice": {"roles": ["model-risk"], "keys": [ALICE.public.openssh]},
                "bob": {"roles": ["compliance"], "keys": [BOB.public.openssh]},
            },
        }
    )
    request = Request(
        model=model.ref,
        flow_run_id="run-1",
        author="carol",
        tier="high",
        policy=governance.signoff_policy,
        evidence_digest=snap.digest,
        evidence_page="x",
        requested_at=datetime.now(UTC).replace(microsecond=0),
        keys={"alice": [ALICE.public.openssh], "bob": [BOB.public.openssh]},
        policy_digest="9f" * 32,
        author_key=CAROL.public.openssh,
    )
    request = replace(request, author_signature=CAROL.sign(OPENING, request.opening()))
    opened = ledger.append(actor="carol", action=APPROVAL_REQUESTED, subject=model.ref, payload=request.payload())
    tally = Tally(request, request_seq=opened.seq)
    for name in approvers:
        stamp = datetime.now(UTC).replace(microsecond=0).isoformat()
        statement = answer_statement(
            request, decision="approve", comment="", evidence_digest=snap.digest, signed_at=stamp
        )
        token = signature_token(stamp, {"alice": ALICE, "bob": BOB}[name].sign(ANSWER, statement))
        answer = Approval(decision="approve", approver=name, evidence_digest=snap.digest, comment="", signature=token)
        record_answer.fn(answer, tally, governance=governance, ledger=ledger, pause_key=f"k-{name}")
        tally = Tally(request, request_seq=opened.seq)
    records = ledger.records(subject=model.ref)
    assert [r.action for r in records][-len(approvers) :] == ["approval.granted"] * len(approvers)
    pack = write_pack(model, records=records, snapshot=snap, storage=storage, out=tmp_path / "pack")
    return pack, snap


def _rewrite_manifest(folder, **changes):
    """What a forger does after editing files: recompute their hashes in manifest.json."""
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in manifest["files"]:
        manifest["files"][name]["sha256"] = sha256_file(folder / name)
    manifest.update(changes)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_a_written_pack_verifies_and_shows_which_signature_covers_which_report(tmp_path):
    pack, snap = _signed_pack(tmp_path, approvers=("alice", "bob"))
    for where in (pack.folder, pack.zip_path):
        check = verify_pack(where)
        assert check.ok, check.problems
        assert check.evidence_digest == snap.digest
    by = {(s["action"], s["signer"]): s for s in check.signatures}
    assert by[("approval.granted", "alice")]["fingerprint"] == ALICE.public.fingerprint
    assert by[("approval.granted", "bob")]["fingerprint"] == BOB.public.fingerprint
    assert by[("approval.requested", "carol")]["fingerprint"] == CAROL.public.fingerprint
    assert by[("approval.granted", "alice")]["covers"] == sorted(snap.files)  # every report in the evidence
    assert "reports/gate.json" in by[("approval.granted", "bob")]["covers"]
    written = json.loads((pack.folder / "signatures.json").read_text())["signatures"]
    assert {(s["signer"], s["fingerprint"], tuple(s["covers"])) for s in written} == {
        (s["signer"], s["fingerprint"], tuple(s["covers"])) for s in check.signatures
    }


def test_attack_a_report_changed_after_signing_is_named(tmp_path):
    pack, _ = _signed_pack(tmp_path)
    (pack.folder / "evidence/reports/gate.json").write_text('{"verdict": "pass"}')
    check = verify_pack(pack.folder)
    assert (
        "evidence/reports/gate.json: its sha256 is not the manifest's (changed after the pack was written)"
        in check.problems
    )


def test_attack_a_report_changed_with_the_manifest_and_digest_rewritten_is_not_covered(tmp_path):
    pack, _ = _signed_pack(tmp_path)
    (pack.folder / "evidence/reports/gate.json").write_text('{"verdict": "pass"}')
    files = {
        p.relative_to(pack.folder / "evidence").as_posix(): sha256_file(p)
        for p in (pack.folder / "evidence").rglob("*")
        if p.is_file()
    }
    _rewrite_manifest(pack.folder, evidence_digest=evidence.digest_of(files))
    check = verify_pack(pack.folder)
    forged = evidence.digest_of(files)
    assert check.problems == [
        f"credit-risk:v1 is approved, but no verified approval signature covers this pack's evidence ({forged})"
    ]
    assert all(not s["covers"] for s in check.signatures)  # the signatures name the digest that was signed


def test_attack_a_reworded_approval_is_named_even_re_hashed(tmp_path):
    pack, _ = _signed_pack(tmp_path)
    excerpt = pack.folder / "ledger/excerpt.jsonl"
    records = [Record.from_json(line) for line in excerpt.read_text().splitlines()]
    granted = next(r for r in records if r.action == "approval.granted")
    payload = {**granted.payload, "comment": "no reservations at all"}

    def forge(record):
        excerpt.write_text("".join((record if r.seq == granted.seq else r).to_json() + "\n" for r in records))
        _rewrite_manifest(pack.folder)
        return verify_pack(pack.folder).problems

    edited = replace(granted, payload=payload)  # its stored hash left as it was
    assert f"ledger record {granted.seq} in the excerpt does not match its own hash (edited)" in forge(edited)
    fields = {k: getattr(granted, k) for k in ("prev_hash", "seq", "ts", "actor", "action", "subject")}
    rehashed = replace(edited, hash=record_hash(**fields, payload=payload))
    problems = forge(rehashed)
    assert f"seq {granted.seq}: approval.granted by alice is not signed by a key seq 2 pinned for alice" in problems
    assert not any("does not match its own hash" in p for p in problems)


def test_a_file_slipped_in_or_removed_is_named(tmp_path):
    pack, _ = _signed_pack(tmp_path)
    (pack.folder / "evidence/reports/extra.json").write_text("{}")
    (pack.folder / "annex_iv.json").unlink()
    problems = verify_pack(pack.folder).problems
    assert "annex_iv.json: listed in the manifest, missing from the pack" in problems
    assert "evidence/reports/extra.json: in the pack but not in its manifest (added after it was written)" in problems


def test_a_zip_reaching_outside_the_pack_is_refused(tmp_path):
    pack, _ = _signed_pack(tmp_path)
    hostile = tmp_path / "hostile.zip"
    shutil.copy(pack.zip_path, hostile)
    with zipfile.ZipFile(hostile, "a") as archive:
        archive.writestr("../escaped.txt", "x")
    with pytest.raises(ValueError, match=r"the zip holds '\.\./escaped\.txt', a path outside the pack"):
        verify_pack(hostile)
    assert not (tmp_path / "escaped.txt").exists()
