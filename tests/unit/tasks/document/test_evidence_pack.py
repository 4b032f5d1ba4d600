import dataclasses
import hashlib
import json
import re
import zipfile
from html.parser import HTMLParser
from urllib.parse import unquote

import pytest

from steward.db import make_engine
from steward.ledger import Ledger
from steward.registry import Registry
from steward.storage import Storage
from tasks.document import evidence
from tasks.document.evidence_pack import PACK_EXISTS, ZIP_EXISTS, write_pack

OTHER_DIGEST = "f0" * 32
HOSTILE = "<script>alert('pwned')</script>"
PARAMS = "train: {model: logistic_regression}\n"
MONITORED = PARAMS + "monitor: {max_psi: 0.2}\n"


def _project(root, params=PARAMS):
    files = {
        "reports/gate.json": {"verdict": "fail", "tier": "high", "checks": [{"check": "auc", "passed": False}]},
        "reports/evaluate.json": {"metrics": {"auc": 0.8}},
        "reports/fairness.json": {"attributes": {}},
        "reports/explain.json": {"global_importance": []},
    }
    for path, report in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(json.dumps(report))
    texts = {
        "reports/document/model_card.md": "# Model card\n## Intended use\n",
        "reports/document/model_card.html": "<h1>Model card</h1>",
        "reports/document/impact_assessment.html": "<h1>Impact assessment</h1>",
        "reports/document/datasheet.md": "# Datasheet\n",
        "reports/evidence/index.html": '<a href="../document/model_card.html">card</a>',
        "params.yaml": params,
        "dvc.lock": "schema: '2.0'\n",
    }
    for path, text in texts.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    (root / "reports/explain").mkdir()
    (root / "reports/explain/bar.png").write_bytes(b"\x89PNG not really")
    return root


def _world(tmp_path, params=PARAMS):
    """A project snapshotted into local storage and a real ledger + registry holding one sign-off."""
    storage = Storage(local_root=tmp_path / "store")
    snap = evidence.snapshot(_project(tmp_path / "project", params), storage=storage)
    engine = make_engine(f"sqlite:///{tmp_path / 'steward.db'}")
    ledger = Ledger(engine)
    registry = Registry(engine, ledger=ledger)
    lineage = {"model_md5": "m1", "data_md5": "d1", "params_hash": "p" * 64, "git_commit": "c0ffee"}
    model = registry.register(
        name="credit-risk", model_tag="credit-risk:abc", flow_run_id="run-1", metrics={}, **lineage
    )
    ref = model.ref

    def append(action, payload, subject=ref, actor="steward-signoff"):
        return ledger.append(actor=actor, action=action, subject=subject, payload=payload)

    append("gate.verdict", {"verdict": "pass", "tier": "high", "reasons": [], "evidence_digest": snap.digest})
    request = {"flow_run_id": "run-1", "author": "carol", "tier": "high", "policy": {"approvers": 2}}
    when = "2026-01-01T00:00:00+00:00"
    append("approval.requested", request | {"evidence_digest": snap.digest, "evidence_page": "x", "requested_at": when})
    registry.register(name="hiring", model_tag="hiring:abc", flow_run_id="run-2", metrics={}, **lineage)  # between
    answer = {"decision": "approve", "flow_run_id": "run-1", "comment": HOSTILE}
    append("approval.refused", {"approver": "carol", "decision": "approve", "reason": "separation of duties"})
    append("approval.escalated", {"flow_run_id": "run-1", "deadline": "2026-01-04T00:00:00+00:00"})
    alice = append(
        "approval.granted",
        answer
        | {"approver": "alice", "approver_kind": "human", "roles": ["model-risk"], "evidence_digest": snap.digest},
    )
    bob = append(
        "approval.granted",
        answer | {"approver": "bob", "approver_kind": "demo", "roles": ["compliance"], "evidence_digest": OTHER_DIGEST},
    )
    return {"model": model, "records": ledger.records(subject=ref), "snapshot": snap, "storage": storage} | {
        "seqs": {"alice": alice.seq, "bob": bob.seq}
    }


@pytest.fixture
def world(tmp_path):
    return _world(tmp_path)


def _write(world, out):
    return write_pack(
        world["model"], records=world["records"], snapshot=world["snapshot"], storage=world["storage"], out=out
    )


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _json(folder, name):
    return json.loads((folder / name).read_text())


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def test_every_manifest_hash_is_the_sha256_of_the_file(world, tmp_path):
    pack = _write(world, tmp_path / "out/pack")
    files = _files(pack.folder)
    manifest = files.pop("manifest.json")
    listed = json.loads(manifest)["files"]
    assert set(listed) == set(files)
    for path, data in files.items():
        assert listed[path] == {"sha256": _sha(data), "size": len(data)}
    assert pack.digest == _sha(manifest)
    assert {"index.html", "annex_iv.json", "approvals.json", "model.json", "ledger/excerpt.jsonl"} <= set(files)


def test_the_zip_holds_exactly_the_folder_files(world, tmp_path):
    pack = _write(world, tmp_path / "out/pack")
    assert pack.zip_path == tmp_path / "out/pack.zip"
    with zipfile.ZipFile(pack.zip_path) as archive:
        zipped = {name: archive.read(name) for name in archive.namelist()}
    assert zipped == _files(pack.folder)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["pack", "pack.zip"]


def test_the_evidence_is_the_snapshot_and_the_model_its_registry_entry(world, tmp_path):
    pack = _write(world, tmp_path / "out/pack")
    project = tmp_path / "project"
    for path in world["snapshot"].files:
        assert (pack.folder / "evidence" / path).read_bytes() == (project / path).read_bytes()
    model = _json(pack.folder, "model.json")
    assert (model["ref"], model["data_md5"], model["git_commit"], model["state"]) == (
        "credit-risk:v1",
        "d1",
        "c0ffee",
        "candidate",
    )


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.links += [value for name, value in attrs if name in ("href", "src")]


def test_the_index_is_offline_escaped_and_every_link_resolves(world, tmp_path):
    pack = _write(world, tmp_path / "out/pack")
    page = (pack.folder / "index.html").read_text()
    parser = _Links()
    parser.feed(page)
    assert "script" not in parser.tags
    assert "&lt;script&gt;" in page
    files = [link for link in parser.links if not link.startswith("#")]
    assert files
    for link in files:
        assert not re.match(r"^[a-z]+:|^//", link), link
        assert (pack.folder / unquote(link)).is_file(), link
    assert "evidence/reports/document/model_card.html" in files


@pytest.mark.parametrize(("params", "point_9_open"), [(PARAMS, True), (MONITORED, False)])
def test_annex_iv_maps_points_1_to_9_and_article_13_and_names_its_gaps(tmp_path, params, point_9_open):
    pack = _write(_world(tmp_path, params), tmp_path / "out/pack")
    points = {p["point"]: p for p in _json(pack.folder, "annex_iv.json")["points"]}
    assert list(points) == [*map(str, range(1, 10)), "Article 13"]
    files = _files(pack.folder)
    for point in points.values():
        for entry in point["files"]:
            assert entry["sha256"] == _sha(files[entry["path"]])
    open_points = {key for key, point in points.items() if point["gap"]}
    assert open_points == ({"7", "8", "9"} if point_9_open else {"7", "8"})
    assert not points["7"]["files"] and not points["8"]["files"]
    assert [f["path"] for f in points["9"]["files"]] == ([] if point_9_open else ["evidence/params.yaml"])
    assert [gap.split(":")[0] for gap in pack.gaps] == [f"Annex IV point {key}" for key in sorted(open_points)]
    paths = {key: {f["path"] for f in point["files"]} for key, point in points.items()}
    assert "evidence/reports/document/model_card.md" in paths["1"] & paths["Article 13"]
    assert {"evidence/dvc.lock", "evidence/params.yaml", "evidence/reports/document/datasheet.md"} <= paths["2"]
    assert {"evidence/reports/fairness.json", "evidence/reports/explain/bar.png", "approvals.json"} <= paths["3"]
    assert {"evidence/reports/evaluate.json", "evidence/reports/gate.json"} <= paths["4"]
    assert {"ledger/excerpt.jsonl", "model.json", "evidence/dvc.lock"} <= paths["6"]


def test_approvals_name_the_approvers_and_flag_a_digest_mismatch(world, tmp_path):
    pack = _write(world, tmp_path / "out/pack")
    approvals = _json(pack.folder, "approvals.json")
    assert approvals["evidence_digest"] == world["snapshot"].digest
    assert [(r["author"], r["tier"], r["digest_matches"]) for r in approvals["requests"]] == [("carol", "high", True)]
    answers = {a["approver"]: a for a in approvals["answers"]}
    assert approvals["approved_by"] == ["alice", "bob"]
    assert (answers["alice"]["approver_kind"], answers["alice"]["digest_matches"]) == ("human", True)
    assert (answers["bob"]["approver_kind"], answers["bob"]["digest_matches"]) == ("demo", False)
    assert approvals["digest_mismatches"] == [world["seqs"]["bob"]]
    records = {r.seq: r for r in world["records"]}
    assert answers["bob"]["hash"] == records[world["seqs"]["bob"]].hash
    assert [r["reason"] for r in approvals["refusals"]] == ["separation of duties"]
    assert [t["action"] for t in approvals["timeouts"]] == ["approval.escalated"]


def _independent_hash(record):
    body = {k: getattr(record, k) for k in ("seq", "ts", "actor", "action", "subject", "payload")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _sha((record.prev_hash + text).encode())


def test_each_excerpt_record_is_verified_on_its_own_and_a_tampered_one_is_flagged(world, tmp_path):
    records = world["records"]
    assert [r.seq for r in records] != list(range(records[0].seq, records[0].seq + len(records)))  # not contiguous
    bob = world["seqs"]["bob"]
    tampered = [
        dataclasses.replace(r, payload={**r.payload, "approver": "mallory"}) if r.seq == bob else r for r in records
    ]
    pack = _write(world | {"records": tampered}, tmp_path / "out/pack")
    lines = (pack.folder / "ledger/excerpt.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [r.seq for r in records]
    checked = _json(pack.folder, "ledger/verification.json")
    assert {c["seq"]: c["hash_ok"] for c in checked["records"]} == {
        r.seq: _independent_hash(r) == r.hash for r in tampered
    }
    assert [c["seq"] for c in checked["records"] if not c["hash_ok"]] == [bob]
    assert checked["all_ok"] is False
    assert "steward ledger verify" in checked["scope"]


def test_an_existing_pack_is_refused_and_left_untouched(world, tmp_path):
    out = tmp_path / "out/pack"
    out.mkdir(parents=True)
    (out / "old.txt").write_text("a previous pack")
    with pytest.raises(ValueError, match=re.escape(PACK_EXISTS.format(path=out))):
        _write(world, out)
    assert _files(out) == {"old.txt": b"a previous pack"}
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["pack"]


def test_an_existing_zip_is_refused_and_nothing_is_written(world, tmp_path):
    zipped = tmp_path / "out/pack.zip"
    zipped.parent.mkdir()
    zipped.write_bytes(b"old zip")
    with pytest.raises(ValueError, match=re.escape(ZIP_EXISTS.format(path=zipped))):
        _write(world, tmp_path / "out/pack")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["pack.zip"]
    assert zipped.read_bytes() == b"old zip"


def test_an_empty_out_folder_is_filled(world, tmp_path):
    (tmp_path / "out/pack").mkdir(parents=True)
    pack = _write(world, tmp_path / "out/pack")
    assert (pack.folder / "index.html").is_file()


def test_a_failure_leaves_no_half_pack(world, tmp_path):
    stored = next((tmp_path / "store/evidence/files").rglob("*.png"))
    stored.write_bytes(b"corrupted")
    with pytest.raises(ValueError, match="does not match its manifest hash"):
        _write(world, tmp_path / "out/pack")
    assert list((tmp_path / "out").iterdir()) == []
