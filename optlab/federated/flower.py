r"""The same client update and server aggregation, run by Flower's simulation engine instead of the round loop.

:func:`optlab.federated.core.run_rounds` is the book's vectorized simulation: every sampled client runs in one
array operation.  A reader who outgrows it will run clients on a federated engine.  :func:`run_flower` hands the
*unchanged* plain functions of a method (``client_update`` and ``aggregate``, the contract of
:mod:`optlab.federated.core`) to Flower (``flwr``, its Ray-based simulation engine): each Flower client is one of
our clients, the server is a custom :class:`flwr.server.strategy.Strategy` that

- samples clients with our sampler (:func:`optlab.federated.core.sample_clients`, seeded by ``(seed, round)``),
  not Flower's, so that both runs pick the same clients;
- sends every client the broadcast view and the round number; a client seeds its randomness by
  ``(seed, round, client)`` (:func:`optlab.federated.core.client_rng`), as in the round loop;
- sorts the results by client id before aggregating (Flower returns them in completion order).

Flower clients are stateless: whatever a method's clients need from earlier rounds (DIFF2's previous iterate, for
instance) must be in the broadcast view.  The result is the final state and its per-round values, which the tests
compare with :func:`~optlab.federated.core.run_rounds` to a relative tolerance of 1e-12.

Flower pins its own Ray, protobuf and gRPC versions, so it does not enter the book's environment: install it in a
separate environment from ``requirements-flower.txt`` (README, "Federated learning on Flower").  ``import optlab``
never imports flwr; this module imports it inside :func:`run_flower`.

Book: chapters/federated/index.md
"""
from __future__ import annotations

import numpy as np

from ..validate import check_array, check_callable, check_int
from .core import as_seed, sample_clients, take_clients

__all__ = ["flatten_state", "unflatten_state", "run_flower"]


def flatten_state(state) -> tuple:
    """``(keys, arrays)``: an array as ``(None, [array])``, a dict of arrays in sorted key order."""
    if isinstance(state, dict):
        keys = sorted(state)
        return keys, [np.asarray(state[k], dtype=float) for k in keys]
    return None, [np.asarray(state, dtype=float)]


def unflatten_state(keys, arrays):
    """The inverse of :func:`flatten_state`."""
    return arrays[0] if keys is None else dict(zip(keys, arrays))


def run_flower(client_update, aggregate, state0, data, *, n_rounds: int, weights=None, n_sampled=None,
               client_view=None, rng=None, f=None, ray_init_args=None) -> dict:
    r"""Run a method's plain client update and aggregation on Flower's simulation engine.

    Parameters
    ----------
    client_update, aggregate, state0, data, n_rounds, weights, n_sampled, client_view, rng, f
        As in :func:`optlab.federated.core.run_rounds` (``rng`` must give the same seed there).
    ray_init_args : dict or None
        Passed to Ray through Flower's backend configuration (default: 1 CPU per client, no dashboard).

    Returns
    -------
    dict
        ``state`` (the final server state), ``f`` (``f(state)`` after each round, if ``f`` is given),
        ``clients`` (the sampled ids of each round).
    """
    from flwr.client import ClientApp, NumPyClient
    from flwr.common import FitIns, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.server.strategy import Strategy
    from flwr.simulation import run_simulation

    check_callable(client_update, "client_update", signature="(view, data, ids, rnd, seed)")
    check_callable(aggregate, "aggregate", signature="(state, messages, weights, rnd)")
    view_of = check_callable(client_view, "client_view", optional=True) or (lambda s: s)
    n = len(data[next(iter(data))]) if isinstance(data, dict) else len(data)
    T = check_int(n_rounds, "n_rounds", low=1)
    w = np.ones(n) if weights is None else check_array(weights, "weights", shape=(n,))
    k = n if n_sampled is None else check_int(n_sampled, "n_sampled", low=1, high=n)
    seed = as_seed(rng)
    record = {"state": state0, "f": [], "clients": []}

    class OurClient(NumPyClient):
        def __init__(self, cid: int):
            self.cid = cid

        def fit(self, parameters, config):
            view = unflatten_state(config_keys(config), parameters)
            ids = np.array([self.cid])
            messages, _ = client_update(view, take_clients(data, ids), ids, int(config["round"]), seed)
            keys, arrays = flatten_state(messages)
            return [a[0] for a in arrays], 1, {"cid": self.cid, "keys": ",".join(keys or ())}

    def config_keys(config):
        return None if config["keys"] == "" else config["keys"].split(",")

    class OurStrategy(Strategy):
        """Our sampler, our seeds, results sorted by client id, our aggregation."""

        def initialize_parameters(self, client_manager):
            return ndarrays_to_parameters(flatten_state(view_of(record["state"]))[1])

        def configure_fit(self, server_round, parameters, client_manager):
            rnd = server_round - 1
            ids = sample_clients(n, k, seed, rnd)
            record["clients"].append(ids)
            keys, arrays = flatten_state(view_of(record["state"]))
            ins = FitIns(ndarrays_to_parameters(arrays), {"round": rnd, "keys": ",".join(keys or ())})
            client_manager.wait_for(n)
            proxies = client_manager.all().values()
            # every node is asked for its partition id once, then only the sampled ones are sent work
            wanted = set(ids.tolist())
            return [(p, ins) for p in proxies if self.partition(p) in wanted]

        def partition(self, proxy):
            if not hasattr(self, "_pid"):
                self._pid = {}
            if proxy.cid not in self._pid:
                from flwr.common import GetPropertiesIns

                res = proxy.get_properties(GetPropertiesIns({}), timeout=None, group_id=None)
                self._pid[proxy.cid] = int(res.properties["cid"])
            return self._pid[proxy.cid]

        def aggregate_fit(self, server_round, results, failures):
            if failures:
                raise RuntimeError(f"{len(failures)} Flower clients failed in round {server_round}: {failures[0]}")
            rows = sorted(((int(r.metrics["cid"]), parameters_to_ndarrays(r.parameters), r.metrics["keys"])
                           for _, r in results), key=lambda t: t[0])
            ids = np.array([cid for cid, _, _ in rows])
            keys = rows[0][2].split(",") if rows[0][2] else None
            stacked = [np.stack([arrays[j] for _, arrays, _ in rows]) for j in range(len(rows[0][1]))]
            state, _ = aggregate(record["state"], unflatten_state(keys, stacked), w[ids], server_round - 1)
            record["state"] = state
            if f is not None:
                record["f"].append(float(f(state)))
            return ndarrays_to_parameters(flatten_state(view_of(state))[1]), {}

        def configure_evaluate(self, server_round, parameters, client_manager):
            return []

        def aggregate_evaluate(self, server_round, results, failures):
            return None, {}

        def evaluate(self, server_round, parameters):
            return None

    class PropertiesClient(OurClient):
        def get_properties(self, config):
            return {"cid": self.cid}

    def client_fn(context):
        return PropertiesClient(int(context.node_config["partition-id"])).to_client()

    def server_fn(context):
        return ServerAppComponents(strategy=OurStrategy(), config=ServerConfig(num_rounds=T))

    backend = {"client_resources": {"num_cpus": 1},
               "init_args": ray_init_args or {"include_dashboard": False, "num_cpus": 2}}
    run_simulation(server_app=ServerApp(server_fn=server_fn), client_app=ClientApp(client_fn=client_fn),
                   num_supernodes=n, backend_config=backend)
    return {"state": record["state"], "f": np.array(record["f"]), "clients": record["clients"]}
