"""The 12-bit dataset of Shwartz-Ziv & Tishby and the 8x8 digits.

The 12-bit labels are checked against an independent construction: explicit icosahedron
coordinates (0, +-1, +-phi) matched to the column graph by a graph isomorphism, and
against the symmetry group of the icosahedron found by a backtracking search.
"""

import itertools
import math
import sys

import numpy as np
import pytest

from infoflow import datasets

N_VERTICES = 12
POWERS = 2 ** np.arange(N_VERTICES - 1, -1, -1)  # column 0 is the most significant bit


def _adjacency_from_lists():
    adj = np.zeros((N_VERTICES, N_VERTICES), dtype=bool)
    for i, neighbours in datasets.SZT_NEIGHBOURS.items():
        adj[i, list(neighbours)] = True
    return adj


def _isomorphisms(adj_a, adj_b):
    """All bijections p with adj_a[i, j] == adj_b[p[i], p[j]], by backtracking.

    Vertices are assigned in breadth-first order, so every new vertex is checked against
    already placed neighbours and the search prunes early.
    """
    n = len(adj_a)
    order, seen = [], set()
    for start in range(n):
        if start in seen:
            continue
        queue = [start]
        seen.add(start)
        while queue:
            v = queue.pop(0)
            order.append(v)
            for w in np.flatnonzero(adj_a[v]):
                if int(w) not in seen:
                    seen.add(int(w))
                    queue.append(int(w))
    found = []
    image = [-1] * n
    used = [False] * n

    def extend(depth):
        if depth == n:
            found.append(tuple(image))
            return
        v = order[depth]
        for candidate in range(n):
            if used[candidate]:
                continue
            if all(adj_a[v, u] == adj_b[candidate, image[u]] for u in order[:depth]):
                image[v], used[candidate] = candidate, True
                extend(depth + 1)
                image[v], used[candidate] = -1, False

    extend(0)
    return found


def _icosahedron_coordinates():
    """The 12 unit vertices (0, +-1, +-phi) and cyclic permutations, and their adjacency."""
    phi = (1 + math.sqrt(5)) / 2
    pts = []
    for a, b in itertools.product((1, -1), repeat=2):
        base = (0.0, a * 1.0, b * phi)
        for shift in range(3):
            pts.append(base[shift:] + base[:shift])
    pts = np.array(pts) / math.hypot(1.0, phi)
    dots = pts @ pts.T
    adj = np.isclose(dots, 1 / math.sqrt(5))
    np.fill_diagonal(adj, False)
    return pts, adj


@pytest.fixture(scope="module")
def data():
    return datasets.szt()


@pytest.fixture(scope="module")
def automorphisms():
    adj = _adjacency_from_lists()
    return _isomorphisms(adj, adj)


@pytest.fixture(scope="module")
def vertices():
    """Coordinates v_i for column i: explicit icosahedron points matched to the columns."""
    pts, adj_pts = _icosahedron_coordinates()
    maps = _isomorphisms(_adjacency_from_lists(), adj_pts)
    assert maps, "the neighbour lists do not describe an icosahedron"
    return pts[list(maps[0])]


def test_szt_shapes_and_dtypes(data):
    X, y = data
    assert X.shape == (4096, 12) and X.dtype == np.float32
    assert y.shape == (4096,) and y.dtype == np.int64
    assert set(np.unique(X)) == {0.0, 1.0}
    assert set(np.unique(y)) == {0, 1}


def test_szt_row_k_is_k_in_binary(data):
    X, _ = data
    np.testing.assert_array_equal(X.astype(np.int64) @ POWERS, np.arange(4096))
    for k in (0, 1, 2, 5, 2048, 4095):
        expected = [int(c) for c in format(k, "012b")]
        assert X[k].tolist() == expected


def test_szt_class_balance_matches_the_paper(data):
    _, y = data
    assert int(y.sum()) == 2118
    assert y.mean() == 2118 / 4096


def test_szt_is_deterministic(data):
    X, y = datasets.szt()
    np.testing.assert_array_equal(X, data[0])
    np.testing.assert_array_equal(y, data[1])


def test_gram_matrix_is_an_icosahedron():
    gram = datasets.icosahedron_gram()
    np.testing.assert_array_equal(gram, gram.T)
    np.testing.assert_array_equal(np.diag(gram), 1.0)
    eig = np.linalg.eigvalsh(gram)
    # 12 unit vectors in R^3 with sum v_i v_i^T = 4 I: eigenvalues 0 (x9) and 4 (x3).
    np.testing.assert_allclose(eig[:9], 0.0, atol=1e-12)
    np.testing.assert_allclose(eig[9:], 4.0, atol=1e-12)
    assert np.linalg.matrix_rank(gram, tol=1e-9) == 3
    adj = _adjacency_from_lists()
    np.testing.assert_array_equal(adj, adj.T)
    assert (adj.sum(axis=1) == 5).all()
    assert not adj.diagonal().any()
    # Each vertex has exactly one antipode, which is not a neighbour.
    anti = np.isclose(gram, -1.0)
    assert (anti.sum(axis=1) == 1).all()
    assert not (anti & adj).any()
    assert sorted(i for pair in datasets.SZT_ANTIPODES for i in pair) == list(range(12))


def test_gram_matrix_matches_explicit_coordinates(vertices):
    np.testing.assert_allclose(vertices @ vertices.T, datasets.icosahedron_gram(), atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(vertices, axis=1), 1.0)


def test_szt_labels_match_explicit_coordinates(data, vertices):
    X, y = data
    bits = X.astype(np.float64)
    score = bits.sum(axis=1) + 1.115 * np.linalg.norm(bits @ vertices, axis=1)
    np.testing.assert_array_equal(y, (score > 7.7775).astype(np.int64))
    # No score lies near the threshold, so rounding cannot flip a label.
    assert np.abs(score - 7.7775).min() > 1e-3


def test_icosahedral_group_has_order_120_with_60_rotations(automorphisms, vertices):
    assert len(automorphisms) == 120
    assert len(set(automorphisms)) == 120
    determinants = []
    for perm in automorphisms:
        # The orthogonal map R with R v_i = v_perm(i).
        r_t, *_ = np.linalg.lstsq(vertices, vertices[list(perm)], rcond=None)
        np.testing.assert_allclose(vertices @ r_t, vertices[list(perm)], atol=1e-9)
        np.testing.assert_allclose(r_t @ r_t.T, np.eye(3), atol=1e-9)
        determinants.append(round(np.linalg.det(r_t)))
    assert determinants.count(1) == 60 and determinants.count(-1) == 60


def test_szt_labels_invariant_under_the_icosahedral_group(data, automorphisms):
    X, y = data
    bits = X.astype(np.int64)
    for perm in automorphisms:
        # Row x maps to the pattern x' with x'_{perm(i)} = x_i.
        moved = np.empty_like(bits)
        moved[:, list(perm)] = bits
        np.testing.assert_array_equal(y[moved @ POWERS], y)
        np.testing.assert_array_equal(datasets.szt_labels(moved), y)


def test_szt_labels_not_invariant_under_a_random_permutation(data, automorphisms):
    # The invariance test above can fail: a permutation outside the group moves labels.
    X, y = data
    perm = (1, 0) + tuple(range(2, 12))  # swaps two neighbours, fixes the rest
    assert perm not in set(automorphisms)
    moved = X[:, list(perm)].astype(np.int64)
    assert (y[moved @ POWERS] != y).any()


def test_szt_labels_validates_shape():
    with pytest.raises(ValueError, match=r"x: expected shape \(m, 12\)"):
        datasets.szt_labels(np.zeros((3, 11)))


def test_digits():
    sklearn_datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn is not installed")
    X, y = datasets.digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    assert sorted(np.unique(y).tolist()) == list(range(10))
    raw = sklearn_datasets.load_digits()
    np.testing.assert_array_equal(X * 16, raw.data)
    np.testing.assert_array_equal(y, raw.target)


def test_digits_without_sklearn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        datasets.digits()
