"""Reports are written so that the same run gives the same bytes, whatever CPU summed the numbers."""

import json

import numpy as np

from tasks.stage import write_json


def test_a_report_is_the_same_file_when_its_numbers_differ_only_in_the_last_bit(tmp_path):
    ulp_apart = 0.13379787678016533, float(np.nextafter(0.13379787678016533, 1.0))
    assert ulp_apart[0] != ulp_apart[1]
    written = [
        write_json(tmp_path / f"r{i}.json", {"ci": [x, 2.5], "n": 3, "nested": {"v": x}}).read_bytes()
        for i, x in enumerate(ulp_apart)
    ]
    assert written[0] == written[1]
    assert json.loads(written[0]) == {
        "schema_version": 1,
        "ci": [0.13379787678, 2.5],
        "n": 3,
        "nested": {"v": 0.13379787678},
    }
