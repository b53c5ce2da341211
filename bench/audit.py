"""The audit's gallery search at scale: exact search (numpy) against the approximate index (faiss IVF).

Galleries of 10,000, 100,000 and 1,000,000 random unit-norm 128-d descriptors (faces without any
structure: the hardest case for an approximate index, since no query's neighbours stand out) and, with
`--clustered`, face-like ones: ten faces per person around random unit-norm centres, two faces of one
person about 0.45 apart (as dlib's descriptors of two photos of one person are), queries being other
faces of gallery people (what a leaked identity is). For each:

- build: the exact search (norms only) and the index (k-means cells, the faces added, `nprobe`
  calibrated to recall@10 >= 0.99 on the gallery's own faces), in seconds;
- memory: the index's serialized size, and the process's peak resident memory after the largest;
- query time per identity: one identity is 101 queries (its centroid and 100 members, the original's
  target), each asking what the audit asks: every face within the warning band (0.7) and the 3 nearest;
- recall@10 of the index against exact search, over 1,000 fresh queries, for the index built on a
  100,000-face sample of the 1,000,000 (and over 200 queries on the 1,000,000 itself).

amari searches exactly up to 100,000 faces (`--exact-limit`) and uses the index above, when faiss-cpu
is installed and the calibration needs at most a quarter of the cells (else exact search is as fast).
Prints the ratios exact / index of the query time (machines are noisy; the ratios are the result).

    python bench/audit.py [--sizes 10000 100000 1000000] [--threads 2] [--clustered]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from amari.audit.search import ExactSearch, FaissSearch, require_faiss

IDENTITY_QUERIES = 101
BAND = 0.7


FACES_PER_PERSON = 10
SAME_PERSON_SPREAD = 0.45 / np.sqrt(2 * 128)  # per coordinate: two faces of one person ~0.45 apart


def unit_vectors(count: int, rng: np.random.Generator) -> np.ndarray:
    vectors = rng.standard_normal((count, 128), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def person_faces(centres: np.ndarray, rng: np.random.Generator, count: int | None = None) -> np.ndarray:
    """Faces of the people at `centres`, each a centre plus a same-person spread: FACES_PER_PERSON each,
    person by person (a gallery's first N faces are whole people); or `count` of people picked at random."""
    if count is None:
        picked = np.repeat(centres, FACES_PER_PERSON, axis=0)
    else:
        picked = centres[rng.integers(0, len(centres), size=count)]
    return (picked + rng.normal(scale=SAME_PERSON_SPREAD, size=picked.shape)).astype(np.float32)


def per_identity(search, identities: list[np.ndarray]) -> float:
    """Seconds per identity for what the audit asks of the search."""
    started = time.perf_counter()
    for queries in identities:
        search.query(queries, BAND, 3)
    return (time.perf_counter() - started) / len(identities)


def recall_at_10(search: FaissSearch, exact: ExactSearch, queries: np.ndarray) -> float:
    truth = exact.nearest(queries, 10)
    found = search.nearest(queries, 10)
    return float(np.mean([len({m.face for m in t} & {m.face for m in f}) / 10 for t, f in zip(truth, found)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--threads", type=int, default=2, help="faiss's threads (numpy's BLAS uses its own)")
    parser.add_argument("--identities", type=int, default=3, help="identities timed per gallery")
    parser.add_argument("--clustered", action="store_true", help="face-like galleries instead of random ones")
    args = parser.parse_args()
    require_faiss().omp_set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    if args.clustered:
        centres = unit_vectors(max(args.sizes) // FACES_PER_PERSON, rng)
        largest = person_faces(centres, rng)

        def fresh(count: int, size: int) -> np.ndarray:  # other faces of the gallery's people
            return person_faces(centres[: size // FACES_PER_PERSON], rng, count)
    else:
        largest = unit_vectors(max(args.sizes), rng)

        def fresh(count: int, size: int) -> np.ndarray:
            return unit_vectors(count, rng)

    print(f"{'face-like' if args.clustered else 'random unit-norm'} descriptors")
    print(
        f"{'faces':>9} {'exact build':>11} {'index build':>11} {'nprobe':>11} {'index MB':>8} "
        f"{'exact/identity':>14} {'index/identity':>14} {'exact/index':>11}"
    )
    for size in sorted(args.sizes):
        faces = largest[:size]
        identities = [fresh(IDENTITY_QUERIES, size) for _ in range(args.identities)]
        started = time.perf_counter()
        exact = ExactSearch(faces)
        exact_build = time.perf_counter() - started
        started = time.perf_counter()
        index = FaissSearch.build(faces, recall=0.99)
        index_build = time.perf_counter() - started
        megabytes = len(index.to_bytes()) / 2**20
        exact_time, index_time = per_identity(exact, identities), per_identity(index, identities)
        print(
            f"{size:>9,} {exact_build:>10.2f}s {index_build:>10.1f}s {index.index.nprobe:>5}/{index.index.nlist:<5} "
            f"{megabytes:>8.0f} {exact_time:>13.3f}s {index_time:>13.3f}s {exact_time / index_time:>10.2f}x"
        )
        if size == max(args.sizes):
            recall = recall_at_10(index, exact, fresh(200, size))
            print(f"recall@10 on the {size:,} index, 200 queries: {recall:.4f}")
        del exact, index
    sample = largest[:100_000]  # for face-like galleries, whole people
    index = FaissSearch.build(sample, recall=0.99)
    recall = recall_at_10(index, ExactSearch(sample), fresh(1_000, len(sample)))
    print(f"recall@10 on a {len(sample):,} sample, 1,000 queries: {recall:.4f} (nprobe {index.index.nprobe})")
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MB")


if __name__ == "__main__":
    main()
