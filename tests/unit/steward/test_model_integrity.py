"""Verified model bytes: a sealed version verifies, and each attack on its bytes, its registry row or its
signature is refused, naming what differs. Model directories here are plain files (the kernel never imports
BentoML); tests/integration/test_model_integrity.py swaps a real BentoML store under a real service."""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from dataclasses import replace

import pytest
from sqlalchemy import text

from steward.db import make_engine
from steward.keys import new_key
from steward.ledger import MODEL_REFUSED, Ledger, record_hash
from steward.model_integrity import (
    BAD_SIGNATURE,
    EDITED_REGISTRATION,
    FILES_DIFFER,
    NO_SEAL,
    NOT_IN_STORE,
    OTHER_SIGNER,
    ROW_DIFFERS,
    SEAL_DIFFERS,
    Manifest,
    ModelRefused,
    Seal,
    check,
    manifest_of,
    refuse,
    verify,
)
from steward.registry import Registry, RegistryError


@pytest.fixture
def world(tmp_path):
    """A registry with a ledger, this instance's key, and a store of two model directories, each sealed."""
    engine = make_engine(f"sqlite:///{tmp_path / 'steward.db'}")
    registry = Registry(engine, ledger=Ledger(engine))
    key = new_key(tmp_path / "keys" / "instance")
    store = tmp_path / "store"
    refs = {}
    for tag, coefficient in (("credit-risk:aaa", 0.5), ("credit-risk:bbb", -3.0)):
        directory = store / tag.replace(":", "/")
        directory.mkdir(parents=True)
        (directory / "saved_model.pkl").write_bytes(pickle.dumps({"coef": coefficient}))
        (directory / "model.yaml").write_text(f"name: credit-risk\nversion: {tag[-3:]}\n")
        (directory / "custom_objects.pkl").write_bytes(pickle.dumps({"reference": {"n": 1}}))
        refs[tag] = _register(registry, tag, manifest=manifest_of(directory), signer=key).ref
    return {"registry": registry, "engine": engine, "key": key, "store": store, "refs": refs, "tmp": tmp_path}


def _register(registry, tag, **sealing):
    return registry.register(
        name="credit-risk",
        model_tag=tag,
        model_md5=tag,
        data_md5="d",
        params_hash="p",
        git_commit=None,
        flow_run_id=None,
        metrics={},
        **sealing,
    )


def _check(world, ref, *, key=None):
    return check(
        ref,
        registry=world["registry"],
        key=(key or world["key"]).public,
        directory_of=lambda tag: world["store"] / tag.replace(":", "/"),
    )


def _sql(world, statement, **values):
    with world["engine"].begin() as connection:
        connection.execute(text(statement), values)


def test_the_manifest_is_every_file_with_its_sha256_and_a_digest_over_them(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.pkl").write_bytes(b"\x80\x04b")
    (tmp_path / "sub" / "a.yaml").write_text("a: 1\n")
    found = manifest_of(tmp_path)
    expected = {
        "b.pkl": hashlib.sha256(b"\x80\x04b").hexdigest(),
        "sub/a.yaml": hashlib.sha256(b"a: 1\n").hexdigest(),
    }
    assert found.files == expected
    canonical = json.dumps(dict(sorted(expected.items())), separators=(",", ":"))
    assert found.digest == hashlib.sha256(canonical.encode()).hexdigest()
    assert Manifest(dict(reversed(list(expected.items())))).digest == found.digest  # order does not count


def test_a_sealed_version_verifies_and_its_seal_is_in_the_registry_and_the_ledger(world):
    ref = world["refs"]["credit-risk:aaa"]
    version = _check(world, ref)
    assert version.ref == ref
    sealed = world["registry"].seal(version.id)
    recorded = world["registry"].registration(ref)
    assert sealed is not None and recorded is not None
    assert recorded.payload["seal"] == sealed.payload()
    assert sealed.signer == world["key"].public.fingerprint
    assert set(sealed.files) == {"saved_model.pkl", "model.yaml", "custom_objects.pkl"}


def test_attack_another_models_pickle_in_place_of_saved_model_is_refused_naming_the_file(world):
    aaa, bbb = world["store"] / "credit-risk/aaa", world["store"] / "credit-risk/bbb"
    (aaa / "saved_model.pkl").write_bytes((bbb / "saved_model.pkl").read_bytes())
    with pytest.raises(ModelRefused) as refused:
        _check(world, world["refs"]["credit-risk:aaa"])
    assert str(refused.value) == FILES_DIFFER.format(
        ref="credit-risk:v1", tag="credit-risk:aaa", changes="saved_model.pkl changed"
    )


@pytest.mark.parametrize("name", ["saved_model.pkl", "custom_objects.pkl", "model.yaml"])
def test_attack_one_byte_changed_in_any_file_is_refused(world, name):
    path = world["store"] / "credit-risk/aaa" / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelRefused, match=re.escape(f"{name} changed")):
        _check(world, world["refs"]["credit-risk:aaa"])


def test_attack_a_file_added_or_removed_is_refused(world):
    directory = world["store"] / "credit-risk/aaa"
    (directory / "extra.py").write_text("import os\n")
    (directory / "custom_objects.pkl").unlink()
    with pytest.raises(ModelRefused, match=re.escape("custom_objects.pkl missing, extra.py added")):
        _check(world, world["refs"]["credit-risk:aaa"])


def test_a_tag_missing_from_the_store_is_refused(world):
    with pytest.raises(ModelRefused) as refused:
        check(
            world["refs"]["credit-risk:aaa"],
            registry=world["registry"],
            key=world["key"].public,
            directory_of=lambda tag: None,
        )
    assert str(refused.value) == NOT_IN_STORE.format(ref="credit-risk:v1", tag="credit-risk:aaa")


def test_attack_a_model_tag_updated_in_the_database_is_refused(world):
    """The row of v1 now points at v2's bytes (sealed and intact): its ledger registration record says otherwise."""
    _sql(world, "UPDATE model_versions SET model_tag = 'credit-risk:bbb' WHERE version = 1")
    with pytest.raises(ModelRefused) as refused:
        _check(world, "credit-risk:v1")
    assert str(refused.value) == ROW_DIFFERS.format(
        ref="credit-risk:v1", field="model_tag", value="credit-risk:bbb", recorded="credit-risk:aaa"
    )


def test_attack_a_model_tag_and_seal_copied_from_another_version_are_refused(world):
    """v1's row and seal made a copy of v2's: the ledger still names v1's own."""
    registry = world["registry"]
    v1, v2 = registry.get("credit-risk:v1"), registry.get("credit-risk:v2")
    other = registry.seal(v2.id)
    _sql(world, "UPDATE model_versions SET model_tag = :tag WHERE id = :id", tag=v2.model_tag, id=v1.id)
    _sql(
        world,
        "UPDATE model_seals SET manifest = :m, signature = :s WHERE version_id = :id",
        m=other.manifest,
        s=other.signature,
        id=v1.id,
    )
    with pytest.raises(ModelRefused, match="registry's model_tag is 'credit-risk:bbb'"):
        _check(world, "credit-risk:v1")


@pytest.mark.parametrize(("column", "value"), [("model_md5", "ffff"), ("data_md5", "other-data")])
def test_attack_the_lineage_of_a_row_updated_in_the_database_is_refused(world, column, value):
    """The hash of the model file and the data version a decision is logged with are the ledger's too."""
    _sql(world, f"UPDATE model_versions SET {column} = :v WHERE version = 1", v=value)
    with pytest.raises(ModelRefused, match=re.escape(f"the registry's {column} is {value!r}")):
        _check(world, "credit-risk:v1")


def test_attack_a_recorded_manifest_updated_to_match_swapped_bytes_is_refused(world):
    directory = world["store"] / "credit-risk/aaa"
    (directory / "saved_model.pkl").write_bytes(pickle.dumps({"coef": 99.0}))
    swapped = manifest_of(directory)
    version = world["registry"].get("credit-risk:v1")
    _sql(world, "UPDATE model_seals SET manifest = :m WHERE version_id = :id", m=swapped.digest, id=version.id)
    with pytest.raises(ModelRefused) as refused:
        _check(world, "credit-risk:v1")
    assert str(refused.value) == SEAL_DIFFERS.format(ref="credit-risk:v1", field="manifest")


def test_attack_the_ledger_registration_record_edited_too_is_refused(world):
    """Rewriting the registry row and its ledger record alike breaks that record's hash."""
    version = world["registry"].get("credit-risk:v1")
    record = world["registry"].registration("credit-risk:v1")
    edited = record.payload | {"model_tag": "credit-risk:bbb"}
    _sql(world, "UPDATE ledger SET payload = :p WHERE seq = :seq", p=json.dumps(edited), seq=record.seq)
    _sql(world, "UPDATE model_versions SET model_tag = 'credit-risk:bbb' WHERE id = :id", id=version.id)
    with pytest.raises(ModelRefused) as refused:
        _check(world, "credit-risk:v1")
    assert str(refused.value) == EDITED_REGISTRATION.format(ref="credit-risk:v1", seq=record.seq)


def test_attack_a_manifest_signed_by_another_key_is_refused(world):
    """An attacker who can write the store and call the registry, without the instance key, seals their own."""
    mallory = new_key(world["tmp"] / "mallory")
    directory = world["store"] / "credit-risk/evil"
    directory.mkdir()
    (directory / "saved_model.pkl").write_bytes(pickle.dumps("os.system"))
    ref = _register(world["registry"], "credit-risk:evil", manifest=manifest_of(directory), signer=mallory).ref
    with pytest.raises(ModelRefused) as refused:
        _check(world, ref)
    expected = world["key"].public.fingerprint
    assert str(refused.value) == OTHER_SIGNER.format(ref=ref, signer=mallory.public.fingerprint, expected=expected)
    with pytest.raises(ModelRefused, match="not by this instance's key"):  # verified with mallory's: still not ours
        _check(world, world["refs"]["credit-risk:aaa"], key=mallory)


def test_attack_another_keys_signature_claiming_the_instance_as_signer_is_refused(world):
    registry = world["registry"]
    version = registry.get("credit-risk:v1")
    sealed, recorded = registry.seal(version.id), registry.registration(version.ref)
    forged = new_key(world["tmp"] / "forger").sign(
        "model-manifest", {"model": version.ref, "model_tag": version.model_tag, "manifest": sealed.manifest}
    )
    claimed = Seal(manifest=sealed.manifest, files=sealed.files, signature=forged, signer=sealed.signer)
    # the ledger copy forged alike (as an attacker recomputing the chain would), so only the signature is left
    payload = recorded.payload | {"seal": claimed.payload()}
    body = {k: getattr(recorded, k) for k in ("prev_hash", "seq", "ts", "actor", "action", "subject")}
    rewritten = replace(recorded, payload=payload, hash=record_hash(payload=payload, **body))
    found = manifest_of(world["store"] / "credit-risk/aaa")
    with pytest.raises(ModelRefused) as refused:
        verify(version, seal=claimed, registered=rewritten, found=found, key=world["key"].public)
    assert str(refused.value) == BAD_SIGNATURE.format(ref=version.ref, expected=world["key"].public.fingerprint)


def test_a_version_registered_unsigned_or_whose_seal_was_deleted_is_refused(world):
    unsigned = _register(world["registry"], "credit-risk:aaa")
    with pytest.raises(ModelRefused) as refused:
        _check(world, unsigned.ref)
    assert str(refused.value) == NO_SEAL.format(ref=unsigned.ref)
    _sql(world, "DELETE FROM model_seals WHERE version_id = 1")
    with pytest.raises(ModelRefused, match="has no signed manifest"):
        _check(world, "credit-risk:v1")


def test_a_manifest_is_registered_with_its_signer_or_not_at_all(world):
    with pytest.raises(RegistryError, match="never alone"):
        _register(world["registry"], "credit-risk:ccc", manifest=Manifest({"a": "b"}))


def test_a_refusal_is_a_ledger_record_naming_where_and_why(world):
    ledger = Ledger(world["engine"])
    refuse(ledger, "credit-risk:v1", reason="saved_model.pkl changed", where="service")
    (record,) = ledger.records(subject="credit-risk:v1", actions=(MODEL_REFUSED,))
    assert record.payload == {"where": "service", "reason": "saved_model.pkl changed"}
    assert ledger.verify().ok


def test_a_database_made_before_model_seals_gets_the_table_and_keeps_working(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE model_seals"))
    registry = Registry(make_engine(url), ledger=Ledger(make_engine(url)))
    assert registry.list() == []
    assert registry.seal(1) is None
