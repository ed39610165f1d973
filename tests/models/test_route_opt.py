"""The routing optimiser: greedy and the MIP never exceed stock or capacity, the MIP is never
worse than greedy (counting the cost of unassigned orders) and finds known optima, and the
decomposition, the unassigned orders and the fallbacks behave as documented."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import OptimizeResult

from cadence.models import _route_opt
from cadence.models._route_opt import Problem, solve_greedy, solve_mip, violations

pytestmark = pytest.mark.unit


def random_problem(
    seed: int,
    *,
    n_orders: int,
    n_cands: int,
    n_nodes: int,
    n_skus: int,
    n_waves: int,
    stock_share: float,
    capacity_share: float,
    tightness: tuple[float, float] = (0.3, 0.9),
    unserved_cost: float = 1000.0,
) -> Problem:
    """Orders of 1-3 SKUs (1-2 units each); a candidate ships from one node, or splits the
    order's first SKU from the rest over two nodes, in one wave (one parcel per node). Stock and
    capacity cover every order's most demanding candidate, except a `stock_share` of the used
    stock keys and a `capacity_share` of the used slots, which get a share of it drawn from
    `tightness` (rounded down). An order counts on every node its candidates name, so on large
    batches the shares must be small for stock or capacity to bind. Candidates come shuffled, so
    an order's are not contiguous."""
    rng = np.random.default_rng(seed)
    n_keys, n_slots = n_nodes * n_skus, n_nodes * n_waves
    items = rng.integers(1, 4, size=n_orders)
    skus = rng.integers(n_skus, size=(n_orders, 3))
    qty = rng.integers(1, 3, size=(n_orders, 3))
    distance = rng.uniform(0, 10, size=(n_orders, n_nodes))

    k = n_orders * n_cands
    cand_order = np.repeat(np.arange(n_orders), n_cands)
    node1 = rng.integers(n_nodes, size=k)
    node2 = rng.integers(n_nodes, size=k)
    wave = rng.integers(n_waves, size=k)
    split = (rng.random(k) < 0.2) & (items[cand_order] > 1) & (node1 != node2)
    cost = distance[cand_order, node1] + 0.3 * wave + rng.uniform(0, 0.1, size=k)
    cost += np.where(split, distance[cand_order, node2] + 2.0, 0.0)

    rows, cols, vals = [], [], []
    for j in range(3):
        has = items[cand_order] > j
        node = np.where(split & (j > 0), node2, node1)
        rows.append(np.flatnonzero(has))
        cols.append((node * n_skus + skus[cand_order, j])[has])
        vals.append(qty[cand_order, j][has])
    stock_use = sp.csr_array(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(k, n_keys)
    )
    slot_rows = np.concatenate([np.arange(k), np.flatnonzero(split)])
    slot_cols = np.concatenate([node1 * n_waves + wave, (node2 * n_waves + wave)[split]])
    slot_use = sp.csr_array((np.ones(slot_rows.size), (slot_rows, slot_cols)), shape=(k, n_slots))

    shuffle = rng.permutation(k)
    cand_order, cost = cand_order[shuffle], cost[shuffle]
    stock_use, slot_use = stock_use[shuffle], slot_use[shuffle]
    stock = _tighten(rng, _worst_use(cand_order, stock_use), stock_share, tightness)
    capacity = _tighten(rng, _worst_use(cand_order, slot_use), capacity_share, tightness)
    return Problem(
        n_orders=n_orders,
        cand_order=cand_order,
        cand_cost=cost,
        stock_use=stock_use,
        stock=stock,
        slot_use=slot_use,
        capacity=capacity,
        arrival=rng.permutation(n_orders),
        unserved_cost=unserved_cost,
    )


def _worst_use(cand_order: np.ndarray, use: sp.csr_array) -> np.ndarray:
    """Per column, the sum over orders of the order's largest use among its candidates."""
    use = sp.csr_array(use)
    use.sum_duplicates()
    coo = use.tocoo()
    key = cand_order[coo.row] * use.shape[1] + coo.col
    by = np.lexsort((coo.data, key))
    last = np.append(key[by][1:] != key[by][:-1], True)
    return np.bincount(coo.col[by][last], weights=coo.data[by][last], minlength=use.shape[1])


def _tighten(
    rng: np.random.Generator, worst: np.ndarray, share: float, tightness: tuple[float, float]
) -> np.ndarray:
    available = worst.copy()
    used = np.flatnonzero(worst > 0)
    tight = rng.choice(used, size=round(share * used.size), replace=False)
    available[tight] = np.floor(worst[tight] * rng.uniform(*tightness, size=tight.size))
    return available


def hand_made(
    n_orders: int,
    candidates: list[tuple[int, float, dict[int, float], dict[int, float]]],
    stock: list[float],
    capacity: list[float],
    *,
    arrival: list[int] | None = None,
    unserved_cost: float = 100.0,
) -> Problem:
    """Candidates as (order, cost, {stock key: units}, {slot: parcels})."""

    def matrix(part: int, width: int) -> sp.csr_array:
        dense = np.zeros((len(candidates), width))
        for i, cand in enumerate(candidates):
            for col, value in cand[part].items():
                dense[i, col] = value
        return sp.csr_array(dense)

    return Problem(
        n_orders=n_orders,
        cand_order=np.array([c[0] for c in candidates], dtype=np.int64),
        cand_cost=np.array([c[1] for c in candidates], dtype=np.float64),
        stock_use=matrix(2, len(stock)),
        stock=np.array(stock, dtype=np.float64),
        slot_use=matrix(3, len(capacity)),
        capacity=np.array(capacity, dtype=np.float64),
        arrival=np.arange(n_orders) if arrival is None else np.array(arrival),
        unserved_cost=unserved_cost,
    )


def penalised(problem: Problem, solution) -> float:
    return solution.objective + problem.unserved_cost * solution.unassigned


def assert_consistent(problem: Problem, solution) -> None:
    """No stock or capacity exceeded, each chosen candidate is its order's, and the reported
    figures match `chosen`."""
    chosen = solution.chosen
    assert chosen.dtype == np.int64 and chosen.shape == (problem.n_orders,)
    assert violations(problem, chosen) == (0, 0)
    taken = np.flatnonzero(chosen >= 0)
    np.testing.assert_array_equal(problem.cand_order[chosen[taken]], taken)
    assert solution.unassigned == problem.n_orders - taken.size
    assert solution.objective == pytest.approx(problem.cand_cost[chosen[taken]].sum())


def test_random_tight_problems_are_feasible_and_the_mip_is_never_worse_than_greedy():
    optimal = better = 0
    for seed in range(60):
        problem = random_problem(
            seed,
            n_orders=40,
            n_cands=5,
            n_nodes=4,
            n_skus=8,
            n_waves=2,
            stock_share=0.5,
            capacity_share=0.5,
            unserved_cost=[1000.0, 8.0][seed % 2],
        )
        greedy, mip = solve_greedy(problem), solve_mip(problem)
        assert_consistent(problem, greedy)
        assert_consistent(problem, mip)
        assert penalised(problem, mip) <= penalised(problem, greedy)
        assert greedy.method == "greedy" and greedy.gap is None
        assert mip.gap is not None and 0.0 <= mip.gap <= 1e-4 + 1e-12
        optimal += mip.method == "mip" and mip.status == "optimal"
        better += penalised(problem, mip) < penalised(problem, greedy)
    assert optimal == 60
    # tight enough for first come first served to lose most of the time
    assert better > 30


def test_greedy_is_a_plain_first_come_first_served_pass():
    """Greedy skips the pass for orders that need nothing contested; the result must be what
    the pass over every order and every resource gives."""
    for seed in range(30):
        problem = random_problem(
            200 + seed,
            n_orders=60,
            n_cands=4,
            n_nodes=3,
            n_skus=6,
            n_waves=2,
            stock_share=0.4,
            capacity_share=0.4,
        )
        stock_use, slot_use = problem.stock_use.toarray(), problem.slot_use.toarray()
        stock, capacity = problem.stock.copy(), problem.capacity.copy()
        expected = np.full(problem.n_orders, -1)
        for o in np.lexsort((np.arange(problem.n_orders), problem.arrival)):
            cands = np.flatnonzero(problem.cand_order == o)
            for c in cands[np.lexsort((cands, problem.cand_cost[cands]))]:
                if (stock_use[c] <= stock).all() and (slot_use[c] <= capacity).all():
                    stock -= stock_use[c]
                    capacity -= slot_use[c]
                    expected[o] = c
                    break
        np.testing.assert_array_equal(solve_greedy(problem).chosen, expected)


def test_the_mip_finds_the_optimum_of_tiny_problems():
    """Against every assignment of a few orders (each order: one of its candidates or none)."""
    for seed in range(12):
        problem = random_problem(
            100 + seed,
            n_orders=5,
            n_cands=3,
            n_nodes=2,
            n_skus=2,
            n_waves=2,
            stock_share=0.7,
            capacity_share=0.7,
            unserved_cost=6.0,
        )
        options = [
            [-1, *np.flatnonzero(problem.cand_order == o).tolist()] for o in range(problem.n_orders)
        ]
        best = np.inf
        for combo in itertools.product(*options):
            chosen = np.array(combo, dtype=np.int64)
            if violations(problem, chosen) == (0, 0):
                taken = chosen[chosen >= 0]
                total = problem.cand_cost[taken].sum()
                total += problem.unserved_cost * (chosen.size - taken.size)
                best = min(best, total)
        mip = solve_mip(problem, mip_rel_gap=0.0)
        assert_consistent(problem, mip)
        assert penalised(problem, mip) == pytest.approx(best)


def test_the_mip_beats_greedy_when_the_first_order_takes_the_unit_another_needs_more():
    # One unit of SKU 0 at node A (stock key 0), plenty at node B (key 1). Order 0 arrives
    # first and takes A's unit (cost 1 against 2 from B); order 1 can only have it from A
    # (cost 1) or, at 10, from B.
    problem = hand_made(
        2,
        [
            (0, 1.0, {0: 1}, {}),
            (0, 2.0, {1: 1}, {}),
            (1, 1.0, {0: 1}, {}),
            (1, 10.0, {1: 1}, {}),
        ],
        stock=[1, 5],
        capacity=[],
    )
    greedy, mip = solve_greedy(problem), solve_mip(problem)
    np.testing.assert_array_equal(greedy.chosen, [0, 3])
    assert greedy.objective == 11.0
    np.testing.assert_array_equal(mip.chosen, [1, 2])
    assert mip.objective == 3.0 and mip.unassigned == 0
    assert (mip.method, mip.status, mip.gap) == ("mip", "optimal", 0.0)


def test_the_mip_serves_an_order_greedy_leaves_unassigned():
    # Slot 0 takes one parcel; order 0 could use slot 1 instead, order 1 cannot.
    problem = hand_made(
        2,
        [(0, 1.0, {}, {0: 1}), (0, 1.5, {}, {1: 1}), (1, 1.0, {}, {0: 1})],
        stock=[],
        capacity=[1, 1],
        unserved_cost=100.0,
    )
    greedy, mip = solve_greedy(problem), solve_mip(problem)
    np.testing.assert_array_equal(greedy.chosen, [0, -1])
    assert penalised(problem, greedy) == 101.0
    np.testing.assert_array_equal(mip.chosen, [1, 2])
    assert penalised(problem, mip) == 2.5


def test_greedy_serves_orders_by_arrival_not_by_index():
    problem = hand_made(
        2,
        [(0, 1.0, {0: 1}, {}), (1, 1.0, {0: 1}, {})],
        stock=[1],
        capacity=[],
        arrival=[5, 2],
    )
    np.testing.assert_array_equal(solve_greedy(problem).chosen, [-1, 1])


def test_orders_without_a_feasible_candidate_are_unassigned_and_the_rest_solved():
    # Order 1's only candidate needs 3 units of a key holding 2; order 2 has no candidate;
    # orders 0 and 3 compete for key 1's single unit, and order 3 has a way round it.
    problem = hand_made(
        4,
        [
            (3, 4.0, {1: 1}, {}),
            (0, 1.0, {1: 1}, {0: 1}),
            (1, 1.0, {0: 3}, {}),
            (3, 5.0, {2: 1}, {}),
            (0, 9.0, {2: 1}, {}),
        ],
        stock=[2, 1, 1],
        capacity=[1],
    )
    for solution in (solve_greedy(problem), solve_mip(problem)):
        assert_consistent(problem, solution)
        assert solution.chosen[1] == -1 and solution.chosen[2] == -1
        assert solution.unassigned == 2
    np.testing.assert_array_equal(solve_mip(problem).chosen, [1, -1, -1, 3])


def test_with_nothing_contested_each_order_takes_its_cheapest_without_the_solver(monkeypatch):
    def no_solver(*args, **kwargs):
        raise AssertionError("the solver was called")

    monkeypatch.setattr(_route_opt, "milp", no_solver)
    problem = random_problem(
        7,
        n_orders=300,
        n_cands=6,
        n_nodes=5,
        n_skus=20,
        n_waves=3,
        stock_share=0.0,
        capacity_share=0.0,
    )
    cheapest = np.full(problem.n_orders, -1)
    for k in np.lexsort((problem.cand_cost, problem.cand_order))[::-1]:
        cheapest[problem.cand_order[k]] = k
    for solution in (solve_mip(problem), solve_greedy(problem)):
        np.testing.assert_array_equal(solution.chosen, cheapest)
    mip = solve_mip(problem)
    assert (mip.method, mip.status, mip.gap) == ("mip", "optimal", 0.0)


def test_a_tiny_time_limit_still_returns_a_feasible_solution():
    problem = random_problem(
        3,
        n_orders=4000,
        n_cands=8,
        n_nodes=6,
        n_skus=30,
        n_waves=3,
        stock_share=0.6,
        capacity_share=0.6,
        tightness=(0.1, 0.3),
    )
    greedy, mip = solve_greedy(problem), solve_mip(problem, time_limit=1e-3)
    assert mip.method == "mip" or mip.method.startswith("greedy (mip fallback: ")
    assert violations(problem, mip.chosen) == (0, 0)
    assert_consistent(problem, mip)
    assert penalised(problem, mip) <= penalised(problem, greedy)
    assert mip.gap is None or mip.gap >= 0.0


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("none", "greedy (mip fallback: time limit, no solution)"),
        ("everything", "greedy (mip fallback: infeasible solution)"),
        ("nothing", "greedy (mip fallback: worse than greedy)"),
    ],
)
def test_a_missing_infeasible_or_worse_solver_answer_falls_back_to_greedy(
    monkeypatch, answer, reason
):
    def fake_milp(c, *, integrality, bounds, constraints, options):
        x = {"none": None, "everything": integrality, "nothing": 1.0 - integrality}[answer]
        return OptimizeResult(
            status=1,
            message="Time limit reached. (HiGHS Status 13: model_status is Time limit reached)",
            x=x,
            mip_dual_bound=0.5,
            mip_gap=None,
        )

    monkeypatch.setattr(_route_opt, "milp", fake_milp)
    problem = hand_made(
        2,
        [(0, 1.0, {0: 1}, {}), (0, 2.0, {1: 1}, {}), (1, 1.0, {0: 1}, {})],
        stock=[1, 5],
        capacity=[],
    )
    greedy, mip = solve_greedy(problem), solve_mip(problem)
    assert mip.method == reason and mip.status == "time limit"
    np.testing.assert_array_equal(mip.chosen, greedy.chosen)
    # greedy's total here is 1 + 100 (order 1 unserved); the fake bound 0.5 is all contested
    assert mip.gap == pytest.approx((101.0 - 0.5) / 101.0)


def test_an_empty_batch_and_orders_without_candidates():
    problem = hand_made(3, [], stock=[1], capacity=[1])
    for solution in (solve_greedy(problem), solve_mip(problem)):
        np.testing.assert_array_equal(solution.chosen, [-1, -1, -1])
        assert solution.objective == 0.0 and solution.unassigned == 3
    empty = hand_made(0, [], stock=[], capacity=[])
    assert solve_mip(empty).chosen.shape == (0,)


@pytest.mark.parametrize(
    "change",
    [
        {"cand_order": [0, 2]},
        {"stock": [np.nan]},
        {"cand_cost": [1.0, np.nan]},
        {"arrival": [0]},
        {"stock_use": -sp.csr_array(np.ones((2, 1)))},
    ],
)
def test_a_malformed_problem_is_refused(change):
    base = {
        "n_orders": 2,
        "cand_order": [0, 1],
        "cand_cost": [1.0, 2.0],
        "stock_use": sp.csr_array(np.ones((2, 1))),
        "stock": [1.0],
        "slot_use": sp.csr_array((2, 0)),
        "capacity": [],
        "arrival": [0, 1],
        "unserved_cost": 10.0,
    }
    with pytest.raises(ValueError):
        Problem(**(base | change))


def test_an_overbooked_slot_counts_as_full_and_unlimited_stock_as_unlimited():
    problem = hand_made(
        2,
        [(0, 1.0, {0: 5}, {0: 1}), (0, 2.0, {0: 5}, {1: 1}), (1, 1.0, {0: 5}, {1: 1})],
        stock=[np.inf],
        capacity=[-3, 1],
    )
    assert problem.capacity.tolist() == [0.0, 1.0]
    for solution in (solve_greedy(problem), solve_mip(problem)):
        assert_consistent(problem, solution)
    # order 0 arrives first and takes slot 1, the only one left; the MIP gives it to order 1,
    # whose candidate is cheaper (one order goes unserved either way)
    np.testing.assert_array_equal(solve_greedy(problem).chosen, [1, -1])
    np.testing.assert_array_equal(solve_mip(problem).chosen, [-1, 2])


def test_a_batch_too_big_for_branch_and_bound_is_rounded_from_its_relaxation():
    rounded = 0
    for seed in range(20):
        problem = random_problem(
            seed,
            n_orders=60,
            n_cands=5,
            n_nodes=4,
            n_skus=8,
            n_waves=2,
            stock_share=0.5,
            capacity_share=0.5,
        )
        greedy = solve_greedy(problem)
        lp = solve_mip(problem, max_mip_candidates=0)
        assert_consistent(problem, lp)
        assert penalised(problem, lp) <= penalised(problem, greedy)
        assert lp.method in ("lp rounding", "greedy (lp rounding no better)", "mip")
        if lp.method != "mip":
            assert lp.gap is not None and lp.gap >= 0
            # The relaxation bounds the exact optimum from below.
            exact = solve_mip(problem)
            assert penalised(problem, exact) <= penalised(problem, lp) + 1e-9
        rounded += lp.method == "lp rounding"
    assert rounded > 0
