"""Which task runner the monitor flow asks for, from params.yaml's `monitor` section."""

from __future__ import annotations

import pytest
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner
from pydantic import ValidationError

from flows.monitor import task_runner
from steward.params import MonitorParams
from tests.usecases import params_for


def _with(**monitor):
    params = params_for()
    return params.model_copy(update={"monitor": params.monitor.model_copy(update=monitor)})


def test_threads_by_default_and_dask_on_a_local_cluster_or_at_an_address():
    assert isinstance(task_runner(_with()), ThreadPoolTaskRunner)
    local = task_runner(_with(task_runner="dask", dask_workers=3))
    assert isinstance(local, DaskTaskRunner) and local.address is None
    assert local.cluster_kwargs == {"n_workers": 3, "threads_per_worker": 1}
    remote = task_runner(_with(task_runner="dask", dask_address="tcp://10.0.0.5:8786"))
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://10.0.0.5:8786"


@pytest.mark.parametrize("address", ["10.0.0.5:8786", "http://10.0.0.5:8786", "tcp://10.0.0.5", "tcp://a b:1"])
def test_a_scheduler_address_that_is_not_tcp_host_port_is_refused_by_name(address):
    with pytest.raises(ValidationError, match="dask_address"):
        MonitorParams(dask_address=address)
