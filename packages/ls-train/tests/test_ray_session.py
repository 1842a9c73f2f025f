"""Which Ray ls-train, ls-evaluate and ls-predict use: their own local instance unless an address is
given (issue 18: never a cluster recorded on the machine by somebody else's ``ray start``)."""

from __future__ import annotations

from ls_train.config import ClusterConfig
from ls_train.ray_session import ray_init_kwargs


def test_without_an_address_a_new_local_instance_is_started() -> None:
    # address=None would let Ray join a cluster recorded in /tmp/ray or named by RAY_ADDRESS
    kwargs = ray_init_kwargs(ClusterConfig(num_cpus=3))
    assert kwargs["address"] == "local" and kwargs["num_cpus"] == 3


def test_an_address_given_is_joined_as_it_is() -> None:
    for address in ("auto", "10.0.0.5:6379"):
        kwargs = ray_init_kwargs(ClusterConfig(address=address, num_cpus=3))
        assert kwargs["address"] == address and "num_cpus" not in kwargs
