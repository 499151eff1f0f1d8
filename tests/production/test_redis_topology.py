"""The Redis Cluster and Sentinel fixtures of tests/redis_topology.py do what they say: the
cluster has three masters with a replica each over all 16384 slots and spreads hash tags over
them, a killed master's replica takes over and serves its slots, and Sentinel promotes the
replica of a killed master, which redis-py's clients find again on their own."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest
import redis
import redis.cluster
import redis.sentinel

from tests.redis_topology import (
    CLUSTER_SLOTS,
    ClusterProcesses,
    SentinelProcesses,
    fresh_redis_cluster_fixture,  # noqa: F401  (the fixtures)
    parse_cluster_nodes,
    redis_cluster_fixture,  # noqa: F401
    redis_sentinel_fixture,  # noqa: F401
)

TIMEOUTS: dict[str, Any] = {"socket_timeout": 2, "socket_connect_timeout": 2}


def cluster_client(cluster: ClusterProcesses) -> redis.cluster.RedisCluster:
    nodes = [
        redis.cluster.ClusterNode(host, port)  # type: ignore[no-untyped-call]
        for host, port in cluster.startup_nodes
    ]
    return redis.cluster.RedisCluster(startup_nodes=nodes, decode_responses=True, **TIMEOUTS)


def on_node(port: int, key: str) -> Any:
    """The key as the node on ``port`` itself holds it (no redirection)."""
    client = redis.Redis(port=port, decode_responses=True, **TIMEOUTS)
    try:
        return client.get(key)
    finally:
        client.close()


def test_cluster_nodes_are_read() -> None:
    text = (
        "07c3 127.0.0.1:30004@40004 slave e7d1 0 1426238317239 4 connected\n"
        "e7d1 127.0.0.1:30001@40001,host myself,master - 0 0 1 connected 0-5460 5462\n"
        "67ed 127.0.0.1:30002@40002 master,fail - 0 1426238316232 2 connected "
        "5461 [5463->-e7d1]\n"
    )
    replica, master, failed = parse_cluster_nodes(text)
    assert (replica.port, replica.master_id, replica.is_master) == (30004, "e7d1", False)
    assert (master.port, master.slots, master.is_master) == (30001, ((0, 5460), (5462, 5462)), True)
    assert (failed.slots, failed.failed) == (((5461, 5461),), True)


@pytest.mark.slow
def test_cluster_has_three_masters_with_a_replica_each(redis_cluster: ClusterProcesses) -> None:
    print(f"cluster start-up: {redis_cluster.startup_seconds:.2f}s")
    masters = redis_cluster.masters()
    assert len(masters) == 3
    assert all(len(master.replica_ports) == 1 for master in masters)
    nodes = [master.port for master in masters]
    nodes += [port for master in masters for port in master.replica_ports]
    assert sorted(nodes) == sorted(redis_cluster.ports)
    assert len(redis_cluster.ports) == 6
    ranges = sorted(slots for master in masters for slots in master.slots)
    assert ranges[0][0] == 0
    assert ranges[-1][1] == CLUSTER_SLOTS - 1
    for (_, last), (first, _) in itertools.pairwise(ranges):
        assert first == last + 1, f"a gap or an overlap: {ranges}"
    assert redis_cluster.master_port_for_slot(0) == masters[0].port
    assert redis_cluster.master_port_for_slot(CLUSTER_SLOTS - 1) == masters[-1].port
    start_nodes = ",".join(f"127.0.0.1:{port}" for port in redis_cluster.ports[:3])
    assert redis_cluster.url == f"redis+cluster://{start_nodes}"


@pytest.mark.slow
def test_hash_tags_land_on_several_masters(redis_cluster: ClusterProcesses) -> None:
    run = uuid.uuid4().hex[:8]
    keys = [f"{{{tag}}}:{run}" for tag in "abcdefgh"]
    owners = {key: redis_cluster.master_port_for_key(key) for key in keys}
    assert len(set(owners.values())) >= 2, owners
    client = cluster_client(redis_cluster)
    try:
        for key in keys:
            client.set(key, key)
    finally:
        client.close()
    for key, port in owners.items():
        assert on_node(port, key) == key, f"{key} is not on {port}, the master of its slot"


@pytest.mark.slow
def test_killed_master_is_replaced_by_its_replica(fresh_redis_cluster: ClusterProcesses) -> None:
    cluster = fresh_redis_cluster
    key = "{failover}:score"
    old_port = cluster.master_port_for_key(key)
    [old] = [master for master in cluster.masters() if master.port == old_port]
    client = cluster_client(cluster)
    try:
        assert client.set(key, "before")
        cluster.kill(old_port)
        seconds = cluster.wait_for_failover(old_port)
        print(f"cluster failover: {seconds:.2f}s after SIGKILL")
        new_port = cluster.master_port_for_key(key)
        assert new_port in old.replica_ports
        assert len(cluster.masters()) == 3
        # The same client, its slot map stale: it finds the new master by itself.
        assert client.set(key, "after")
        assert client.get(key) == "after"
        assert on_node(new_port, key) == "after"

        rejoined = cluster.restart(old_port)
        print(f"cluster restart of the old master: {rejoined:.2f}s")
        [new] = [master for master in cluster.masters() if master.port == new_port]
        assert new.replica_ports == [old_port]
        assert client.incr("{failover}:count") == 1
    finally:
        client.close()


@pytest.mark.slow
def test_sentinel_promotes_the_replica(redis_sentinel: SentinelProcesses) -> None:
    deployment = redis_sentinel
    print(f"sentinel start-up: {deployment.startup_seconds:.2f}s")
    nodes = ",".join(f"127.0.0.1:{port}" for port in deployment.sentinel_ports)
    assert deployment.url == f"redis+sentinel://{nodes}/{deployment.name}"
    first_master, replica = deployment.server_ports
    assert deployment.master_port() == first_master

    sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        deployment.sentinels, sentinel_kwargs=TIMEOUTS, **TIMEOUTS
    )
    master: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        deployment.name, decode_responses=True, **TIMEOUTS
    )
    try:
        assert master.set("sentinel:key", "before")
        old_port = deployment.kill_master()
        assert old_port == first_master
        seconds = deployment.wait_for_failover(old_port)
        print(f"sentinel failover: {seconds:.2f}s after SIGKILL")
        assert deployment.master_port() == replica
        # The same Sentinel object and client: it asks the sentinels for the new master.
        assert master.set("sentinel:key", "after")
        assert master.get("sentinel:key") == "after"
        assert on_node(replica, "sentinel:key") == "after"
    finally:
        master.close()
